"""Colours: the label palettes (:func:`palette`, :func:`voc_palette`) and the viridis colour map."""

from __future__ import annotations

import colorsys
import functools
from typing import Any

import numpy as np

from lseg.viz._arrays import _to_numpy

#: The 10 anchor colours of matplotlib's *viridis*, evenly spaced on ``[0, 1]``; :func:`colormap`
#: interpolates linearly between them.
VIRIDIS_ANCHORS: np.ndarray = np.array(
    [[0x44, 0x01, 0x54], [0x48, 0x28, 0x78], [0x3E, 0x4A, 0x89], [0x31, 0x68, 0x8E], [0x26, 0x82, 0x8E],
     [0x1F, 0x9E, 0x89], [0x35, 0xB7, 0x79], [0x6D, 0xCD, 0x59], [0xB4, 0xDE, 0x2C], [0xFD, 0xE7, 0x25]],
    dtype=np.uint8,
)
VIRIDIS_ANCHORS.setflags(write=False)


_VIRIDIS_LUT = np.rint(np.stack([  # (256, 3) uint8, computed once at import (cheap)
    np.interp(np.linspace(0.0, 1.0, 256), np.linspace(0.0, 1.0, len(VIRIDIS_ANCHORS)), channel)
    for channel in VIRIDIS_ANCHORS.T.astype(np.float64)], axis=1)).astype(np.uint8)
_VIRIDIS_LUT.setflags(write=False)

_MAX_VOC = 1 << 24  # the bit-interleaving spreads 24 bits of the id over 3 x 8 colour bits
#: Most colours :func:`palette` makes (label maps hold at most 65536 labels).
MAX_COLORS = 1 << 16

#: The first colours of :func:`palette`: matplotlib's ``tab10`` without its grey.
TAB10: np.ndarray = np.array(
    [[0x1F, 0x77, 0xB4], [0xFF, 0x7F, 0x0E], [0x2C, 0xA0, 0x2C], [0xD6, 0x27, 0x28], [0x94, 0x67, 0xBD],
     [0x8C, 0x56, 0x4B], [0xE3, 0x77, 0xC2], [0xBC, 0xBD, 0x22], [0x17, 0xBE, 0xCF]],
    dtype=np.uint8,
)
TAB10.setflags(write=False)


def _check_n(n: Any, limit: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= limit:
        raise ValueError(f"{name}: n must be an int in [0, {limit}], got {n!r}")
    return int(n)


@functools.lru_cache(maxsize=16)
def _palette(n: int) -> np.ndarray:
    out = [tuple(int(c) for c in rgb) for rgb in TAB10[:n]]
    seen = set(out)
    i = 0
    golden = (5 ** 0.5 - 1) / 2
    while len(out) < n:
        # Hues spread by the golden ratio; saturation 0.55-0.9 and value 0.65-0.95 keep every colour
        # away from black, white and grey.
        h = (0.11 + i * golden) % 1.0
        s = 0.55 + 0.35 * ((i * 0.7548776662) % 1.0)
        v = 0.65 + 0.30 * ((i * 0.5698402910) % 1.0)
        rgb = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))
        i += 1
        luma = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255
        if rgb not in seen and 0.15 <= luma <= 0.78:  # neither near-black nor near-white (yellows)
            seen.add(rgb)
            out.append(rgb)
    arr = np.array(out, dtype=np.uint8).reshape(n, 3)
    arr.setflags(write=False)
    return arr


def palette(n: int) -> np.ndarray:
    """``n`` (at most :data:`MAX_COLORS`) distinct colours, each visible over photos, ``(n, 3) uint8`` RGB:
    :data:`TAB10`, then golden-ratio-spaced hues of bounded saturation, value and luma."""
    return _palette(_check_n(n, MAX_COLORS, "palette")).copy()


def voc_palette(n: int) -> np.ndarray:
    """The VOC palette of LSeg's ``get_new_pallete``: ``(n, 3) uint8`` RGB (0 = black, 1 = dark red, ...)."""
    ids = np.arange(_check_n(n, _MAX_VOC, "voc_palette"), dtype=np.int64)
    colours = np.zeros((len(ids), 3), dtype=np.int64)
    for k in range(8):
        for c in range(3):
            colours[:, c] |= ((ids >> (3 * k + c)) & 1) << (7 - k)
    return colours.astype(np.uint8)


def hex_colors(n: int) -> list[str]:
    """:func:`palette` as ``"#rrggbb"`` strings."""
    return ["#{:02x}{:02x}{:02x}".format(*c) for c in palette(n)]


def colormap(values: Any, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Finite values of any shape as viridis colours, ``values.shape + (3,)`` uint8 RGB, clipped to
    ``[vmin, vmax]``."""
    v = _to_numpy(values).astype(np.float64)
    if not np.isfinite(v).all():
        raise ValueError("colormap: values contain NaN or inf")
    if not vmax > vmin:
        raise ValueError(f"colormap: need vmax > vmin, got vmin={vmin}, vmax={vmax}")
    idx = np.rint(np.clip((v - vmin) / (vmax - vmin), 0.0, 1.0) * 255.0).astype(np.intp)
    return _VIRIDIS_LUT[idx]
