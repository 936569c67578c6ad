"""``lseg weights list|download|path``, names in ``--checkpoint``, and the documented first command
``lseg segment photo.png -l "dog, grass, other"`` end to end in a fresh process against the local Drive."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_photo
from PIL import Image

import lseg
from lseg.cli import build_parser, main
from lseg.pretrained import released as weights

NAME = "tiny_test"

#: Runs ``lseg.cli.main`` in a fresh interpreter after registering the test weights, pointing Drive
#: at the local server and making them the default: the only test-only changes, all in this process.
WRAPPER = """
import json, sys
import lseg.pretrained.released as w
entry = w.PretrainedWeights(**json.loads(sys.argv[1]))
w.WEIGHTS[entry.name] = entry
w.DEFAULT = entry.name
w.DRIVE_URL = sys.argv[2]
w.RETRIES = 0
from lseg.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow  # a fresh process
def test_first_command_segments_a_photo_with_no_checkpoint(released, tmp_path, monkeypatch):
    Image.fromarray(make_photo(72, 96, seed=4)).save(tmp_path / "photo.png")
    entry = json.dumps(dataclasses.asdict(weights.WEIGHTS[NAME]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # LSEG_HOME and the network settings of the fixture
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, entry, released.uc_url, "segment", "photo.png", "-l", "dog, grass, other"],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"no --checkpoint given: using the released weights '{NAME}'" in proc.stderr
    assert "lseg weights list" in proc.stderr
    assert released.paths() == ["/uc", "/download"]
    labels = np.array(Image.open(tmp_path / "lseg-output" / "photo_labels.png"))
    assert labels.shape == (72, 96) and labels.max() < 3
    assert (tmp_path / "lseg-output" / "photo_overlay.png").is_file()
    assert "segment (into lseg-output): 1 written" in proc.stderr
    # the cache is shared: another command loads the same weights offline
    monkeypatch.setenv("LSEG_OFFLINE", "1")
    assert lseg.load_model(NAME).config.name == "lseg_tiny_test"
    assert released.paths() == ["/uc", "/download"]


def test_weights_list_download_path(released, capsys, tiny_ckpt_bytes):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "network"]
    assert any(line.startswith("pascal_fold0") and "52.8 mIoU" in line and line.endswith("-") for line in lines)
    assert any(line.startswith("fss_l16") and "87.8 mIoU" in line for line in lines)
    assert out.rstrip().endswith(str(weights.cache_dir() / "weights"))

    assert main(["weights", "path", NAME]) == 2  # not downloaded yet: says how to get it
    err = capsys.readouterr().err
    assert err.startswith("error: 'tiny_test' is not in the cache: run `lseg weights download tiny_test`")
    assert str(weights.weights_dir(NAME) / "tiny_test.ckpt") in err

    placed = weights.weights_dir(NAME) / "tiny_test.ckpt"  # put where the error says: not told to put it there again
    placed.parent.mkdir(parents=True)
    placed.write_bytes(tiny_ckpt_bytes)
    assert main(["weights", "path", NAME]) == 2
    assert capsys.readouterr().err == ("error: 'tiny_test' is downloaded but not converted yet: run `lseg weights "
                                       "download tiny_test` (offline too) to check and convert it\n")
    assert main(["weights", "download", NAME]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder == weights.weights_dir(NAME) / "lseg" and (folder / "model.safetensors").is_file()
    assert main(["weights", "path", NAME]) == 0
    assert capsys.readouterr().out.strip() == str(folder)
    assert main(["weights", "list"]) == 0
    assert any(line.startswith(NAME) and line.endswith("converted") for line in capsys.readouterr().out.splitlines())
    released.log.clear()
    assert main(["weights", "download", NAME]) == 0  # cached: verified, not downloaded again
    assert released.log == []

    assert main(["weights", "download", "dmeo", NAME]) == 2  # names are checked before any download
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no released weights named 'dmeo'" in err and "demo, pascal_fold0" in err


def test_checkpoint_option_takes_a_name(released, tmp_path, capsys):
    Image.fromarray(make_photo(64, 64, seed=5)).save(tmp_path / "a.png")
    rc = main(["segment", str(tmp_path / "a.png"), "-l", "sky, grass", "-c", NAME, "-o", str(tmp_path / "out"), "-q"])
    assert rc == 0 and (tmp_path / "out" / "a_labels.png").is_file()
    assert "no --checkpoint given" not in capsys.readouterr().err
    assert main(["info", NAME]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["name"] == "lseg_tiny_test"
    rc = main(["segment", str(tmp_path / "a.png"), "-l", "sky", "-c", "no_such_weights", "-o", str(tmp_path / "o")])
    assert rc == 2 and "no released weights named 'no_such_weights'" in capsys.readouterr().err


def test_the_default_weights_are_named_in_records_and_stores(released, tmp_path, capsys, monkeypatch):
    """No --checkpoint recorded {"checkpoint": null}: `-c demo` then redid every image (model changed),
    and a store made so was refused by `lseg query` (made with --random-weights ...)."""
    monkeypatch.setattr(weights, "DEFAULT", NAME)
    Image.fromarray(make_photo(64, 64, seed=6)).save(tmp_path / "a.png")
    seg = ["segment", str(tmp_path / "a.png"), "-l", "sky, grass", "-o", str(tmp_path / "out"), "-q"]
    assert main(seg) == 0 and f"no --checkpoint given: using the released weights '{NAME}'" in capsys.readouterr().err
    assert main([*seg, "-c", NAME]) == 0
    assert "0 written, 1 already done" in capsys.readouterr().err
    store = str(tmp_path / "store")
    assert main(["features", str(tmp_path / "a.png"), "-o", store, "--format", "store", "-q"]) == 0
    assert main(["query", store, "sky, grass", "-o", str(tmp_path / "q"), "-q"]) == 0, capsys.readouterr().err
    assert (tmp_path / "q" / "a_labels.png").is_file()


def test_a_released_name_is_recorded_as_the_name_beside_a_folder_so_named(released, tmp_path, capsys, monkeypatch):
    """`-c demo` loads the released weights even with a folder ./demo, but the record described that
    folder's files (and a change to them redid every image)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / NAME).mkdir()
    (tmp_path / NAME / "config.json").write_text("{}")
    Image.fromarray(make_photo(64, 64, seed=7)).save(tmp_path / "a.png")
    seg = ["segment", "a.png", "-l", "sky, grass", "-o", "out", "-q", "-c", NAME]
    assert main(seg) == 0
    assert json.loads((tmp_path / "out" / "a_labels.json").read_text())["recipe"]["model"] == {"checkpoint": NAME}
    (tmp_path / NAME / "config.json").write_text('{"changed": 1}')
    capsys.readouterr()
    assert main(seg) == 0 and "0 written, 1 already done" in capsys.readouterr().err


def test_segment_features_and_demo_default_to_the_demo_weights():
    parser = build_parser()
    for argv in (["segment", "x.jpg", "-l", "a"], ["features", "x.jpg", "-o", "f"], ["demo"]):
        args = parser.parse_args(argv)
        assert args.checkpoint is None and args.random_weights is None and args.pretrained_default
    assert weights.DEFAULT == "demo"
    # --random-weights still works, and eval/export still need a model
    assert parser.parse_args(["segment", "x.jpg", "-l", "a", "--random-weights", "lseg_tiny_test"]).random_weights
    assert not parser.parse_args(["export", "onnx", "-o", "o", "-c", "demo"]).pretrained_default
