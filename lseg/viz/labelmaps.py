"""Label maps as pictures: palette colouring (:func:`colorize`, :func:`colorize_rgb`), PNG files that
name their labels (:func:`save_label_map`, :func:`read_label_names`), and the other files of a
segmentation, written the same way by ``lseg segment``, ``lseg features query`` and
:meth:`lseg.SegmentationResult.save`: score files (:func:`save_scores`) and heatmap names
(:func:`heatmap_path`)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lseg.viz._arrays import _label_map
from lseg.viz.colors import MAX_COLORS, palette


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


def save_scores(path: str | os.PathLike[str], probs: Any, labels: Sequence[str]) -> Path:
    """Write per-label probabilities (atomically) as ``.npz``: ``probs`` float16 (K, H, W) and
    ``labels`` (K,) strings. Returns the path."""
    from lseg.io import atomic_write

    half = np.asarray(probs, dtype=np.float16)
    names = np.array([str(lb) for lb in labels])

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez_compressed(f, probs=half, labels=names)

    return atomic_write(path, write)


def heatmap_path(base: str | os.PathLike[str], index: int, label: str, count: int = 100) -> Path:
    """The file of label ``index``'s heatmap (of ``count`` labels) next to ``base`` (``out/<stem>``):
    ``<stem>_heat_<index>_<label as a file-name fragment>.png``, the index padded to at least 2 digits
    and to the digits of ``count - 1``, so the files sort in label order."""
    from lseg.io import file_fragment

    base = Path(base)
    width = max(2, len(str(max(count, 1) - 1)))
    return base.with_name(f"{base.name}_heat_{index:0{width}d}_{file_fragment(label)}.png")


def read_label_names(path: str | os.PathLike[str]) -> list[str]:
    """The label names a PNG written by :func:`save_label_map` stores (index ``i`` is pixel value ``i``)."""
    with Image.open(path) as img:
        text = getattr(img, "text", {}).get("lseg:labels")
    if text is None:
        raise ValueError(f"{path} holds no lseg:labels text chunk (not written by lseg?)")
    return list(json.loads(text))


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
