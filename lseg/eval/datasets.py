"""Dataset names used by ``lseg train`` and ``lseg eval``, mapped to the readers of :mod:`lseg.data`.

Semantic segmentation (``build_dataset``):

============================  ========================================================  =========
name (aliases)                reader                                                    classes
============================  ========================================================  =========
``ade20k`` (``ade150``)       :class:`lseg.data.ADE20K`                                  150
``pascal_voc`` (``voc21``)    :class:`lseg.data.PascalVOC` (background = class 0)         21
``voc20``                     PASCAL VOC without background (background ignored)          20
``pascal_context59`` (pc59)   :class:`lseg.data.PascalContext59`                          59
``pascal_context459`` (pc459) :class:`lseg.data.PascalContext459` (ignore 65535)          459
``coco_stuff``                :class:`lseg.data.COCOStuff`                                171
``folder``                    :class:`lseg.data.FolderDataset` (your own data)            any
``ade847`` (``ade-847``)      :class:`lseg.data.ADE20K847` (ignore 65535)                 847
============================  ========================================================  =========

Few-shot (zero-shot protocol) benchmarks (``build_fewshot_dataset``): ``pascal5i``, ``coco20i``,
``fss1000``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lseg.data import (
    ADE20K,
    ADE20K847,
    FSS1000,
    COCO20i,
    COCOStuff,
    FolderDataset,
    Pascal5i,
    PascalContext59,
    PascalContext459,
    PascalVOC,
    clean_fewshot_name,
)
from lseg.data.base import IGNORE_INDEX, JointTransform, SegmentationDataset, build_lut
from lseg.data.fewshot import FewShotDataset
from lseg.data.label_sets import voc_labels
from lseg.errors import DatasetError

__all__ = [
    "FEWSHOT_DATASETS",
    "SEMANTIC_DATASETS",
    "PascalVOC20",
    "build_dataset",
    "build_fewshot_dataset",
    "canonical_name",
    "open_vocab_labels",
]

SEMANTIC_DATASETS = (
    "ade20k", "pascal_voc", "voc20", "pascal_context59", "pascal_context459", "coco_stuff", "folder", "ade847",
)  # fmt: skip
FEWSHOT_DATASETS = ("pascal5i", "coco20i", "fss1000")
_ALIASES = {
    "ade": "ade20k",
    "ade150": "ade20k",
    "ade-150": "ade20k",
    "ade-847": "ade847",
    "voc": "pascal_voc",
    "voc21": "pascal_voc",
    "voc-20": "voc20",
    "pc59": "pascal_context59",
    "pc-59": "pascal_context59",
    "pc459": "pascal_context459",
    "pc-459": "pascal_context459",
    "cocostuff": "coco_stuff",
    "coco-stuff": "coco_stuff",
    "pascal": "pascal5i",
    "coco": "coco20i",
    "fss": "fss1000",
    "fss-1000": "fss1000",
}


class PascalVOC20(PascalVOC):
    """PASCAL VOC without the background class: the open-vocabulary "VOC-20" benchmark.

    Same files as :class:`lseg.data.PascalVOC`; stored ``0`` (background) and ``255`` are ignored and
    classes ``1..20`` become ``0..19``.
    """

    def __init__(self, root: str | Path, split: str = "val", **kwargs: Any) -> None:
        super().__init__(root, split, **kwargs)  # type: ignore[arg-type]
        style = kwargs.get("label_style", "clean")
        self.labels = voc_labels(style)[1:]
        self._lut = build_lut({v: v - 1 for v in range(1, 21)})


def canonical_name(name: str) -> str:
    """Resolve an alias (``ade150``, ``pc59``, ``voc21``...) to the canonical dataset name."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SEMANTIC_DATASETS + FEWSHOT_DATASETS:
        known = ", ".join(SEMANTIC_DATASETS + FEWSHOT_DATASETS)
        raise DatasetError(f"unknown dataset {name!r}; known: {known}")
    return key


