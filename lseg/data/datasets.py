"""Readers for the semantic segmentation datasets in their standard layouts (``docs/datasets.md``).
Every reader takes an optional joint ``(image, mask)`` ``transform``; a missing folder or file raises
:class:`lseg.errors.DatasetError` naming the path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lseg.data.base import (
    IGNORE_INDEX,
    IMAGE_EXTENSIONS,
    JointTransform,
    SampleRecord,
    SegmentationDataset,
    build_lut,
    descend,
    pair_by_stem,
    read_split_file,
    require,
)
from lseg.data.label_sets import (
    ade20k_847_labels,
    ade20k_labels,
    coco_stuff_labels,
    load_label_file,
    pascal_context_labels,
    voc_labels,
)
from lseg.errors import DatasetError

__all__ = [
    "ADE20K", "ADE20K847", "COCOSTUFF_RAW_TO_TRAIN_ID", "COCOStuff", "FolderDataset", "PascalContext59",
    "PascalContext459", "PascalVOC",
]

Split = Literal["train", "val"]


def _check_split(split: str, allowed: Sequence[str] = ("train", "val")) -> None:
    if split not in allowed:
        raise DatasetError(f"unknown split {split!r}; expected one of {tuple(allowed)}")


class ADE20K(SegmentationDataset):
    """ADE20K / SceneParse150 (``root``: ``ADEChallengeData2016`` or its parent), 150 classes; stored 0
    is ignored, ``v`` is class ``v - 1``. ``label_style``: ``"full"`` (``"coffee table"``) or
    ``"reference"`` (lang-seg's truncated ``"coffee"``)."""

    def __init__(self, root: str | Path, split: Split = "train", transform: JointTransform | None = None,
                 label_style: Literal["full", "reference"] = "full") -> None:
        _check_split(split)
        root = descend(Path(root), "ADEChallengeData2016")
        sub = {"train": "training", "val": "validation"}[split]
        image_dir = require(root / "images" / sub, "ADE20K images")
        mask_dir = require(root / "annotations" / sub, "ADE20K annotations")
        stems = sorted(p.stem for p in image_dir.glob("*.jpg"))
        records = pair_by_stem(image_dir, mask_dir, stems, (".jpg",), ".png")
        lut = build_lut({v: v - 1 for v in range(1, 151)})
        super().__init__(records, ade20k_labels(label_style), lut, transform)


class PascalVOC(SegmentationDataset):
    """PASCAL VOC 2012 (``root``: ``VOC2012``, ``VOCdevkit`` or its parent), 21 classes (0 = background),
    255 ignored. ``aug``: SBD masks (``SegmentationClassAug``) and the train_aug ids.
    ``label_style``: ``"clean"`` (``"dining table"``) or ``"reference"`` (``"diningtable"``)."""

    def __init__(self, root: str | Path, split: Split = "train", aug: bool = False,
                 transform: JointTransform | None = None,
                 label_style: Literal["clean", "reference"] = "clean") -> None:
        _check_split(split)
        root = descend(descend(Path(root), "VOCdevkit"), "VOC2012")
        image_dir = require(root / "JPEGImages", "PASCAL VOC images")
        sets = root / "ImageSets" / "Segmentation"
        if aug:
            mask_dir = require(root / "SegmentationClassAug", "PASCAL VOC SBD-augmented masks")
            stems = self._aug_ids(sets, mask_dir) if split == "train" else read_split_file(sets / "val.txt")
        else:
            mask_dir = require(root / "SegmentationClass", "PASCAL VOC masks")
            stems = read_split_file(sets / f"{split}.txt")
        records = pair_by_stem(image_dir, mask_dir, stems, (".jpg",), ".png")
        lut = build_lut({v: v for v in range(21)})
        super().__init__(records, voc_labels(label_style), lut, transform)

    @staticmethod
    def _aug_ids(sets: Path, mask_dir: Path) -> list[str]:
        lists = (sets / "train_aug.txt", sets / "trainaug.txt", sets.parent / "SegmentationAug/train_aug.txt")
        for lst in lists:
            if lst.is_file():
                return read_split_file(lst)
        val = set(read_split_file(sets / "val.txt")) if (sets / "val.txt").is_file() else set()
        return sorted(p.stem for p in mask_dir.glob("*.png") if p.stem not in val)


class PascalContext59(SegmentationDataset):
    """PASCAL-Context, 59 classes, background ignored (``root``: ``VOC2010``, ``VOCdevkit`` or its parent),
    in the mmsegmentation layout (stored ``v`` -> ``v - 1``) or the detectron2 one (stored = class)."""

    def __init__(self, root: str | Path, split: Split = "val",
                 transform: JointTransform | None = None) -> None:
        _check_split(split)
        root = descend(descend(Path(root), "VOCdevkit"), "VOC2010")
        image_dir = require(root / "JPEGImages", "PASCAL-Context images")
        mmseg_dir = root / "SegmentationClassContext"
        d2_dir = root / "annotations_detectron2" / f"pc59_{split}"
        if mmseg_dir.is_dir():
            stems = read_split_file(root / "ImageSets" / "SegmentationContext" / f"{split}.txt")
            records = pair_by_stem(image_dir, mmseg_dir, stems, (".jpg",), ".png")
            lut = build_lut({v: v - 1 for v in range(1, 60)})
        elif d2_dir.is_dir():
            records = pair_by_stem(image_dir, d2_dir, None, (".jpg",), ".png")
            lut = build_lut({v: v for v in range(59)})
        else:
            raise DatasetError(
                f"PASCAL-Context-59 masks not found: expected {mmseg_dir} (mmseg layout) or {d2_dir} "
                "(detectron2 layout)"
            )
        super().__init__(records, pascal_context_labels(59), lut, transform)


class _Uint16Dataset(SegmentationDataset):
    """uint16 masks storing class ids; 255 is a class, so the **ignore index is 65535** (pass
    ``dataset.ignore_index`` to the loss, the metrics and the transforms). ``labels_file``: a user
    label file replacing the shipped names."""

    ignore_index = 65535
    name = ""  #: the benchmark's name, for messages

    def __init__(self, records: list[SampleRecord], shipped: list[str], labels_file: str | Path | None,
                 transform: JointTransform | None) -> None:
        labels = shipped if labels_file is None else load_label_file(labels_file)
        if len(labels) != len(shipped):
            raise DatasetError(f"{self.name} needs {len(shipped)} labels, {labels_file} has {len(labels)}")
        lut = build_lut({v: v for v in range(len(shipped))}, size=65536, default=self.ignore_index)
        super().__init__(records, labels, lut, transform)


class PascalContext459(_Uint16Dataset):
    """PASCAL-Context, 459 classes, val only (detectron2 ``annotations_detectron2/pc459_val``, ``.tif``
    or ``.png``): stored ``v`` is class ``v``; ignore 65535."""

    name = "PASCAL-Context-459"

    def __init__(self, root: str | Path, split: Literal["val"] = "val",
                 transform: JointTransform | None = None, labels_file: str | Path | None = None) -> None:
        _check_split(split, ("val",))
        root = descend(descend(Path(root), "VOCdevkit"), "VOC2010")
        image_dir = require(root / "JPEGImages", "PASCAL-Context images")
        mask_dir = require(root / "annotations_detectron2" / "pc459_val", f"{self.name} masks")
        suffix = ".tif" if any(mask_dir.glob("*.tif")) else ".png"
        records = pair_by_stem(image_dir, mask_dir, None, (".jpg",), suffix)
        super().__init__(records, pascal_context_labels(459), labels_file, transform)


class ADE20K847(_Uint16Dataset):
    """ADE20K-Full (ADE-847, detectron2 layout; ``root``: ``ADE20K_2021_17_01`` or its parent), 847
    classes: stored ``v`` is class ``v`` of :func:`lseg.data.ade20k_847_labels`; ignore 65535."""

    name = "ADE-847"

    def __init__(self, root: str | Path, split: Split = "val", transform: JointTransform | None = None,
                 labels_file: str | Path | None = None) -> None:
        _check_split(split)
        root = descend(Path(root), "ADE20K_2021_17_01")
        sub = "training" if split == "train" else "validation"
        image_dir = require(root / "images_detectron2" / sub, f"{self.name} images")
        mask_dir = require(root / "annotations_detectron2" / sub, f"{self.name} masks")
        records = pair_by_stem(image_dir, mask_dir, None, (".jpg",), ".tif")
        super().__init__(records, ade20k_847_labels(), labels_file, transform)


# mmsegmentation coco_stuff164k.py `clsID_to_trID`: stuffthingmaps store COCO category id - 1 (0..181,
# 11 ids unused); train ids renumber the 171 used ones 0..170.
_COCOSTUFF_UNUSED = frozenset({11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90})
COCOSTUFF_RAW_TO_TRAIN_ID: dict[int, int] = {
    raw: train for train, raw in enumerate(v for v in range(182) if v not in _COCOSTUFF_UNUSED)
}


class COCOStuff(SegmentationDataset):
    """COCO-Stuff-164k, 171 classes, 255 ignored. ``mask_format``: ``"train_ids"``
    (``*_labelTrainIds.png``), ``"raw"`` (stuffthingmaps, through :data:`COCOSTUFF_RAW_TO_TRAIN_ID`)
    or ``"auto"`` (train ids if any exist)."""

    def __init__(self, root: str | Path, split: Split = "val",
                 mask_format: Literal["auto", "train_ids", "raw"] = "auto",
                 transform: JointTransform | None = None) -> None:
        _check_split(split)
        root = Path(root)
        sub = f"{split}2017"
        image_dir = require(root / "images" / sub, "COCO-Stuff images")
        ann = root / "annotations" / sub
        if not ann.is_dir() and (root / "stuffthingmaps_trainval2017" / sub).is_dir():
            ann = root / "stuffthingmaps_trainval2017" / sub
        require(ann, "COCO-Stuff annotations")
        if mask_format == "auto":
            mask_format = "train_ids" if any(ann.glob("*_labelTrainIds.png")) else "raw"
        if mask_format == "train_ids":
            records = pair_by_stem(image_dir, ann, None, (".jpg",), "_labelTrainIds.png")
            lut = build_lut({v: v for v in range(171)})
        elif mask_format == "raw":
            # in the mmseg layout raw and converted maps share the folder
            stems = sorted(p.stem for p in ann.glob("*.png") if not p.stem.endswith("_labelTrainIds"))
            records = pair_by_stem(image_dir, ann, stems, (".jpg",), ".png")
            lut = build_lut(COCOSTUFF_RAW_TO_TRAIN_ID)
        else:
            raise DatasetError(f"unknown COCO-Stuff mask_format {mask_format!r}: use auto, train_ids or raw")
        super().__init__(records, coco_stuff_labels(), lut, transform)


class FolderDataset(SegmentationDataset):
    """A user's own dataset: ``root/labels.txt`` (line i = class i), ``images/*``, ``masks/<stem>.png``
    (0..C-1, 255 = ignore); ``split``: ``splits/<split>.txt``, or ``None`` for every image with a mask.
    A mask value neither a class nor 255 raises :class:`DatasetError` when loaded."""

    def __init__(self, root: str | Path, split: str | None = None,
                 transform: JointTransform | None = None) -> None:
        root = require(Path(root), "dataset folder")
        labels = load_label_file(root / "labels.txt")
        if len(labels) > IGNORE_INDEX:
            raise DatasetError(f"{root / 'labels.txt'} has {len(labels)} classes; at most 255 fit beside "
                               "ignore 255")
        image_dir = require(root / "images", "images")
        mask_dir = require(root / "masks", "masks")
        images: dict[str, list[Path]] = {}  # stem -> its image files
        for p in sorted(image_dir.iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                images.setdefault(p.stem, []).append(p)
        if split is not None:
            stems = read_split_file(root / "splits" / f"{split}.txt")
        else:
            stems = sorted(stem for stem in images if (mask_dir / f"{stem}.png").is_file())
            if not stems:  # else the base class's "no samples found", naming no folder
                raise DatasetError(f"no image in {image_dir} has a mask {mask_dir / '<stem>.png'} (lower-case .png)")
        twice = next((images[stem] for stem in stems if len(images.get(stem, ())) > 1), None)
        if twice is not None:  # which one the mask labels is ambiguous (and each would be counted)
            raise DatasetError(f"images {' and '.join(str(p) for p in twice)} share the mask "
                               f"{mask_dir / (twice[0].stem + '.png')}; keep one")
        exts = tuple(dict.fromkeys(p.suffix for found in images.values() for p in found)) or (".png",)  # as listed
        records: list[SampleRecord] = pair_by_stem(image_dir, mask_dir, stems, exts, ".png")
        # values >= C other than 255 are labelling errors, not "ignore": map_mask raises on them
        lut = build_lut({v: v for v in range(len(labels))}, default=-1)
        lut[IGNORE_INDEX] = IGNORE_INDEX
        super().__init__(records, labels, lut, transform)

    def map_mask(self, arr: np.ndarray, path: Path) -> torch.Tensor:
        bad = [int(v) for v in np.unique(arr) if v >= len(self._lut) or self._lut[v] < 0]
        if bad:
            raise DatasetError(
                f"mask {path} holds value(s) {bad}, but labels.txt defines {self.num_classes} classes "
                f"(valid: 0..{self.num_classes - 1} and {IGNORE_INDEX} = ignore)"
            )
        return super().map_mask(arr, path)
