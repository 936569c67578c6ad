"""Helpers that write tiny real image / mask files in the on-disk layouts the readers expect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_rgb(path: Path, h: int = 8, w: int = 12, seed: int = 0, fmt: str | None = None) -> np.ndarray:
    """Write a random RGB image (PNG unless the suffix says otherwise); returns the written pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
    return arr


def write_mask(path: Path, arr: np.ndarray, palette: bool = False) -> None:
    """Write an index mask: grayscale ('L'), palette ('P') or 16-bit (uint16 -> 'I;16') image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.dtype == np.uint16:
        Image.fromarray(arr).save(path)  # mode I;16, PNG or TIFF by suffix
        return
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    im = Image.frombytes("P" if palette else "L", (arr.shape[1], arr.shape[0]), arr.tobytes())
    if palette:  # a VOC-like colour palette: the file stores indices, viewers show colours
        pal = np.zeros((256, 3), dtype=np.uint8)
        pal[:21] = np.random.default_rng(1).integers(0, 256, (21, 3))
        pal[255] = (224, 224, 192)
        im.putpalette(pal.ravel().tolist())
    im.save(path)


def mask_with(values: list[int], h: int = 8, w: int = 12, dtype=np.uint8) -> np.ndarray:
    """An (h, w) mask whose columns cycle through ``values`` (every value appears)."""
    cols = np.array(values, dtype=dtype)[np.arange(w) % len(values)]
    return np.broadcast_to(cols, (h, w)).copy()


@pytest.fixture
def files():
    """Namespace of the writer helpers, for tests."""

    class _Files:
        rgb = staticmethod(write_rgb)
        mask = staticmethod(write_mask)
        mask_with = staticmethod(mask_with)

    return _Files
