"""Drawing over photos: :func:`overlay` (class colours with a legend), :func:`heatmaps`, :func:`grid`."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from lseg.io import load_image
from lseg.viz._arrays import _label_map, _label_names, _to_numpy
from lseg.viz.colors import _VIRIDIS_LUT, colormap, palette
from lseg.viz.fonts import TextRenderer


def legend_font_size(image_size: tuple[int, int]) -> int:
    """Legend text height in pixels for a ``(W, H)`` picture: 1/30 of its short side, at least 12."""
    return max(12, round(min(image_size) / 30))


def legend_limits(image_size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """The largest legend band :func:`overlay` adds to a ``(W, H)`` photo, ``{"right": (width, height),
    "below": (width, height)}`` (docs/cli.md, "Colours and legends")."""
    w, h = image_size
    floor = 16 * legend_font_size(image_size)
    return {"right": (max(w // 2, floor), max(h, floor)), "below": (max(w, floor), max(h // 2, floor))}


def overlay(image_rgb: Any, label_map: Any, labels: str | Sequence[str], alpha: float = 0.5,
            legend: bool = True) -> Image.Image:
    """The photo (anything :func:`lseg.io.load_image` accepts) with the colour of ``labels[i]`` blended
    over each pixel of id ``i`` in the ``HxW`` ``label_map`` (other ids left uncoloured), ``alpha`` the
    colours' opacity, and (``legend``) a white band listing swatch, share and name of the labels
    (docs/cli.md, "Colours and legends"), as a PIL RGB image."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}")
    if isinstance(image_rgb, np.ndarray) and image_rgb.ndim == 3 and image_rgb.shape[2] == 3 \
            and image_rgb.dtype == np.uint8:
        photo = image_rgb  # only read: no copy of a large photo
    else:
        photo = load_image(image_rgb, max_pixels=None)
    ids = _label_map(label_map)
    if ids.shape != photo.shape[:2]:
        raise ValueError(f"overlay: label_map is {ids.shape[0]}x{ids.shape[1]} but the image is "
                         f"{photo.shape[0]}x{photo.shape[1]} (HxW); resize the label map (nearest) first")
    labels = _label_names(labels)
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
    items = [_Item(tuple(int(c) for c in colours[i]), str(labels[i]), counts[i] / ids.size) for i in shown]
    return _with_legend(out, items, absent_left_out=k - len(shown))


#: Up to this many labels the legend lists them all; above, only those present.
_LEGEND_ALL = 256
#: A label takes at most this many lines in the legend; the rest is cut with an ellipsis.
_LEGEND_LINES = 2


@dataclass
class _Item:
    """One legend entry: a label (swatch, share, name), or the closing note (``colour`` None)."""

    colour: tuple[int, int, int] | None
    label: str
    fraction: float = 0.0

    @property
    def share(self) -> str:
        if self.colour is None:
            return ""
        percent = 100.0 * self.fraction
        return "<1%" if 0 < percent < 1 else f"{percent:.0f}%"


@dataclass
class _Layout:
    """A legend laid out at one text size: the band's size and each entry's lines and place in it."""

    side: str  # "right" or "below"
    metrics: _Metrics
    width: int
    height: int
    placed: list[tuple[_Item, list[str], int, int]]  # item, its lines, x, y in the band


