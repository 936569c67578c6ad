"""Visualisation: label-map colours, overlays with legends, probability heatmaps, feature PCA.

Everything here is numpy + Pillow (matplotlib is not imported; its DejaVu font file is used by
:mod:`lseg.fonts`). Colours for class ``i`` come from :func:`palette`: colours that all show over
photos (no black, white or grey); :func:`voc_palette` is the reference code's VOC palette, whose
class 0 is black.

Image arguments accept anything :func:`lseg.io.load_image` accepts (``HxWx3 uint8`` arrays,
PIL images, float arrays in ``[0, 1]``, CHW tensors, paths, ...); label maps and probabilities
accept numpy arrays or torch tensors (moved to CPU).
"""

from __future__ import annotations

import colorsys
import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from lseg.fonts import TextRenderer
from lseg.io import load_image

__all__ = [
    "VIRIDIS_ANCHORS",
    "colorize",
    "colorize_rgb",
    "colormap",
    "grid",
    "heatmaps",
    "hex_colors",
    "overlay",
    "palette",
    "pca_rgb",
    "read_label_names",
    "save_label_map",
    "voc_palette",
]

#: The 10 anchor colours of matplotlib's *viridis* (as in R's ``viridisLite::viridis(10)``),
#: evenly spaced on ``[0, 1]``. :func:`colormap` interpolates linearly between them, which is
#: visually indistinguishable from the full 256-entry table and keeps viridis' monotonically
#: increasing lightness (important for reading probabilities).
VIRIDIS_ANCHORS: np.ndarray = np.array(
    [
        [0x44, 0x01, 0x54],
        [0x48, 0x28, 0x78],
        [0x3E, 0x4A, 0x89],
        [0x31, 0x68, 0x8E],
        [0x26, 0x82, 0x8E],
        [0x1F, 0x9E, 0x89],
        [0x35, 0xB7, 0x79],
        [0x6D, 0xCD, 0x59],
        [0xB4, 0xDE, 0x2C],
        [0xFD, 0xE7, 0x25],
    ],
    dtype=np.uint8,
)
VIRIDIS_ANCHORS.setflags(write=False)


def _viridis_lut() -> np.ndarray:
    x = np.linspace(0.0, 1.0, 256)
    xp = np.linspace(0.0, 1.0, len(VIRIDIS_ANCHORS))
    lut = np.stack([np.interp(x, xp, VIRIDIS_ANCHORS[:, c].astype(np.float64)) for c in range(3)], axis=1)
    out = np.rint(lut).astype(np.uint8)
    out.setflags(write=False)
    return out


_VIRIDIS_LUT = _viridis_lut()  # (256, 3) uint8, computed once at import (cheap)

_MAX_VOC = 1 << 24  # the bit-interleaving spreads 24 bits of the id over 3 x 8 colour bits
#: Most colours :func:`palette` makes (label maps hold at most 65536 labels).
MAX_COLORS = 1 << 16

