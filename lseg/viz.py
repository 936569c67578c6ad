"""Visualisation: label-map colours, overlays with legends, probability heatmaps, feature PCA.

Everything here is numpy + Pillow (no matplotlib). Colours for class ``i`` come from
:func:`palette`, the PASCAL-VOC-style bit-interleaved palette used by the reference LSeg code
(``get_new_pallete`` in lang-seg), so ids map to the same colours as in the paper's demos
(class 0 is black).

Image arguments accept anything :func:`lseg.io.load_image` accepts (``HxWx3 uint8`` arrays,
PIL images, float arrays in ``[0, 1]``, CHW tensors, paths, ...); label maps and probabilities
accept numpy arrays or torch tensors (moved to CPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lseg.io import load_image

__all__ = [
    "VIRIDIS_ANCHORS",
    "colorize",
    "colorize_rgb",
    "colormap",
    "grid",
    "heatmaps",
    "overlay",
    "palette",
    "pca_rgb",
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

_MAX_PALETTE = 1 << 24  # the bit-interleaving spreads 24 bits of the id over 3 x 8 colour bits


def palette(n: int) -> np.ndarray:
    """The VOC-style palette of LSeg's ``get_new_pallete``: ``(n, 3) uint8`` RGB.

    Bit ``3k + c`` of the class id sets bit ``7 - k`` of colour channel ``c``, so ids
    ``0..n-1`` get distinct colours (0 = black, 1 = dark red, 2 = dark green, ...).

    Args:
        n: Number of colours, ``0 <= n <= 2**24``.

    Returns:
        ``(n, 3) uint8`` array; row ``i`` is the RGB colour of class ``i``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= _MAX_PALETTE:
        raise ValueError(f"palette: n must be an int in [0, {_MAX_PALETTE}], got {n!r}")
    ids = np.arange(int(n), dtype=np.int64)
    colours = np.zeros((int(n), 3), dtype=np.int64)
    for k in range(8):
        for c in range(3):
            colours[:, c] |= ((ids >> (3 * k + c)) & 1) << (7 - k)
    return colours.astype(np.uint8)


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


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (a fixed-size bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow / no FreeType
        return ImageFont.load_default()


def _renderable(text: str, font: Any) -> str:
    """``text`` if ``font`` can lay it out, else an ASCII approximation (never raises).

    FreeType draws missing glyphs as boxes; Pillow's bitmap fallback font only knows Latin-1,
    and text with e.g. emoji would raise there.
    """
    text = " ".join(text.split())
    try:
        font.getbbox(text)
        return text
    except Exception:  # noqa: BLE001 - any font failure falls back to ASCII
        return text.encode("ascii", "replace").decode("ascii")


def _text_width(text: str, font: Any) -> int:
    try:
        left, _, right, _ = font.getbbox(text)
        return int(np.ceil(right - min(left, 0)))
    except Exception:  # noqa: BLE001 - width estimate only
        return 8 * len(text)


def _draw_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font: Any) -> None:
    try:
        draw.text(xy, text, font=font, fill=(0, 0, 0))
    except Exception:  # noqa: BLE001 - a legend must never crash a run
        draw.text(xy, text.encode("ascii", "replace").decode("ascii"), fill=(0, 0, 0))


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
        legend: Append a white panel to the right listing the classes present in the label
            map, largest area first: colour swatch, name and share of the image. The output is
            then wider (and taller if the list does not fit).

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
    present = sorted((i for i in range(k) if counts[i] > 0), key=lambda i: (-counts[i], i))
    return _with_legend(out, [(colours[i], str(labels[i]), counts[i] / ids.size) for i in present])


def _with_legend(img: Image.Image, entries: list[tuple[np.ndarray, str, float]]) -> Image.Image:
    """Append a legend panel (swatch, label, area share) to the right of ``img``."""
    w, h = img.size
    font_size = int(np.clip(round(h / 30), 12, 40))  # readable on thumbnails and large photos
    font = _font(font_size)
    pad = max(4, font_size // 2)
    swatch = font_size
    row = int(font_size * 1.5)
    texts = [_renderable(f"{label} {_format_share(share)}", font) for _, label, share in entries]
    text_w = max((_text_width(t, font) for t in texts), default=0)
    panel_w = pad + swatch + pad + text_w + pad
    panel_h = pad + row * len(entries) + pad
    canvas = Image.new("RGB", (w + panel_w, max(h, panel_h)), (255, 255, 255))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for r, ((colour, _, _), text) in enumerate(zip(entries, texts, strict=True)):
        y = pad + r * row
        x = w + pad
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=tuple(int(c) for c in colour),
                       outline=(128, 128, 128))
        _draw_text(draw, (x + swatch + pad, y), text, font)
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

    Returns:
        ``{label: PIL RGB image of size W x H}`` in label order.
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
        result[name] = Image.fromarray(np.ascontiguousarray(heat))
    return result


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
