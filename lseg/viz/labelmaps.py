"""Label maps as pictures and files: colouring (:func:`colorize`, :func:`colorize_rgb`), PNGs that name
their labels (:func:`save_label_map`, :func:`read_label_names`), score files (:func:`save_scores`) and
heatmap names (:func:`heatmap_path`), the same for every command and :meth:`lseg.SegmentationResult.save`."""

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
    """Write a label map as PNG (atomically), pixel value ``i`` being ``labels[i]``: 8-bit palette
    (:func:`palette`; up to 256 labels) or 16-bit grey (up to 65536), the names in an ``lseg:labels``
    iTXt chunk (a JSON list, :func:`read_label_names`)."""
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
    """Write per-label probabilities (atomically) as ``.npz``: ``probs`` float16 (K, H, W), ``labels``
    (K,) strings. Returns the path."""
    from lseg.io import atomic_write

    half = np.asarray(probs, dtype=np.float16)
    names = np.array([str(lb) for lb in labels])

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez_compressed(f, probs=half, labels=names)

    return atomic_write(path, write)


def heatmap_path(base: str | os.PathLike[str], index: int, label: str, count: int = 100) -> Path:
    """Label ``index``'s heatmap file (of ``count`` labels) next to ``base`` (``out/<stem>``):
    ``<stem>_heat_<index>_<label fragment>.png``, the index zero-padded (at least 2 digits, as many as
    ``count - 1`` has) so the files sort in label order."""
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
    """``HxW`` integer class ids coloured with :func:`palette` (``n_colors`` colours, default
    ``max(label_map) + 1``) as ``HxWx3 uint8`` RGB, any number of classes; ids outside the palette black."""
    ids = _label_map(label_map)
    n = int(ids.max()) + 1 if n_colors is None else int(n_colors)
    colours = palette(max(n, 1))
    valid = (ids >= 0) & (ids < len(colours))
    out = colours[np.where(valid, ids, 0)]
    out[~valid] = 0
    return np.ascontiguousarray(out)


def colorize(label_map: Any) -> Image.Image:
    """``HxW`` integer class ids in ``[0, 255]`` as a 'P' mode PIL image with the 256 colours of
    :func:`palette`: the pixel values stay the class ids.

    Raises:
        ValueError: Not ``HxW`` integers, or ids outside ``[0, 255]`` (:func:`colorize_rgb` takes more).
    """
    ids = _label_map(label_map)
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"colorize: class ids must be in [0, 255] for a palette image, got [{lo}, {hi}]; "
                         "use colorize_rgb() for more than 256 classes")
    img = Image.fromarray(ids.astype(np.uint8))  # mode L
    img.putpalette(palette(256).tobytes())  # L -> P, pixel values unchanged
    return img
