"""Label map files (PNGs that name their labels), score files and heatmap names, the same for every command
and :meth:`lseg.SegmentationResult.save`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lseg.viz._arrays import _label_map, _label_names
from lseg.viz.colors import MAX_COLORS, palette


def save_label_map(path: str | os.PathLike[str], label_map: Any, labels: str | Sequence[str]) -> Path:
    """Write a label map as PNG (atomically), pixel value ``i`` being ``labels[i]``: 8-bit palette
    (:func:`palette`; up to 256 labels) or 16-bit grey, the names in an ``lseg:labels`` iTXt chunk."""
    from PIL.PngImagePlugin import PngInfo

    from lseg.io import atomic_write

    names = _label_names(labels)
    ids = _label_map(label_map)
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


def save_scores(path: str | os.PathLike[str], probs: Any, labels: str | Sequence[str]) -> Path:
    """Write per-label probabilities (atomically) as ``.npz``: ``probs`` float16 (K, H, W), ``labels``."""
    from lseg.io import atomic_write

    half = np.asarray(probs, dtype=np.float16)
    names = np.array(_label_names(labels))

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez_compressed(f, probs=half, labels=names)

    return atomic_write(path, write)


def heatmap_path(base: str | os.PathLike[str], index: int, label: str, count: int = 100) -> Path:
    """Label ``index``'s heatmap file (of ``count`` labels) next to ``base`` (``out/<stem>``):
    ``<stem>_heat_<index>_<label fragment>.png``, the index zero-padded (at least 2 digits)."""
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
