"""``lseg segment``, run in-process (``lseg.cli.main``) on generated photographs.

`lseg segment --heatmaps` and the gallery script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lseg
from lseg.cli import build_parser, main
from lseg.inference.options import SegmentOptions
from lseg.options import options_from_args
from lseg.viz import heatmaps


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


def test_segment_options_come_from_its_typed_config():
    parser = build_parser()
    args = parser.parse_args(["segment", "x.png", "-l", "a, b"])
    assert options_from_args(SegmentOptions, args) == SegmentOptions()
    args = parser.parse_args(["segment", "x.png", "-l", "a, b", "-o", "o", "--scores", "--heatmaps", "--multiscale",
                              "--alpha", "0.25", "--overwrite", "-q"])
    assert options_from_args(SegmentOptions, args) == SegmentOptions(
        out="o", scores=True, heatmaps=True, multiscale=True, alpha=0.25, overwrite=True, quiet=True)


ROOT = Path(__file__).resolve().parents[2]


def test_segment_heatmaps(tmp_path: Path, photo: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(photo).save(tmp_path / "p.png")
    torch.manual_seed(0)
    model = lseg.create_model("lseg_tiny_test_p32")
    lseg.save_pretrained(model, tmp_path / "m")
    args = ["segment", str(tmp_path / "p.png"), "--labels", "sky, grass, big tree", "--out", str(tmp_path / "o"),
            "--checkpoint", str(tmp_path / "m"), "--size", "64", "--device", "cpu", "--heatmaps", "-q",
            "--precision", "fp32"]  # compared with the fp32 predictor below
    assert main(args) == 0
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["p_heat_00_sky.png", "p_heat_01_grass.png", "p_heat_02_big_tree.png", "p_labels.json",
                     "p_labels.png", "p_overlay.png"]
    # Each heatmap is lseg.viz.heatmaps of the predictor's probabilities, blended over the photo.
    probs = lseg.LSegPredictor(lseg.load_model(tmp_path / "m"), size=64).segment(photo, "sky, grass, big tree").probs
    expected = heatmaps(probs, ["sky", "grass", "big tree"], photo, annotate=True)
    got = np.asarray(Image.open(tmp_path / "o" / "p_heat_01_grass.png"))
    assert got.shape[1:] == photo.shape[1:] and got.shape[0] > photo.shape[0]  # + caption and colour bar
    diff = np.abs(got.astype(int) - np.asarray(expected["grass"]).astype(int))
    assert diff.max() <= 1, np.argwhere(diff > 1)[:5]
    capsys.readouterr()
    assert main(args) == 0  # all outputs present: skipped
    assert "0 written, 1 already done" in capsys.readouterr().err


@pytest.mark.slow  # five commands at 256 px
def test_gallery_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``scripts/make_gallery.py`` runs ``lseg`` commands through ``lseg.cli.main``: run here, in this process."""
    import importlib.util

    script = ROOT / "scripts" / "make_gallery.py"
    spec = importlib.util.spec_from_file_location("make_gallery", script)
    assert spec is not None and spec.loader is not None
    gallery = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gallery)
    monkeypatch.setattr(sys, "argv", [str(script), "--out", str(tmp_path)])
    gallery.main()  # sys.exit(message) if a command fails
    stdout = capsys.readouterr().out
    assert "$ lseg segment" in stdout and "$ lseg features" in stdout
    files = {p.name: p for p in tmp_path.iterdir()}
    assert sorted(files) == ["heatmaps.png", "input.png", "labels.png", "overlay.png", "pca.png"]
    assert sum(p.stat().st_size for p in files.values()) < 300 * 1024
    assert Image.open(files["input.png"]).size == (256, 192)
    assert Image.open(files["labels.png"]).mode == "P"
    assert Image.open(files["heatmaps.png"]).size[0] > 4 * 256  # four heatmaps side by side


def test_no_legend_draws_the_overlay_at_the_photos_size(tmp_path, capsys):
    """One option, declared once: the CLI flag, its help, the Python field and the recipe follow."""
    from PIL import Image as PILImage

    from lseg.inference.options import SegmentOptions

    photo = tmp_path / "p.png"
    PILImage.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(photo)
    args = ["segment", str(photo), "-l", "a, b", "-o", str(tmp_path / "o"), "--random-weights", "lseg_tiny_test",
            "--size", "32", "-q"]
    assert main(args) == 0
    assert PILImage.open(tmp_path / "o" / "p_overlay.png").size[0] > 40  # legend beside the photo
    assert main([*args, "--no-legend"]) == 0
    assert "1 redone: legend changed" in capsys.readouterr().err
    assert PILImage.open(tmp_path / "o" / "p_overlay.png").size == (40, 30)
    assert SegmentOptions(legend=False).legend is False


def test_an_output_folder_under_home_is_written_whole(photos, model_dir, tmp_path, monkeypatch, capsys):
    """``--out=~/seg`` (the shell does not expand it there) and ``result.save("~/res")``: every file
    in ``$HOME``, none in a folder literally named ``~``."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    args = ["segment", str(photos / "a.jpg"), "-l", "sky, other", "-c", str(model_dir), "--size", "64", "-q",
            "--out=~/seg"]
    assert main(args) == 0
    assert sorted(p.name for p in (home / "seg").iterdir()) == ["a_labels.json", "a_labels.png", "a_overlay.png"]
    assert Image.open(home / "seg" / "a_labels.png").size == (128, 96)
    assert main(args) == 0 and "0 written, 1 already done" in capsys.readouterr().err
    assert main(["features", str(photos / "a.jpg"), "-c", str(model_dir), "--size", "64", "-q",
                 "--out=~/feat"]) == 0
    assert {"a.json", "a.npy"} <= {p.name for p in (home / "feat").iterdir()}
    predictor = lseg.LSegPredictor(lseg.load_model(model_dir), size=64)
    predictor.segment(photos / "a.jpg", "sky, other").save("~/res")
    assert (home / "res" / "a_labels.png").stat().st_size > 0
    assert not (tmp_path / "~").exists()


def test_a_warning_about_an_image_is_said_once(tmp_path):
    """The loader reads the file, and the writer again for the overlay: Pillow's warning once, named."""
    import subprocess

    from hostile_inputs import cli_env

    (tmp_path / "in").mkdir()
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\xff\xff\xff\xff"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "in" / "x.jpg", exif=exif)
    err = subprocess.run([sys.executable, "-m", "lseg.cli", "segment", str(tmp_path / "in"), "-l", "dog, other",
                          "--random-weights", "lseg_tiny_test", "-o", str(tmp_path / "o"), "--size", "64", "-q"],
                         env=cli_env(), capture_output=True, text=True, check=True).stderr
    assert [ln for ln in err.splitlines() if "Corrupt EXIF" in ln] == [
        f"warning: image '{tmp_path / 'in' / 'x.jpg'}': Corrupt EXIF data. Expecting to read 12 bytes but only got 4."]


def test_multiscale_with_a_single_pass_geometry_is_refused(photos, tmp_path, capsys):
    args = ["segment", str(photos), "-l", "sky, other", "-o", str(tmp_path / "o"), "--multiscale",
            "--random-weights", "lseg_tiny_test"]
    assert main([*args, "--size", "240"]) == 2
    assert "error: --size, --crop-size and --stride set the single-pass geometry; --multiscale has its own" in (
        capsys.readouterr().err)
    assert not (tmp_path / "o").exists()