class _Metrics:
    """Sizes in a legend with ``size`` px text, and the widths and wrapped lines measured so far."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.text = TextRenderer(size)
        self.pad = max(4, size // 2)
        self.gap = max(3, size // 3)
        self.line = round(1.25 * size)
        self.spacing = max(2, round(0.2 * size))
        self.width = functools.cache(self.text.width)
        self._wrap = functools.cache(self.text.wrap)
        self.share_w = self.head = 0

    def for_items(self, items: Sequence[_Item]) -> _Metrics:
        """Set the share column to the widest share of ``items``; returns self."""
        self.share_w = max((self.width(it.share) for it in items if it.colour is not None), default=0)
        self.head = self.size + self.gap + self.share_w + self.gap  # swatch, share, then the name
        return self

    def least_width(self, item: _Item, cap: int) -> int:
        """A lower bound of the item's width with names at most ``cap`` px wide (no wrapping done)."""
        return (self.head if item.colour is not None else 0) + min(self.width(item.label), cap // 2)

    def measure(self, item: _Item, cap: int) -> tuple[list[str], int, int]:
        """The item's lines with names at most ``cap`` px wide, its width and its height."""
        lines = [item.label] if self.width(item.label) <= cap else self._wrap(item.label, cap, _LEGEND_LINES)
        head = self.head if item.colour is not None else 0
        return lines, head + max(self.width(line) for line in lines), len(lines) * self.line + self.spacing


def _layout_right(m: _Metrics, items: Sequence[_Item], max_w: int, max_h: int) -> _Layout | None:
    """Columns filled top to bottom, as few as fit in ``max_h``; None if they need more than ``max_w``."""
    room = max_h - 2 * m.pad
    one = m.line + m.spacing  # an entry is at least one line high
    if room < one:
        return None
    ncols = -(-len(items) // (room // one))  # at least this many columns
    while True:
        cap = min(20 * m.size, (max_w - m.pad * (ncols + 1)) // ncols - m.head)
        if cap < 4 * m.size:
            return None
        measured = [m.measure(it, cap) for it in items]
        if any(h > room for _, _, h in measured):
            return None
        cols: list[list[int]] = [[]]
        used = 0
        for i, (_, _, h) in enumerate(measured):
            if cols[-1] and used + h > room:
                cols.append([])
                used = 0
            cols[-1].append(i)
            used += h
        if len(cols) > ncols:
            ncols += 1
            continue
        placed, x, height = [], m.pad, 0
        for col in cols:
            y = m.pad
            for i in col:
                placed.append((items[i], measured[i][0], x, y))
                y += measured[i][2]
            height = max(height, y + m.pad)
            x += max(measured[i][1] for i in col) + m.pad
        return _Layout("right", m, x, height, placed)


def _layout_below(m: _Metrics, items: Sequence[_Item], max_w: int, max_h: int) -> _Layout | None:
    """Entries side by side in rows of at most ``max_w``; None if the rows need more than ``max_h``."""
    room = max_w - 2 * m.pad
    cap = min(20 * m.size, room - m.head)
    if cap < 4 * m.size:
        return None
    rows_needed = sum(m.least_width(it, cap) + m.size for it in items) / room  # a lower bound
    if 2 * m.pad + int(rows_needed) * (m.line + m.spacing) > max_h:
        return None
    placed, x, y, row_h, width = [], 0, m.pad, 0, 0
    for it in items:
        lines, w, h = m.measure(it, cap)
        if x and x + w > room:
            x, y, row_h = 0, y + row_h, 0
            if y > max_h:
                return None
        placed.append((it, lines, m.pad + x, y))
        width = max(width, x + w)
        x += w + m.size
        row_h = max(row_h, h)
    height = y + row_h + m.pad
    return _Layout("below", m, width + 2 * m.pad, height, placed) if height <= max_h else None


def _legend_layout(size: tuple[int, int], items: list[_Item], absent_left_out: int) -> _Layout:
    """The legend for a ``(W, H)`` photo: every item at the largest text size that fits on either side
    (down to half of :func:`legend_font_size`), else as many as fit, largest share first, and a note."""
    w, h = size
    limits = legend_limits(size)
    sides = ("right", "below") if w <= 2 * h else ("below", "right")
    f = legend_font_size(size)
    smallest = max(12, f // 2)
    sizes = [f]
    while sizes[-1] > smallest:
        sizes.append(max(smallest, min(sizes[-1] - 1, round(sizes[-1] * 0.9))))
    metrics: dict[int, _Metrics] = {}

    def attempt(side: str, s: int, shown: list[_Item], left_out: int, absent: int) -> _Layout | None:
        if left_out:
            shown = [*shown, _Item(None, f"+ {left_out} labels not present" if left_out == absent
                                   else f"+ {left_out} more labels")]
        m = metrics.setdefault(s, _Metrics(s)).for_items(shown)
        return (_layout_right if side == "right" else _layout_below)(m, shown, *limits[side])

    for s in sizes:  # everything, at the largest size that fits on either side
        for side in sides:
            layout = attempt(side, s, items, absent_left_out, absent_left_out)
            if layout is not None:
                return layout
    ranked = sorted(items, key=lambda it: -it.fraction)  # stable: index order among equal shares
    best: _Layout | None = None
    for side in sides:  # as many as fit at the smallest size, largest share first
        lo, hi = 0, len(ranked) - 1
        while lo <= hi:
            n = (lo + hi) // 2
            absent = absent_left_out + sum(1 for it in ranked[n:] if it.fraction == 0)
            layout = attempt(side, smallest, ranked[:n], len(ranked) - n + absent_left_out, absent)
            if layout is not None:
                lo = n + 1
                if best is None or len(layout.placed) > len(best.placed):
                    best = layout
            else:
                hi = n - 1
    if best is None:  # not even the note fits (cannot happen within legend_limits): an empty band
        best = _Layout(sides[0], metrics.setdefault(smallest, _Metrics(smallest)).for_items([]), 0, 0, [])
    return best


def _with_legend(img: Image.Image, items: list[_Item], absent_left_out: int = 0) -> Image.Image:
    """``img`` with a legend band (swatch, share, name) on its right or below it (see :func:`overlay`)."""
    w, h = img.size
    layout = _legend_layout((w, h), items, absent_left_out)
    m = layout.metrics
    ox, oy = (w, 0) if layout.side == "right" else (0, h)  # the band's top-left corner
    canvas = Image.new("RGB", (max(w, ox + layout.width), max(h, oy + layout.height)), (255, 255, 255))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    ascent, descent = m.text.font(0).getmetrics()
    top = max(0, (m.line - ascent - descent) // 2)  # text centred in its line
    for item, lines, x, y in layout.placed:
        x, y = ox + x, oy + y
        # Absent labels in grey text, so the eye finds the present ones first.
        fill = (0, 0, 0) if item.fraction > 0 or item.colour is None else (120, 120, 120)
        if item.colour is not None:
            sy = y + (m.line - m.size) // 2
            draw.rectangle([x, sy, x + m.size - 1, sy + m.size - 1], fill=item.colour, outline=(128, 128, 128))
            # The share and the name are separate runs: a right-to-left name cannot reorder the number.
            share_x = x + m.size + m.gap + m.share_w - m.width(item.share)
            m.text.draw(draw, (share_x, y + top), item.share, fill=fill)
            x += m.head
        for i, line in enumerate(lines):
            m.text.draw(draw, (x, y + top + i * m.line), line, fill=fill)
    return canvas


def heatmaps(probs: Any, labels: str | Sequence[str], image: Any = None, *, alpha: float = 0.5,
             vmin: float = 0.0, vmax: float = 1.0, annotate: bool = False) -> dict[str, Image.Image]:
    """One viridis heatmap (:func:`colormap`) of ``KxHxW`` scores per label, ``{label: PIL RGB image}``,
    blended over ``image`` with opacity ``alpha`` if given; ``annotate`` adds a strip below each map
    with the label and a ``vmin``-``vmax`` colour bar."""
    p = _to_numpy(probs)
    if p.ndim == 4 and p.shape[0] == 1:
        p = p[0]
    if p.ndim != 3:
        raise ValueError(f"heatmaps: probs must be KxHxW, got shape {tuple(p.shape)}")
    if p.dtype.kind not in "fiub":
        raise ValueError(f"heatmaps: probs must be numeric, got dtype {p.dtype}")
    names = _label_names(labels)
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
    """``img`` with a strip below: the label's name (one line), then a viridis colour bar with its end values."""
    w, h = img.size
    size = legend_font_size((w, h))
    text = TextRenderer(size)
    pad = max(4, size // 2)
    strip_h = 3 * pad + int(2.4 * size)
    canvas = Image.new("RGB", (w, h + strip_h), (255, 255, 255))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    text.draw(draw, (pad, h + pad), text.fit(name, w - 2 * pad))  # a long name cut with '…'
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


def grid(images: Sequence[Any] | Mapping[str, Any], ncols: int = 4, *, pad: int = 4,
         background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Images (anything :func:`lseg.io.load_image` accepts; of a mapping, its values) tiled row by row in
    ``ncols`` columns, each centred in a cell as large as the largest, ``pad`` pixels apart."""
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
    shape = (pad + rows * (cell_h + pad), pad + cols * (cell_w + pad), 3)
    canvas = np.full(shape, background, dtype=np.uint8)
    for i, a in enumerate(arrays):
        r, c = divmod(i, cols)
        y = pad + r * (cell_h + pad) + (cell_h - a.shape[0]) // 2
        x = pad + c * (cell_w + pad) + (cell_w - a.shape[1]) // 2
        canvas[y : y + a.shape[0], x : x + a.shape[1]] = a
    return Image.fromarray(canvas)
