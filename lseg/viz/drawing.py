"""Drawing over photos: :func:`overlay` (class colours with a legend), :func:`heatmaps` (one viridis
map per class) and :func:`grid` (a gallery)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from lseg.io import load_image
from lseg.viz._arrays import _label_map, _to_numpy
from lseg.viz.colors import _VIRIDIS_LUT, colormap, palette
from lseg.viz.fonts import TextRenderer


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
            :mod:`lseg.viz.fonts`) and share of the image, absent labels in grey. The text scales with
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