def build_dataset(
    name: str,
    root: str | Path | None,
    split: str | None = "val",
    transform: JointTransform | None = None,
    label_style: str | None = None,
    **kwargs: Any,
) -> SegmentationDataset:
    """A semantic segmentation reader by name.

    Args:
        name: see the module table (aliases accepted).
        root: dataset folder.
        split: ``train``/``val`` (``folder``: a split list name, or ``None`` for every image).
        transform: joint ``(image, mask)`` transform.
        label_style: ADE20K ``full``/``reference``, VOC ``clean``/``reference``; ``None`` = default.
        **kwargs: passed to the reader (e.g. ``aug=True`` for VOC, ``mask_format`` for COCO-Stuff).
    """
    key = canonical_name(name)
    if root is None:
        raise DatasetError(f"dataset {key!r} needs a data root (--data-root)")
    if label_style is not None:
        kwargs["label_style"] = label_style
    if key in FEWSHOT_DATASETS:
        raise DatasetError(f"{key!r} is a few-shot benchmark: use the fewshot protocol")
    if key == "folder":
        _no_label_style(key, kwargs)
        return FolderDataset(root, split=split, transform=transform, **kwargs)
    split = split or "val"
    if key == "ade20k":
        return ADE20K(root, split=split, transform=transform, **kwargs)  # type: ignore[arg-type]
    if key == "pascal_voc":
        return PascalVOC(root, split=split, transform=transform, **kwargs)  # type: ignore[arg-type]
    if key == "voc20":
        return PascalVOC20(root, split=split, transform=transform, **kwargs)
    if key == "pascal_context59":
        _no_label_style(key, kwargs)
        return PascalContext59(root, split=split, transform=transform, **kwargs)  # type: ignore[arg-type]
    if key == "pascal_context459":
        _no_label_style(key, kwargs)
        return PascalContext459(root, split=split, transform=transform, **kwargs)  # type: ignore[arg-type]
    if key == "ade847":
        _no_label_style(key, kwargs)
        return ADE20K847(root, split=split, transform=transform, **kwargs)  # type: ignore[arg-type]
    _no_label_style(key, kwargs)
    return COCOStuff(root, split=split, transform=transform, **kwargs)  # type: ignore[arg-type]


def _no_label_style(key: str, kwargs: dict[str, Any]) -> None:
    if kwargs.pop("label_style", None) is not None:
        raise DatasetError(f"dataset {key!r} has a single label style; do not pass label_style")


def build_fewshot_dataset(
    name: str,
    root: str | Path | None,
    fold: int = 0,
    split: str | None = None,
    transform: JointTransform | None = None,
    label_style: str | None = None,
    **kwargs: Any,
) -> FewShotDataset:
    """A few-shot benchmark's query episodes (``pascal5i``, ``coco20i``, ``fss1000``).

    ``split=None`` is the reference's test split: ``val`` lists for PASCAL-5i / COCO-20i (the
    reference maps ``test`` to them) and the ``test`` categories for FSS-1000. ``fold`` is ignored
    for FSS-1000.
    """
    key = canonical_name(name)
    if key not in FEWSHOT_DATASETS:
        raise DatasetError(f"{key!r} is not a few-shot benchmark ({', '.join(FEWSHOT_DATASETS)})")
    if root is None:
        raise DatasetError(f"dataset {key!r} needs a data root (--data-root)")
    style = label_style or "reference"
    if key == "pascal5i":
        return Pascal5i(root, fold, split=split or "val", transform=transform, label_style=style, **kwargs)  # type: ignore[arg-type]
    if key == "coco20i":
        return COCO20i(root, fold, split=split or "val", transform=transform, label_style=style, **kwargs)  # type: ignore[arg-type]
    return FSS1000(root, split=split or "test", transform=transform, label_style=style, **kwargs)  # type: ignore[arg-type]


def open_vocab_labels(labels: list[str]) -> list[str]:
    """Readable class names for open-vocabulary evaluation: glued VOC/PASCAL-Context names are split
    (``pottedplant`` -> ``potted plant``) and underscores become spaces; other names are kept."""
    return [clean_fewshot_name(lb) for lb in labels]


def ignore_index_of(dataset: Any) -> int:
    """The dataset's ignore marker (255, or 65535 for PASCAL-Context-459 and ADE-847)."""
    return int(getattr(dataset, "ignore_index", IGNORE_INDEX))
