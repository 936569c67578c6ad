"""PNG output: :func:`save_png` writes label maps (optionally with a palette) and images atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lseg.io.atomic import atomic_write

__all__ = ["save_png"]


def save_png(path: str | os.PathLike[str], array: np.ndarray | Image.Image,
             palette: np.ndarray | Sequence[Sequence[int]] | None = None) -> Path:
    """Save an image or label map as PNG (whatever the suffix of ``path``), atomically; returns ``path``.

    Args:
        array: ``HxW uint8`` (label map or gray), ``HxW uint16`` (16-bit gray), ``HxWx3 uint8`` RGB,
            ``HxWx4 uint8`` RGBA, ``HxW`` bool (0/255 gray) or a ``PIL.Image``.
        palette: ``(n, 3)`` colours, ``n <= 256``, for an ``HxW uint8`` label map: a palette PNG, whose
            pixel values stay the class ids.

    Raises:
        ValueError: Unsupported shape/dtype, or a palette with an unsupported array.
    """
    if isinstance(array, Image.Image):
        if palette is not None:
            raise ValueError("save_png: palette is only supported for HxW uint8 label-map arrays")
        img = array
    else:
        arr = np.asarray(array)
        shape = "x".join(str(s) for s in arr.shape)
        if arr.ndim == 2 and arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * np.uint8(255)
        if palette is not None:
            if arr.ndim != 2 or arr.dtype != np.uint8:
                raise ValueError(f"save_png: palette needs an HxW uint8 label map, got {shape} {arr.dtype}")
            pal = np.asarray(palette)
            if pal.ndim != 2 or pal.shape[1] != 3 or not 1 <= pal.shape[0] <= 256:
                raise ValueError(f"save_png: palette must have shape (n, 3) with 1 <= n <= 256, got "
                                 f"{pal.shape}")
            if pal.dtype.kind not in "ui" or pal.min() < 0 or pal.max() > 255:
                raise ValueError("save_png: palette values must be integers in [0, 255]")
            if arr.size and int(arr.max()) >= pal.shape[0]:
                raise ValueError(f"save_png: label map has value {int(arr.max())} but the palette has only "
                                 f"{pal.shape[0]} colours")
            img = Image.fromarray(np.ascontiguousarray(arr))  # mode L
            img.putpalette(pal.astype(np.uint8).tobytes())  # L -> P, pixel values unchanged
        elif (arr.ndim == 2 and arr.dtype in (np.uint8, np.uint16)
              or arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype == np.uint8):
            img = Image.fromarray(np.ascontiguousarray(arr))
        else:
            raise ValueError(f"save_png: unsupported array {shape} {arr.dtype}; expected HxW uint8/uint16, "
                             "HxWx3 uint8 or HxWx4 uint8")
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
