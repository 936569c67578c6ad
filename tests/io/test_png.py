"""Tests for lseg.io.png: save_png."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from io_helpers import RGB, RNG, leftovers
from PIL import Image

from lseg.io import (
    load_image,
    save_png,
)


def test_save_png(tmp_path: Path) -> None:
    save_png(tmp_path / "rgb.png", RGB)
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.png"), RGB)
    labels = RNG.integers(0, 4, size=(5, 7), dtype=np.uint8)
    pal = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]], np.uint8)
    save_png(tmp_path / "labels.png", labels, palette=pal)
    with Image.open(tmp_path / "labels.png") as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), labels)  # ids preserved
        np.testing.assert_array_equal(np.array(im.getpalette()[:12]).reshape(4, 3), pal)
    wide = RNG.integers(0, 1000, size=(3, 3)).astype(np.uint16)
    save_png(tmp_path / "wide.png", wide)
    with Image.open(tmp_path / "wide.png") as im:
        np.testing.assert_array_equal(np.asarray(im), wide)
    save_png(tmp_path / "pil.png", Image.fromarray(RGB))
    np.testing.assert_array_equal(load_image(tmp_path / "pil.png"), RGB)
    with pytest.raises(ValueError, match="palette"):
        save_png(tmp_path / "bad.png", RGB, palette=pal)
    with pytest.raises(ValueError, match="only 4 colours"):
        save_png(tmp_path / "bad.png", labels + 4, palette=pal)
    with pytest.raises(ValueError, match="unsupported"):
        save_png(tmp_path / "bad.png", np.zeros((2, 2), np.float32))
    assert not (tmp_path / "bad.png").exists() and leftovers(tmp_path) == []