#: The first colours of :func:`palette`: matplotlib's ``tab10`` (Tableau's categorical palette) without
#: its grey, in its order. Each is mid-light and saturated, so it shows over dark and bright photos.
TAB10: np.ndarray = np.array(
    [
        [0x1F, 0x77, 0xB4],  # blue
        [0xFF, 0x7F, 0x0E],  # orange
        [0x2C, 0xA0, 0x2C],  # green
        [0xD6, 0x27, 0x28],  # red
        [0x94, 0x67, 0xBD],  # purple
        [0x8C, 0x56, 0x4B],  # brown
        [0xE3, 0x77, 0xC2],  # pink
        [0xBC, 0xBD, 0x22],  # olive
        [0x17, 0xBE, 0xCF],  # cyan
    ],
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
    """``n`` distinct colours, each visible over photos: ``(n, 3) uint8`` RGB, row ``i`` for label ``i``.

    The first 9 are :data:`TAB10`; the others have golden-ratio-spaced hues with saturation >= 0.55,
    value in [0.65, 0.95] and luma in [0.15, 0.78] (never black, white or grey). Label 0, usually the one people care
    about most, is blue rather than the black of the VOC palette (:func:`voc_palette`).

    Args:
        n: Number of colours, ``0 <= n <=`` :data:`MAX_COLORS`.
    """
    return _palette(_check_n(n, MAX_COLORS, "palette")).copy()


def voc_palette(n: int) -> np.ndarray:
    """The VOC-style palette of LSeg's ``get_new_pallete``: ``(n, 3) uint8`` RGB (0 = black,
    1 = dark red, ...), as the reference code and the PASCAL VOC masks colour class ids.

    Bit ``3k + c`` of the class id sets bit ``7 - k`` of colour channel ``c``.
    """
    ids = np.arange(_check_n(n, _MAX_VOC, "voc_palette"), dtype=np.int64)
    colours = np.zeros((len(ids), 3), dtype=np.int64)
    for k in range(8):
        for c in range(3):
            colours[:, c] |= ((ids >> (3 * k + c)) & 1) << (7 - k)
    return colours.astype(np.uint8)


def hex_colors(n: int) -> list[str]:
    """:func:`palette` as ``"#rrggbb"`` strings."""
    return ["#{:02x}{:02x}{:02x}".format(*c) for c in palette(n)]


def save_label_map(path: str | os.PathLike[str], label_map: Any, labels: Sequence[str]) -> Path:
    """Write a label map as PNG (atomically) that says which index is which label.

    Pixel value ``i`` is ``labels[i]``: an 8-bit palette PNG coloured with :func:`palette` (up to 256
    labels) or 16-bit grey (up to 65536). The label names are stored in an ``lseg:labels`` text chunk
    (iTXt, UTF-8 JSON list): ``json.loads(Image.open(path).text["lseg:labels"])``.
    """
    from PIL.PngImagePlugin import PngInfo

    from lseg.io import atomic_write

    names = [str(lb) for lb in labels]
    ids = _label_map(label_map, int64=False)
    if len(names) > MAX_COLORS:
        raise ValueError(f"save_label_map: {len(names)} labels; a PNG label map holds at most {MAX_COLORS}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= max(1, len(names))):
        raise ValueError(f"save_label_map: label ids must be in [0, {len(names)}), got [{int(ids.min())}, "
                         f"{int(ids.max())}]")
    if len(names) <= 256:
        img = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8))
        img.putpalette(palette(max(1, len(names))).tobytes())
    else:
        img = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint16))
    info = PngInfo()
    info.add_itxt("lseg:labels", json.dumps(names, ensure_ascii=False))
    return atomic_write(path, lambda p: img.save(p, format="PNG", pnginfo=info))


def read_label_names(path: str | os.PathLike[str]) -> list[str]:
    """The label names a PNG written by :func:`save_label_map` stores (index ``i`` is pixel value ``i``)."""
    with Image.open(path) as img:
        text = getattr(img, "text", {}).get("lseg:labels")
    if text is None:
        raise ValueError(f"{path} holds no lseg:labels text chunk (not written by lseg?)")
    return list(json.loads(text))


