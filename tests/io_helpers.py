"""Shared helpers of the tests in ``tests/io/`` (one test module per :mod:`lseg.io` module)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hostile_inputs import encode
from PIL import Image

from lseg.errors import ImageLoadError
from lseg.io import load_image

RNG = np.random.default_rng(1234)
RGB = RNG.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)  # H=24, W=32


# ------------------------------------------------------------------------------------------ helpers




def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def four_blocks(h: int = 32, w: int = 48) -> np.ndarray:
    """A JPEG-friendly image: four flat colour quadrants."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (200, 30, 30)
    a[: h // 2, w // 2 :] = (30, 200, 30)
    a[h // 2 :, : w // 2] = (30, 30, 200)
    a[h // 2 :, w // 2 :] = (220, 220, 40)
    return a


def assert_rgb(arr: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8
    assert arr.ndim == 3 and arr.shape[2] == 3
    assert arr.flags.c_contiguous and arr.flags.writeable
    if shape is not None:
        assert arr.shape[:2] == shape


def error(source: object, **kwargs: object) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "error messages must be one line"
    return message


def png_with_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims ``width x height`` (a decompression bomb)."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


def animated_gif(path: Path, n: int = 5, duration: int = 100) -> Path:
    frames = [Image.new("RGB", (8, 6), (25 * i, 0, 0)) for i in range(n)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)
