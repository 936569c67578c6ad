"""The ``lseg`` command line, run in-process (``lseg.cli.main``) on generated photographs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_photo
from PIL import Image

import lseg
from lseg.cli import main


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(make_photo(96, 128, seed=1)).save(d / "a.jpg", quality=92)
    Image.fromarray(make_photo(80, 120, seed=2)).save(d / "b.png")
    Image.fromarray(make_photo(64, 64, seed=3)).save(d / "sub" / "c.png")
    return d


@pytest.fixture
def model_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    return lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path / "model")


def test_segment_writes_label_map_overlay_and_scores(photos, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["segment", str(photos / "a.jpg"), "-l", "sky, grass, sun, other", "-c", str(model_dir),
               "-o", str(out), "--scores", "--size", "128", "-q"])
    assert rc == 0
    lm = Image.open(out / "a_labels.png")
    assert lm.mode == "P" and lm.size == (128, 96)
    ids = np.array(lm)
    assert ids.max() < 4
    ov = Image.open(out / "a_overlay.png")
    assert ov.mode == "RGB" and ov.size[1] >= 96  # photo + legend panel
    scores = np.load(out / "a_scores.npz")
    assert scores["probs"].shape == (4, 96, 128) and scores["probs"].dtype == np.float16
    assert list(scores["labels"]) == ["sky", "grass", "sun", "other"]
    assert (scores["probs"].astype(np.float32).argmax(0) == ids).mean() > 0.98
    assert "1 written" in capsys.readouterr().err


def test_segment_folder_is_resumable_and_reports_bad_files(photos, model_dir, tmp_path, capsys):
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = tmp_path / "out"
    args = ["segment", str(photos), "-l", "sky,grass", "-c", str(model_dir), "-o", str(out), "-q"]
    assert main(args) == 1  # one bad file: reported, the rest done
    err = capsys.readouterr().err
    assert "broken.png" in err and "3 written" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a_labels.png", "a_overlay.png", "b_labels.png", "b_overlay.png", "sub/c_labels.png", "sub/c_overlay.png"]
    (out / "b_overlay.png").unlink()
    (photos / "broken.png").unlink()
    assert main(args) == 0
    assert "1 written, 2 already done" in capsys.readouterr().err
    assert not list(out.rglob(".*"))  # no temporary files left


def test_segment_error_is_one_line(photos, model_dir, tmp_path, capsys):
    rc = main(["segment", str(photos / "a.jpg"), "-l", "sky,,grass", "-c", str(model_dir), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: label 2 of 3 is empty")
    rc = main(["segment", str(tmp_path / "nope.jpg"), "-l", "a, b", "-c", str(model_dir), "-o", str(tmp_path / "o")])
    assert rc == 2 and capsys.readouterr().err.startswith("error: input not found")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_features_export_is_resumable(photos, model_dir, tmp_path, capsys):
    out = tmp_path / "feats"
    args = ["features", str(photos), "-c", str(model_dir), "-o", str(out), "--size", "64", "-q"]
    assert main(args) == 0
    manifest = json.loads((out / "features.json").read_text())
    assert manifest["dtype"] == "float16" and manifest["layout"] == "CHW"
    arr = np.load(out / "a.npy")
    assert arr.dtype == np.float16 and arr.shape == (32, 24, 32)  # 96x128 -> 48x64 working -> /2
    np.testing.assert_allclose(np.linalg.norm(arr.astype(np.float32), axis=0), 1, atol=2e-3)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    assert len(before) == 3
    (out / "sub" / "c.npy").unlink()
    assert main(args) == 0
    assert "1 written, 2 already done" in capsys.readouterr().err
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    assert {p for p in after if after[p] != before.get(p)} == {out / "sub" / "c.npy"}


def test_convert_and_info_official_checkpoint(tmp_path, capsys):
    from refimpl.tiny import tiny_reference

    torch.manual_seed(0)
    ref = tiny_reference("lseg_tiny_test")
    ckpt = tmp_path / "demo_e200.ckpt"
    torch.save({"state_dict": {"net." + k: v for k, v in ref.state_dict().items()}, "epoch": 200}, ckpt)
    assert main(["info", str(ckpt)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["name"] == "lseg_tiny_test" and info["tensors"] == len(ref.state_dict())
    out = tmp_path / "converted"
    assert main(["convert", str(ckpt), str(out)]) == 0
    assert "converted" in capsys.readouterr().out
    model = lseg.load_model(out)
    torch.testing.assert_close(model.pixel_proj.weight, ref.scratch.head1.weight)
    assert main(["info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["features"] == 16


def test_random_weights_and_help(photos, tmp_path, capsys):
    assert main(["segment", str(photos / "b.png"), "-l", "a,b", "--random-weights", "lseg_tiny_test",
                 "-o", str(tmp_path / "o"), "-q"]) == 0
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "segment" in capsys.readouterr().out


def test_segment_batches_with_prefetch_and_reports_the_precision(photos, model_dir, tmp_path, capsys):
    """Several images per forward, decoded ahead in a loader worker; an unreadable file is reported
    and the rest still written; the run says which precision it used."""
    (photos / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    args = ["segment", str(photos), "-l", "sky, grass, other", "-c", str(model_dir), "-o", str(out), "-q",
            "--size", "64", "--batch-size", "2"]
    assert main([*args, "--precision", "fp32"]) == 1  # the broken file fails the batch job at the end
    err = capsys.readouterr().err
    assert "in fp32" in err and "broken.png" in err and "3 written" in err and "1 failed" in err
    batched = {p.name: np.array(Image.open(p)) for p in out.rglob("*_labels.png")}
    assert len(batched) == 3
    one = tmp_path / "one"
    main([*args[:-2], "--batch-size", "1", "--precision", "fp32", "-o", str(one)])
    capsys.readouterr()
    for p in one.rglob("*_labels.png"):
        assert (np.array(Image.open(p)) == batched[p.name]).mean() > 0.999
    assert main([*args, "--precision", "auto", "-o", str(tmp_path / "auto")]) == 1
    assert "(auto)" in capsys.readouterr().err
    assert main([*args, "--batch-size", "0"]) == 2


def test_bench_prints_one_table_with_the_baseline(capsys, tmp_path):
    rc = main(["bench", "--model", "lseg_tiny_test", "--size", "64", "--precision", "fp32,bf16", "--repeats", "1",
               "--threads", "1", "--json", str(tmp_path / "bench.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "reference numerics" in out and "img/s" in out and "argmax agree" in out
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert [r["precision"] for r in rows] == ["reference", "fp32", "bf16"]
    assert rows[1]["agreement"] == 1.0 and all(r["images_per_s"] > 0 and r["peak_mib"] > 0 for r in rows)
    assert main(["bench", "--precision", "int4"]) == 2
