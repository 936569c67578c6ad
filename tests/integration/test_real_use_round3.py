"""Real use, round 3 (issue 23), item by item from the user's side: the ``lseg`` entry point (in a
process where process behaviour is what is tested) and the Python API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_photo
from hostile_inputs import cli_env, run_cli_commands
from PIL import Image

import lseg
from lseg.cli import main

RANDOM = ["--random-weights", "lseg_tiny_test", "--size", "32", "-q"]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(make_photo(48, 64)).save(path)
    return path


# 2: a closed reader is a normal end
@pytest.mark.parametrize("command", [["weights", "list"], ["train", "--list-recipes"]])
def test_02_a_closed_pipe_is_a_quiet_end(command: list[str]) -> None:
    code = ("import subprocess, sys\n"
            f"p = subprocess.Popen([sys.executable, '-m', 'lseg.cli', *{command!r}], stdout=subprocess.PIPE, "
            "stderr=subprocess.PIPE)\n"
            "p.stdout.readline(); p.stdout.close()\n"
            "err = p.stderr.read().decode(); print(p.wait()); print(err)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120,
                       check=True)
    rc, _, err = r.stdout.partition("\n")
    assert rc.strip() == "0" and "Traceback" not in err and "BrokenPipeError" not in err, r.stdout


# 3: push_to_hub without network
def test_03_push_to_hub_without_network_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(lseg.LSegError) as e:
        lseg.push_to_hub(lseg.create_model("lseg_tiny_test"), "me/x", token="hf_dummy")
    assert "\n" not in str(e.value) and "cannot push to 'me/x'" in str(e.value)


# 5: file names that are not valid UTF-8
@pytest.mark.slow  # a process (a real stderr)
def test_05_names_that_are_not_utf8_are_processed(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    bad = os.fsdecode(b"caf\xe9.png")  # latin-1 bytes: a surrogate in Python's str
    Image.fromarray(make_photo(32, 40)).save(os.path.join(folder, bad))
    Image.fromarray(make_photo(32, 40, seed=3)).save(folder / "ok.png")
    commands = [["segment", str(folder), "-l", "a, b"], ["features", str(folder)]]
    for r in run_cli_commands(*([*c, "-o", str(tmp_path / c[0]), *RANDOM] for c in commands)):  # a real stderr
        assert r.returncode == 0, r.stderr
        assert "2 written" in r.stderr and "Traceback" not in r.stderr
    names = os.listdir(os.fsencode(tmp_path / "segment"))
    assert b"caf\xe9_labels.png" in names and b"caf\xe9_labels.json" in names
    record = json.loads((tmp_path / "segment" / (bad.replace(".png", "_labels.json"))).read_bytes())
    assert record["source"].endswith(bad)  # the surrogate round-trips through the JSON escape


# 6 and 12: result.save never silently replaces another image's files; a file is not a folder
def test_06_12_save_refuses_another_images_files_and_a_file_as_folder(tmp_path: Path, tiny_model) -> None:
    predictor = lseg.LSegPredictor(tiny_model, size=32)
    a = predictor.segment(Image.fromarray(make_photo(32, 40)), "a, b")
    b = predictor.segment(make_photo(32, 40, seed=5), "a, b")
    a.save(tmp_path / "segb")
    with pytest.raises(lseg.LSegError, match="give this image its own stem"):
        b.save(tmp_path / "segb")
    b.save(tmp_path / "segb", stem="second")
    assert sorted(p.name for p in (tmp_path / "segb").iterdir()) == [
        "image_labels.json", "image_labels.png", "image_overlay.png", "second_labels.json", "second_labels.png",
        "second_overlay.png"]
    b.save(tmp_path / "segb", overwrite=True)  # asked for
    (tmp_path / "photo.jpg").write_bytes(b"x")
    with pytest.raises(lseg.LSegError, match="is a file, not a folder"):
        a.save(tmp_path / "photo.jpg")


# 8: labels CLIP's tokenizer reads as one text
@pytest.mark.parametrize("pair", [("salt &amp; pepper", "salt & pepper"), ("cafÃ©", "café")])
def test_08_labels_equal_to_the_tokenizer_are_refused(tiny_model, pair: tuple[str, str]) -> None:
    predictor = lseg.LSegPredictor(tiny_model, size=32)
    with pytest.raises(lseg.LabelError, match="the same text to CLIP's tokenizer"):
        predictor.embed_text(list(pair))


# 9: quotes group a label
def test_09_quotes_group_a_label(photo: Path, tmp_path: Path) -> None:
    assert main(["segment", str(photo), "-l", '"person, human", sky', "-o", str(tmp_path / "o"), *RANDOM]) == 0
    assert json.loads((tmp_path / "o" / "photo_labels.json").read_text())["labels"] == ["person, human", "sky"]
    assert lseg.labels.parse_labels('"salt, pepper", sky') == ["salt, pepper", "sky"]


# 11: a video given to segment: advice before the model loads
def test_11_segment_a_video_says_what_to_do_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from features.helpers import write_video

    video = tmp_path / "scan.mp4"
    write_video(video, n_frames=3, rate=3)
    monkeypatch.setattr("lseg.cli.common.load_source_model", lambda *a: pytest.fail("the model was loaded"))
    assert main(["segment", str(video), "-l", "a, b", "-o", str(tmp_path / "o"), *RANDOM]) == 2
    err = capsys.readouterr().err
    assert "is a video" in err and f"lseg features {video}" in err and "ffmpeg" in err


# 15: one warning style, clean lines in logs
@pytest.mark.slow  # a process (Python's own warnings)
def test_15_warnings_are_plain_lines_in_one_style(photo: Path, tmp_path: Path) -> None:
    long = "a photo of a very " + "very " * 100 + "large dog"
    commands = [["segment", str(photo), "-l", f"{long}, cat"], ["features", str(photo)]]
    env = {k: v for k, v in cli_env().items() if k != "TQDM_DISABLE"}  # with its progress bars
    results = run_cli_commands(*([*c, "-o", str(tmp_path / c[0]), "--random-weights", "lseg_tiny_test", "--size",
                                  "32"] for c in commands), env=env)  # a process: Python's own warnings would show
    for command, r in zip(commands, results, strict=True):
        assert r.returncode == 0, r.stderr
        lines = r.stderr.splitlines()
        assert "warning: using random weights for lseg_tiny_test: the output is noise" in lines
        assert not [ln for ln in lines if "WARNING" in ln or "UserWarning" in ln or "\r" in ln]
        if command[0] == "segment":
            assert any(ln.startswith("warning: label 'a photo of a very") for ln in lines)
        bars = [ln for ln in lines if ln.startswith(command[0] + ":") and "%|" in ln]
        # a frame per line; a slow step shows seconds per item ("1.51s/img]")
        assert bars and all(ln.endswith(("/s]", "s/img]", "s/input]")) for ln in bars)


# 17: what a model card says of a local model; no empty output folder when the model fails to load
def test_17_local_model_card_title_and_no_empty_output_folder(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path / "m", model_card=True)
    title = (folder / "README.md").read_text().split("\n# ", 1)[1].splitlines()[0]
    assert title == "LSeg (lseg_tiny_test)"
    photo = tmp_path / "p.png"
    Image.fromarray(make_photo(32, 40)).save(photo)
    assert main(["segment", str(photo), "-l", "a, b", "-o", str(tmp_path / "never"), "-c", "no-such-model"]) == 2
    assert not (tmp_path / "never").exists()


# 20: many heatmaps sort in label order
def test_20_heatmap_names_sort_in_label_order(photo: Path, tmp_path: Path) -> None:
    labels = ", ".join(f"thing {i}" for i in range(120))
    assert main(["segment", str(photo), "-l", labels, "-o", str(tmp_path / "o"), "--heatmaps", *RANDOM]) == 0
    names = sorted(p.name for p in (tmp_path / "o").glob("photo_heat_*"))
    assert len(names) == 120 and names[17] == "photo_heat_017_thing_17.png" and names[-1].startswith("photo_heat_119")


def test_13_rerunning_a_finished_training_says_it_is_complete(tmp_path: Path) -> None:
    from lseg.cli.train import finished_message

    assert "complete" in finished_message(finished=True, step=150, total=150, loss=None, already=True)
    assert "--out-dir" in finished_message(finished=True, step=150, total=150, loss=None, already=True)


# 10: HEIC photos, also renamed .jpg
def test_10_heic_photos_are_read_also_renamed(tmp_path: Path) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    rgb = make_photo(40, 60)
    Image.fromarray(rgb).save(tmp_path / "phone.heic", quality=95)
    (tmp_path / "renamed.jpg").write_bytes((tmp_path / "phone.heic").read_bytes())
    for name in ("phone.heic", "renamed.jpg"):
        got = lseg.io.load_image(tmp_path / name)
        assert got.shape == (40, 60, 3) and np.abs(got.astype(int) - rgb).mean() < 12  # lossy, close
    assert main(["segment", str(tmp_path), "-l", "a, b", "-o", str(tmp_path / "o"), *RANDOM]) == 0
    assert (tmp_path / "o" / "phone_labels.png").is_file() and (tmp_path / "o" / "renamed_labels.png").is_file()


# 16: a port in use is one line, before the model loads
def test_16_demo_on_a_taken_port_fails_before_the_model_loads(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setattr("lseg.cli.common.load_source_model", lambda *a: pytest.fail("the model was loaded"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--random-weights", "lseg_tiny_test", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot serve on 127.0.0.1:{port}: ") and "--port 0" in err and "\n" not in err


# 17: torch.compile's builder has nothing to say to a CPU user
def test_17_the_cli_quiets_torchs_cuda_home_warning() -> None:
    import logging

    from lseg.console import setup_logging

    setup_logging()
    assert not logging.getLogger("torch.utils.cpp_extension").isEnabledFor(logging.WARNING)


# 21: error toasts go by themselves
def test_21_demo_error_toasts_do_not_pile_up(monkeypatch: pytest.MonkeyPatch, tiny_model, tmp_path: Path) -> None:
    import gradio as gr

    from lseg.app.demo import TOAST_SECONDS, SegmentDemo

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda message, **kw: shown.append(kw))
    demo = SegmentDemo(lseg.LSegPredictor(tiny_model, size=32))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    _, _, status = demo.callback(str(bad), "a, b")
    assert status.startswith("**Error:**") and shown == [{"title": "Error", "duration": TOAST_SECONDS}]
    assert 0 < TOAST_SECONDS <= 10


# 17: every positional of the store actions is described
@pytest.mark.parametrize("action", ["info", "reduce", "export"])
def test_17_store_actions_describe_their_arguments(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["store", action, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "STORE the feature store" in text
    if action == "reduce":
        assert "K the reduced dimension" in text