def _to_numpy(x: Any) -> np.ndarray:
    """numpy array from an array-like or a torch tensor (detached, on CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu()
        if hasattr(x, "is_floating_point") and x.is_floating_point():
            x = x.float()  # numpy has no bfloat16
        return x.numpy()
    return np.asarray(x)


def _label_map(label_map: Any, name: str = "label_map", int64: bool = True) -> np.ndarray:
    """Validate an ``HxW`` integer label map and return it as an int64 array (``int64=False``:
    integer arrays keep their dtype, no copy)."""
    arr = _to_numpy(label_map)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]  # tolerate 1xHxW model outputs
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be an HxW array of class ids, got shape {tuple(arr.shape)}")
    if arr.dtype != np.bool_ and arr.dtype.kind not in "ui":
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}; use argmax over "
                         "classes first")
    if not int64 and arr.dtype.kind in "ui":
        return arr
    return arr.astype(np.int64)


def colorize_rgb(label_map: Any, n_colors: int | None = None) -> np.ndarray:
    """Colour a label map with :func:`palette`: ``HxW`` int -> ``HxWx3 uint8`` RGB.

    Unlike :func:`colorize` this supports any number of classes. Negative ids are drawn black.

    Args:
        label_map: ``HxW`` integer class ids (numpy or torch).
        n_colors: Palette size; default ``max(label_map) + 1``.
    """
    ids = _label_map(label_map)
    n = int(ids.max()) + 1 if n_colors is None else int(n_colors)
    colours = palette(max(n, 1))
    valid = (ids >= 0) & (ids < len(colours))
    out = colours[np.where(valid, ids, 0)]
    out[~valid] = 0
    return np.ascontiguousarray(out)


def colorize(label_map: Any) -> Image.Image:
    """A label map as a palette ('P' mode) PIL image using :func:`palette`.

    Pixel values stay the class ids (saving it as PNG keeps the ids losslessly) while viewers
    show the palette colours.

    Args:
        label_map: ``HxW`` integer class ids in ``[0, 255]`` (numpy or torch).

    Returns:
        PIL image, mode ``'P'``, size ``(W, H)``, with the 256-entry palette.

    Raises:
        ValueError: Not ``HxW`` integers, or ids outside ``[0, 255]`` (a 'P' image has 256
            entries; use :func:`colorize_rgb` for more classes).
    """
    ids = _label_map(label_map)
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"colorize: class ids must be in [0, 255] for a palette image, got [{lo}, {hi}]; "
                         "use colorize_rgb() for more than 256 classes")
    img = Image.fromarray(ids.astype(np.uint8))  # mode L
    img.putpalette(palette(256).tobytes())  # L -> P, pixel values unchanged
    return img


def legend_font_size(image_size: tuple[int, int]) -> int:
    """Legend text height in pixels for a ``(W, H)`` picture: 1/45 of its long side (at least 12),
    so the legend reads the same on a thumbnail and on a 6000x4000 photo viewed whole."""
    return max(12, round(max(image_size) / 45))


def _format_share(fraction: float) -> str:
    percent = 100.0 * fraction
    return "<1%" if 0 < percent < 1 else f"{percent:.0f}%"


def overlay(
    image_rgb: Any,
    label_map: Any,
    labels: Sequence[str],
    alpha: float = 0.5,
    legend: bool = True,
) -> Image.Image:
    """Blend class colours over a photo, optionally with a legend panel on the right.

    Args:
        image_rgb: The photo, ``HxWx3 uint8`` RGB or anything :func:`lseg.io.load_image`
            accepts.
        label_map: ``HxW`` integer class ids, same ``H, W`` as the image; id ``i`` is
            ``labels[i]``. Pixels with ids outside ``[0, len(labels))`` (e.g. an ignore index
            255) are left uncoloured.
        labels: Class names, ``len(labels)`` classes.
        alpha: Colour opacity in ``[0, 1]``: output = ``(1 - alpha) * photo + alpha * colour``.
        legend: Append a white panel to the right listing every label in index order (up to 256;
            above, those present, largest first): colour swatch, name (any Unicode, see
            :mod:`lseg.fonts`) and share of the image, absent labels in grey. The text scales with
            the image (:func:`legend_font_size`); long lists wrap into columns. The output is then
            wider (and taller if the list does not fit).

    Returns:
        PIL RGB image; ``W x H`` without legend, wider with it.

    Raises:
        ValueError: Mismatched sizes, ``alpha`` outside ``[0, 1]``, or a bad label map.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}")
    if isinstance(image_rgb, np.ndarray) and image_rgb.ndim == 3 and image_rgb.shape[2] == 3 \
            and image_rgb.dtype == np.uint8:
        photo = image_rgb  # only read: no copy of a large photo
    else:
        photo = load_image(image_rgb, max_pixels=None)
    ids = _label_map(label_map, int64=False)
    if ids.shape != photo.shape[:2]:
        raise ValueError(f"overlay: label_map is {ids.shape[0]}x{ids.shape[1]} but the image is "
                         f"{photo.shape[0]}x{photo.shape[1]} (HxW); resize the label map (nearest) first")
    labels = list(labels)
    k = len(labels)
    colours = palette(k)
    # Row strips (~1 M pixels): temporaries stay small for very large photos.
    result = np.empty((*photo.shape[:2], 3), dtype=np.uint8)
    counts = np.zeros(max(k, 1), dtype=np.int64)
    step = max(1, (1 << 20) // max(1, photo.shape[1]))
    for r0 in range(0, photo.shape[0], step):
        rows = slice(r0, r0 + step)
        strip = ids[rows].astype(np.int64)
        valid = (strip >= 0) & (strip < k)
        blended = photo[rows].astype(np.float32)
        if k:
            colour_img = colours[np.where(valid, strip, 0)].astype(np.float32)
            mixed = (1.0 - alpha) * blended + alpha * colour_img
            blended = np.where(valid[:, :, None], mixed, blended)
            counts += np.bincount(strip[valid], minlength=k)
        result[rows] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    out = Image.fromarray(result)
    del result  # Pillow copied it; the legend canvas below is another full-size image
    if not legend or k == 0:
        return out
    if k <= _LEGEND_ALL:
        shown = list(range(k))  # every label, in index order: the colour of an absent one too
    else:  # thousands of labels: the present ones, largest first
        shown = sorted((i for i in range(k) if counts[i] > 0), key=lambda i: (-counts[i], i))
    entries = [(colours[i], str(labels[i]), counts[i] / ids.size) for i in shown]
    note = f"+ {k - len(shown)} labels not present" if len(shown) < k else None
    return _with_legend(out, entries, note)


#: Up to this many labels the legend lists them all; above, only those present.
_LEGEND_ALL = 256


def _with_legend(img: Image.Image, entries: list[tuple[np.ndarray, str, float]], note: str | None = None) -> Image.Image:
    """Append a legend panel (swatch, label, area share) to the right of ``img``, in columns of at
    least 8 rows that fill the picture's height; text scales with the picture."""
    w, h = img.size
    size = legend_font_size((w, h))
    text = TextRenderer(size)
    pad = max(4, size // 2)
    row = int(size * 1.5)
    lines = [(colour, f"{label}  {_format_share(share)}", share > 0) for colour, label, share in entries]
    if note:
        lines.append((None, note, False))
    per_col = max(8, (h - 2 * pad) // row)
    cols = [lines[i : i + per_col] for i in range(0, len(lines), per_col)] or [[]]
    col_w = [pad + size + pad + max((text.width(t) for _, t, _ in c), default=0) + pad for c in cols]
    panel_h = 2 * pad + row * max(len(c) for c in cols)
    canvas = Image.new("RGB", (w + sum(col_w), max(h, panel_h)), (255, 255, 255))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = w
    for col, cw in zip(cols, col_w, strict=True):
        for r, (colour, label, present) in enumerate(col):
            y = pad + r * row
            if colour is not None:
                draw.rectangle([x + pad, y, x + pad + size - 1, y + size - 1], fill=tuple(int(c) for c in colour),
                               outline=(128, 128, 128))
            # Absent labels in grey text, so the eye finds the present ones first.
            text.draw(draw, (x + pad + size + pad, y), label, fill=(0, 0, 0) if present else (120, 120, 120))
        x += cw
    return canvas


def colormap(values: Any, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Map scalar values to viridis colours.

    Args:
        values: Array of any shape (float), e.g. ``HxW`` probabilities; must be finite.
        vmin: Value mapped to the darkest colour (values below are clipped).
        vmax: Value mapped to the brightest colour (values above are clipped).

    Returns:
        ``values.shape + (3,)`` uint8 RGB.
    """
    v = _to_numpy(values).astype(np.float64)
    if not np.isfinite(v).all():
        raise ValueError("colormap: values contain NaN or inf")
    if not vmax > vmin:
        raise ValueError(f"colormap: need vmax > vmin, got vmin={vmin}, vmax={vmax}")
    idx = np.rint(np.clip((v - vmin) / (vmax - vmin), 0.0, 1.0) * 255.0).astype(np.intp)
    return _VIRIDIS_LUT[idx]


def heatmaps(
    probs: Any,
    labels: Sequence[str],
    image: Any = None,
    *,
    alpha: float = 0.5,
    vmin: float = 0.0,
    vmax: float = 1.0,
    annotate: bool = False,
) -> dict[str, Image.Image]:
    """One viridis heatmap per class.

    Args:
        probs: ``KxHxW`` float per-class scores, typically softmax probabilities in ``[0, 1]``
            (numpy or torch; a leading batch dimension of 1 is accepted).
        labels: ``K`` distinct class names (dictionary keys).
        image: Optional photo (``HxWx3 uint8`` or anything :func:`lseg.io.load_image` accepts)
            with the same ``H, W``; the heatmap is blended over it with opacity ``alpha``.
        alpha: Heatmap opacity in ``[0, 1]`` when ``image`` is given.
        vmin: Score shown darkest (clipped below).
        vmax: Score shown brightest (clipped above).
        annotate: Add a strip below each map with the label's name and a colour bar from
            ``vmin`` to ``vmax`` (the image is then taller than ``H``).

    Returns:
        ``{label: PIL RGB image of size W x H}`` in label order (``W x (H + strip)`` with ``annotate``).
    """
    p = _to_numpy(probs)
    if p.ndim == 4 and p.shape[0] == 1:
        p = p[0]
    if p.ndim != 3:
        raise ValueError(f"heatmaps: probs must be KxHxW, got shape {tuple(p.shape)}")
    if p.dtype.kind not in "fiub":
        raise ValueError(f"heatmaps: probs must be numeric, got dtype {p.dtype}")
    names = [str(label) for label in labels]
    if len(names) != p.shape[0]:
        raise ValueError(f"heatmaps: {p.shape[0]} score maps but {len(names)} labels")
    if len(set(names)) != len(names):
        raise ValueError("heatmaps: labels must be distinct (they are the dictionary keys)")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"heatmaps: alpha must be in [0, 1], got {alpha}")
    photo = None
    if image is not None:
        photo = load_image(image, max_pixels=None).astype(np.float32)
        if photo.shape[:2] != p.shape[1:]:
            raise ValueError(f"heatmaps: probs are {p.shape[1]}x{p.shape[2]} but the image is "
                             f"{photo.shape[0]}x{photo.shape[1]} (HxW); upsample probs first")
    result: dict[str, Image.Image] = {}
    for name, score in zip(names, p, strict=True):
        heat = colormap(score, vmin=vmin, vmax=vmax)
        if photo is not None:
            heat = np.rint((1.0 - alpha) * photo + alpha * heat).astype(np.uint8)
        img = Image.fromarray(np.ascontiguousarray(heat))
        result[name] = _heat_caption(img, name, vmin, vmax) if annotate else img
    return result


def _heat_caption(img: Image.Image, name: str, vmin: float, vmax: float) -> Image.Image:
    """``img`` with a strip below: the label's name, then a viridis colour bar with its end values."""
    w, h = img.size
    size = legend_font_size((w, h))
    text = TextRenderer(size)
    pad = max(4, size // 2)
    strip_h = 3 * pad + int(2.4 * size)
    canvas = Image.new("RGB", (w, h + strip_h), (255, 255, 255))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    text.draw(draw, (pad, h + pad), name)
    lo, hi = f"{vmin:g}", f"{vmax:g}"
    bar_x0 = pad + text.width(lo) + pad
    bar_x1 = w - pad - text.width(hi) - pad
    y = h + 2 * pad + int(1.2 * size)
    if bar_x1 - bar_x0 >= 8:  # room for a bar: the ramp with its two end values
        ramp = _VIRIDIS_LUT[np.linspace(0, 255, bar_x1 - bar_x0).round().astype(np.intp)]
        canvas.paste(Image.fromarray(np.ascontiguousarray(np.repeat(ramp[None], size - 2, axis=0))), (bar_x0, y))
        text.draw(draw, (pad, y - 1), lo)
        text.draw(draw, (bar_x1 + pad, y - 1), hi)
    return canvas


def pca_rgb(
    features: Any,
    *,
    layout: Literal["DHW", "HWD"] = "DHW",
    n_samples: int = 10_000,
    seed: int = 0,
) -> np.ndarray:
    """Visualise a dense feature map by projecting it on its first 3 principal components.

    The principal axes are computed exactly (SVD, float64) on a random subsample of
    ``n_samples`` pixels (all pixels if fewer), drawn with a fixed ``seed``. Each axis' sign is
    fixed so its largest-magnitude loading is positive (as scikit-learn's ``svd_flip``), making
    the colours independent of the SVD implementation. Every pixel is projected, then each
    channel is min-max normalised to ``[0, 255]`` (a constant channel - or one whose spread is
    below 1e-6 of the first component's, i.e. numerical noise - becomes 0).

    Args:
        features: ``DxHxW`` (``layout="DHW"``, default; ``1xDxHxW`` accepted) or ``HxWxD``
            (``layout="HWD"``) float features, numpy or torch. ``D >= 1``; with ``D < 3`` the
            missing channels are 0.
        layout: Axis order of ``features``.
        n_samples: Pixels used to fit the PCA (>= 1).
        seed: Seed for the subsample.

    Returns:
        ``HxWx3 uint8`` RGB.
    """
    f = _to_numpy(features)
    if layout not in ("DHW", "HWD"):
        raise ValueError(f"pca_rgb: layout must be 'DHW' or 'HWD', got {layout!r}")
    if layout == "DHW" and f.ndim == 4 and f.shape[0] == 1:
        f = f[0]
    if f.ndim != 3:
        raise ValueError(f"pca_rgb: features must be 3-D ({layout}), got shape {tuple(f.shape)}")
    if f.dtype.kind not in "fiub":
        raise ValueError(f"pca_rgb: features must be numeric, got dtype {f.dtype}")
    if n_samples < 1:
        raise ValueError(f"pca_rgb: n_samples must be >= 1, got {n_samples}")
    if layout == "DHW":
        d, h, w = f.shape
        flat = f.reshape(d, h * w).T  # (HW, D) view
    else:
        h, w, d = f.shape
        flat = f.reshape(h * w, d)
    if h * w == 0 or d == 0:
        raise ValueError(f"pca_rgb: empty feature map of shape {tuple(f.shape)}")
    flat = flat.astype(np.float32, copy=False)
    if not np.isfinite(flat).all():
        raise ValueError("pca_rgb: features contain NaN or inf")

    rng = np.random.default_rng(seed)
    n = h * w
    sample_idx = np.sort(rng.choice(n, size=n_samples, replace=False)) if n > n_samples else slice(None)
    sample = flat[sample_idx].astype(np.float64)
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    axes = vt[:3]  # (<=3, D)
    # Deterministic sign: the largest-magnitude loading of each axis is positive.
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]

    projected = (flat - mean.astype(np.float32)) @ axes.T.astype(np.float32)  # (HW, <=3)
    rgb = np.zeros((n, 3), dtype=np.float32)
    rgb[:, : projected.shape[1]] = projected
    lo, hi = rgb.min(axis=0), rgb.max(axis=0)
    span = (hi - lo).astype(np.float64)
    # A channel whose spread is rounding noise next to the first component (rank-deficient
    # features) is treated as constant instead of stretching that noise to full range.
    meaningful = span > 1e-6 * max(float(span[0]), 1e-30)
    scale = np.where(meaningful, 255.0 / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
    out = np.rint((rgb - lo) * scale).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.reshape(h, w, 3))


def grid(
    images: Sequence[Any] | Mapping[str, Any],
    ncols: int = 4,
    *,
    pad: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Tile images into a gallery.

    Args:
        images: Images in row-major order (anything :func:`lseg.io.load_image` accepts, e.g. PIL
            images or ``HxWx3 uint8`` arrays). A mapping uses its values (e.g. the output of
            :func:`heatmaps`). Sizes may differ: every cell is as large as the largest image and
            each image is centred in its cell.
        ncols: Maximum number of columns (fewer if there are fewer images).
        pad: Pixels of ``background`` between and around cells.
        background: RGB fill colour.

    Returns:
        PIL RGB image.
    """
    items = list(images.values()) if isinstance(images, Mapping) else list(images)
    if not items:
        raise ValueError("grid: no images given")
    if isinstance(ncols, bool) or int(ncols) != ncols or ncols < 1:
        raise ValueError(f"grid: ncols must be a positive int, got {ncols!r}")
    if pad < 0:
        raise ValueError(f"grid: pad must be >= 0, got {pad}")
    arrays = [load_image(item, max_pixels=None) for item in items]
    cols = min(int(ncols), len(arrays))
    rows = -(-len(arrays) // cols)
    cell_h = max(a.shape[0] for a in arrays)
    cell_w = max(a.shape[1] for a in arrays)
    canvas = np.empty((pad + rows * (cell_h + pad), pad + cols * (cell_w + pad), 3), dtype=np.uint8)
    canvas[:] = np.asarray(background, dtype=np.uint8)
    for i, a in enumerate(arrays):
        r, c = divmod(i, cols)
        y = pad + r * (cell_h + pad) + (cell_h - a.shape[0]) // 2
        x = pad + c * (cell_w + pad) + (cell_w - a.shape[1]) // 2
        canvas[y : y + a.shape[0], x : x + a.shape[1]] = a
    return Image.fromarray(canvas)
