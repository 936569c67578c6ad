"""The dataset names of ``lseg train`` and ``lseg eval`` (aliases accepted), mapped to the readers of
:mod:`lseg.data`: semantic (:func:`build_dataset`) and few-shot (:func:`build_fewshot_dataset`)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Literal

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
)
from lseg.data.base import IGNORE_INDEX, JointTransform, SegmentationDataset, build_lut
from lseg.data.fewshot import FewShotDataset
from lseg.data.label_sets import voc_labels
from lseg.errors import DatasetError

__all__ = [
    "FEWSHOT_DATASETS", "SEMANTIC_DATASETS", "PascalVOC20", "build_dataset", "build_fewshot_dataset",
    "canonical_name",
]

SEMANTIC_DATASETS = (
    "ade20k", "pascal_voc", "voc20", "pascal_context59", "pascal_context459", "coco_stuff", "folder", "ade847",
)  # fmt: skip
FEWSHOT_DATASETS = ("pascal5i", "coco20i", "fss1000")
_ALIASES = {
    "ade": "ade20k", "ade150": "ade20k", "ade-150": "ade20k", "ade-847": "ade847", "voc": "pascal_voc",
    "voc21": "pascal_voc", "voc-20": "voc20", "pc59": "pascal_context59", "pc-59": "pascal_context59",
    "pc459": "pascal_context459", "pc-459": "pascal_context459", "cocostuff": "coco_stuff",
    "coco-stuff": "coco_stuff", "pascal": "pascal5i", "coco": "coco20i", "fss": "fss1000",
    "fss-1000": "fss1000",
}


class PascalVOC20(PascalVOC):
    """PASCAL VOC without the background class (the open-vocabulary "VOC-20" benchmark): stored 0 and
    255 are ignored, classes 1..20 become 0..19."""

    def __init__(self, root: str | Path, split: Literal["train", "val"] = "val", aug: bool = False,
                 transform: JointTransform | None = None,
                 label_style: Literal["clean", "reference"] = "clean") -> None:
        super().__init__(root, split, aug=aug, transform=transform, label_style=label_style)
        self.labels = voc_labels(label_style)[1:]
        self._lut = build_lut({v: v - 1 for v in range(1, 21)})


def canonical_name(name: str) -> str:
    """The canonical dataset name of ``name`` or an alias (``ade150``, ``pc59``, ``voc21``, ...)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SEMANTIC_DATASETS + FEWSHOT_DATASETS:
        known = ", ".join(SEMANTIC_DATASETS + FEWSHOT_DATASETS)
        raise DatasetError(f"unknown dataset {name!r}; known: {known}")
    return key


def build_dataset(name: str, root: str | Path | None, split: str | None = "val",
                  transform: JointTransform | None = None, label_style: str | None = None,
                  **kwargs: Any) -> SegmentationDataset:
    """A semantic segmentation reader by name (:data:`SEMANTIC_DATASETS` or an alias); ``split``
    ``None``: val (``folder``: every image); ``label_style`` ``None``: the reader's default; ``kwargs``
    go to the reader (e.g. ``aug=True`` for VOC)."""
    key = canonical_name(name)
    if root is None:
        raise DatasetError(f"dataset {key!r} needs a data root (--data-root)")
    root = Path(root).expanduser()  # a quoted '~/data' on the command line or in a YAML config
    if key in FEWSHOT_DATASETS:
        raise DatasetError(f"{key!r} is a few-shot benchmark: use the fewshot protocol")
    if label_style is not None:
        if key not in ("ade20k", "pascal_voc", "voc20"):
            raise DatasetError(f"dataset {key!r} has a single label style; do not pass label_style")
        kwargs["label_style"] = label_style
    readers: dict[str, Any] = {
        "ade20k": ADE20K, "pascal_voc": PascalVOC, "voc20": PascalVOC20, "pascal_context59": PascalContext59,
        "pascal_context459": PascalContext459, "ade847": ADE20K847, "coco_stuff": COCOStuff,
        "folder": FolderDataset,
    }
    _check_keywords(key, readers[key], kwargs, ("split", "transform"))
    if key == "folder":
        return FolderDataset(root, split=split, transform=transform, **kwargs)
    return readers[key](root, split=split or "val", transform=transform, **kwargs)


def build_fewshot_dataset(name: str, root: str | Path | None, fold: int = 0, split: str | None = None,
                          transform: JointTransform | None = None, label_style: str | None = None,
                          **kwargs: Any) -> FewShotDataset:
    """A few-shot benchmark's query episodes. ``split=None`` is the reference's test split (``val``
    lists for PASCAL-5i / COCO-20i, ``test`` categories for FSS-1000, which ignores ``fold``)."""
    key = canonical_name(name)
    if key not in FEWSHOT_DATASETS:
        raise DatasetError(f"{key!r} is not a few-shot benchmark ({', '.join(FEWSHOT_DATASETS)})")
    if root is None:
        raise DatasetError(f"dataset {key!r} needs a data root (--data-root)")
    root = Path(root).expanduser()
    style = label_style or "reference"
    reader = {"pascal5i": Pascal5i, "coco20i": COCO20i, "fss1000": FSS1000}[key]
    _check_keywords(key, reader, kwargs, ("fold", "split", "transform", "label_style"))
    if key != "fss1000":
        return reader(root, fold, split=split or "val", transform=transform, label_style=style, **kwargs)  # type: ignore[arg-type]
    return FSS1000(root, split=split or "test", transform=transform, label_style=style, **kwargs)  # type: ignore[arg-type]


def _check_keywords(key: str, reader: Any, kwargs: dict[str, Any], own: tuple[str, ...]) -> None:
    """:class:`DatasetError` naming the accepted keywords if ``kwargs`` holds one that ``reader`` does not
    take; ``own``: the arguments the registry passes itself, not listed as accepted."""
    accepted = [name for name in inspect.signature(reader).parameters if name not in ("root", *own)]
    unknown = [name for name in kwargs if name not in accepted]
    if unknown:
        raise DatasetError(f"dataset {key!r} ({reader.__name__}) takes no keyword "
                           f"{', '.join(map(repr, unknown))}; accepted: {', '.join(accepted) or 'none'}")


def ignore_index_of(dataset: Any) -> int:
    """The dataset's ignore marker (255 for a dataset without one)."""
    return int(getattr(dataset, "ignore_index", IGNORE_INDEX))
