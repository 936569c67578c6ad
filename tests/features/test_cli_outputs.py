"""`lseg segment --heatmaps` and the gallery script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lseg
from lseg.cli import main
from lseg.viz import heatmaps

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


def test_gallery_script(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_gallery.py"), "--out", str(tmp_path)],
                          check=False, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "$ lseg segment" in proc.stdout and "$ lseg features" in proc.stdout
    files = {p.name: p for p in tmp_path.iterdir()}
    assert sorted(files) == ["heatmaps.png", "input.png", "labels.png", "overlay.png", "pca.png"]
    assert sum(p.stat().st_size for p in files.values()) < 300 * 1024
    assert Image.open(files["input.png"]).size == (256, 192)
    assert Image.open(files["labels.png"]).mode == "P"
    assert Image.open(files["heatmaps.png"]).size[0] > 4 * 256  # four heatmaps side by side
