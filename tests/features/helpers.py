"""Inputs for the feature tests: a small video and images of different sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_video(path: Path, n_frames: int = 10, rate: int = 10) -> None:
    """An mpeg4 clip, 64x48, whose bar grows each frame (so frames differ)."""
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n_frames):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:, : 6 * (i + 1)] = (200, 25 * (i % 8), 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_inputs(folder: Path) -> Path:
    """``folder/scan``: a 10-frame video (5 sampled at fps=5) and 3 images of different sizes."""
    write_video(folder / "scan" / "clip.mp4")
    rng = np.random.default_rng(0)
    for i, hw in enumerate([(40, 56), (48, 48), (30, 64)]):
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(folder / "scan" / f"img{i}.png")
    return folder / "scan"
