"""Episodes of the few-shot benchmarks (PASCAL-5i, COCO-20i, FSS-1000) for LSeg's zero-shot protocol:
a query image and the **name** of one class in it, scored as a binary mask (``docs/datasets.md``). Items:
``{"image", "mask": 1 = the class, 0 = rest, 255 = boundary (PASCAL only), "class_id", "class_name",
"path"}`` at the original resolution; ``num_support=S`` adds ``support_images`` / ``support_masks`` /
``support_paths`` (zero-shot training), drawn from torch's global RNG as HSNet does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from lseg.data.base import (
    IGNORE_INDEX,
    JointTransform,
    descend,
    load_pair,
    read_mask_array,
    require,
)
from lseg.data.coco20i_splits import convert_coco20i_splits, derive_coco20i_lists, read_coco20i_json
from lseg.data.label_sets import fewshot_labels, fss_split_categories, read_package_file
from lseg.errors import DatasetError

__all__ = [
    "FSS1000", "COCO20i", "Episode", "FewShotDataset", "Pascal5i", "coco20i_fold_classes",
    "convert_coco20i_splits", "pascal5i_fold_classes",
]

LabelStyle = Literal["reference", "clean"]


@dataclass(frozen=True)
class Episode:
    """One query: image file, mask file and the benchmark class id (0-based)."""

    image: Path
    mask: Path
    class_id: int


class FewShotDataset(Dataset):
    """Base class: the ``episodes`` in evaluation order, ``labels`` (the class string of every benchmark
    class id, not just the fold's), the ``class_ids`` this split scores; :meth:`binary_mask` says how
    a benchmark binarises a mask. Supports are drawn from ``pool`` (default: the episodes)."""

    ignore_index: int = IGNORE_INDEX

    def __init__(self, episodes: Sequence[Episode], labels: Sequence[str], class_ids: Sequence[int],
                 transform: JointTransform | None = None, num_support: int = 0,
                 pool: Sequence[Episode] | None = None) -> None:
        if len(episodes) == 0:
            raise DatasetError(f"{type(self).__name__}: no episodes")
        if num_support < 0:
            raise DatasetError(f"num_support must be >= 0, got {num_support}")
        self.episodes = list(episodes)
        self.labels = list(labels)
        self.class_ids = list(class_ids)
        self.transform = transform
        self.num_support = num_support
        self._pools: dict[int, list[Episode]] = {}  # class id -> its distinct (image, class) pairs
        for ep in dict.fromkeys(self.episodes if pool is None else pool):
            self._pools.setdefault(ep.class_id, []).append(ep)

    def __len__(self) -> int:
        return len(self.episodes)

    def binary_mask(self, path: Path, class_id: int) -> torch.Tensor:
        """The int64 ``(H, W)`` mask of ``path``: 1 = ``class_id``, 0 = rest (255 = ignored, if any)."""
        raise NotImplementedError

    def query_episode(self, index: int) -> Episode:
        """The episode item ``index`` shows (COCO-20i ``trn`` draws it, as the reference)."""
        return self.episodes[index]

    def _load(self, ep: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        return load_pair(ep.image, ep.mask, self.binary_mask(ep.mask, ep.class_id), self.transform)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ep = self.query_episode(index)
        image, mask = self._load(ep)
        item: dict[str, Any] = {"image": image, "mask": mask, "class_id": ep.class_id,
                                "class_name": self.labels[ep.class_id], "path": str(ep.image)}
        if self.num_support:
            pool = [e for e in self._pools.get(ep.class_id, []) if e.image != ep.image]
            if len(pool) < self.num_support:
                raise DatasetError(
                    f"class {ep.class_id} ({self.labels[ep.class_id]!r}) has {len(pool)} image(s) besides "
                    f"{ep.image}; {self.num_support} support(s) needed"
                )
            picks = [pool[int(i)] for i in torch.randperm(len(pool))[: self.num_support]]
            images, masks = zip(*(self._load(e) for e in picks))
            item.update(support_images=list(images), support_masks=list(masks))
            item["support_paths"] = [str(e.image) for e in picks]
        return item


def pascal5i_fold_classes(fold: int) -> list[int]:
    """0-based class ids tested in PASCAL-5i fold ``fold``: ``5*fold .. 5*fold+4``."""
    _check_fold(fold)
    return [5 * fold + i for i in range(5)]


def coco20i_fold_classes(fold: int) -> list[int]:
    """0-based class ids tested in COCO-20i fold ``fold``: ``{4k + fold : k = 0..19}``."""
    _check_fold(fold)
    return [4 * k + fold for k in range(20)]


def _check_fold(fold: int) -> None:
    if fold not in (0, 1, 2, 3):
        raise DatasetError(f"fold must be 0, 1, 2 or 3, not {fold!r}")


def _val_or_trn(split: str, name: str) -> str:
    """``split`` with ``test`` read as ``val`` (as the reference does)."""
    split = "val" if split in ("val", "test") else split
    if split not in ("val", "trn"):
        raise DatasetError(f"unknown {name} split {split!r}; expected 'val', 'test' or 'trn'")
    return split


def _require_files(episodes: Sequence[Episode], name: str) -> None:
    for ep in dict.fromkeys(episodes):
        require(ep.image, f"{name} image", "file")
        require(ep.mask, f"{name} mask", "file")


class Pascal5i(FewShotDataset):
    """PASCAL-5i query episodes (HSNet splits, 20 classes, 4 folds; ``root``: ``VOC2012`` or a folder
    holding it). Mask: 1 where the stored value is ``class + 1``, 255 where it is 255.

    ``split``: ``"val"`` (alias ``"test"``) or ``"trn"`` (fold ``i`` reads the other folds' lists from
    ``splits_dir/trn``). ``num_episodes``: ``"reference"`` (1000 for val, cycling the list; one pass
    for trn), a count, or ``None`` for one pass."""

    def __init__(self, root: str | Path, fold: int, split: Literal["val", "test", "trn"] = "val",
                 splits_dir: str | Path | None = None,
                 num_episodes: int | Literal["reference"] | None = "reference",
                 transform: JointTransform | None = None, label_style: LabelStyle = "reference",
                 num_support: int = 0) -> None:
        class_ids = pascal5i_fold_classes(fold)
        split = _val_or_trn(split, "PASCAL-5i")
        root = descend(Path(root), "VOC2012", "VOCdevkit/VOC2012")
        image_dir = require(root / "JPEGImages", "PASCAL-5i images")
        mask_dir = require(root / "SegmentationClassAug", "PASCAL-5i SBD-augmented masks")

        folds = [fold] if split == "val" else [f for f in range(4) if f != fold]
        metadata = [pair for f in folds for pair in self._read_fold(split, f, splits_dir)]
        if num_episodes == "reference":
            num_episodes = 1000 if split == "val" else None
        n = len(metadata) if num_episodes is None else int(num_episodes)
        episodes = [
            Episode(image_dir / f"{name}.jpg", mask_dir / f"{name}.png", cls)
            for name, cls in (metadata[k % len(metadata)] for k in range(n))
        ]
        _require_files(episodes, "PASCAL-5i")
        if split == "trn":
            class_ids = [c for c in range(20) if c not in class_ids]
        super().__init__(episodes, fewshot_labels("pascal", label_style), class_ids, transform, num_support)

    @staticmethod
    def _read_fold(split: str, fold: int, splits_dir: str | Path | None) -> list[tuple[str, int]]:
        path = None if splits_dir is None else Path(splits_dir) / split / f"fold{fold}.txt"
        if path is not None and (path.is_file() or split == "trn"):
            text = require(path, "PASCAL-5i split list", "file").read_text()
        elif split == "val":
            text = read_package_file(f"pascal5i_val_fold{fold}.txt")
        else:
            raise DatasetError(
                "PASCAL-5i training lists are not shipped; pass splits_dir=<folder with trn/fold{0..3}.txt> "
                "(HSNet's lists: lang-seg fewshot_data/data/splits/pascal)"
            )
        pairs = [line.strip().split("__") for line in text.splitlines() if line.strip()]
        return [(name, int(cls) - 1) for name, cls in pairs]  # files are 1-based

    def binary_mask(self, path: Path, class_id: int) -> torch.Tensor:
        arr = read_mask_array(path)
        return torch.from_numpy(np.where(arr == 255, IGNORE_INDEX, arr == class_id + 1).astype(np.int64))


class COCO20i(FewShotDataset):
    """COCO-20i query episodes (HSNet, 80 classes, 4 interleaved folds; ``root``: ``COCO2014`` or a folder
    holding it; masks store ``class + 1``).

    Per-class image lists: ``splits_dir/{trn,val}/fold{i}.json`` (:func:`convert_coco20i_splits`), else
    derived from the masks. ``val`` episodes are drawn once from ``numpy.random.RandomState(seed)`` with
    the reference's two ``choice`` calls; ``trn`` items are drawn afresh per ``__getitem__`` from torch's
    RNG. ``num_episodes`` ``"reference"``: 1000 for val, the (class, image) pair count for trn."""

    def __init__(self, root: str | Path, fold: int, split: Literal["val", "test", "trn"] = "val",
                 splits_dir: str | Path | None = None, num_episodes: int | Literal["reference"] = "reference",
                 seed: int = 0, transform: JointTransform | None = None,
                 label_style: LabelStyle = "reference", num_support: int = 0) -> None:
        class_ids = coco20i_fold_classes(fold)
        split = _val_or_trn(split, "COCO-20i")
        root = require(descend(Path(root), "COCO2014"), "COCO-20i root")
        if split == "trn":
            class_ids = [c for c in range(80) if c not in class_ids]

        if splits_dir is not None:
            classwise = read_coco20i_json(Path(splits_dir) / split / f"fold{fold}.json")
        else:
            coco_split = "val2014" if split == "val" else "train2014"
            classwise = derive_coco20i_lists(root, coco_split, class_ids)
        for c in class_ids:
            if not classwise.get(c):
                raise DatasetError(f"COCO-20i fold {fold} ({split}): no image lists class {c}")

        self._root = root
        self._classwise = {c: [self._episode(name, c) for name in classwise[c]] for c in class_ids}
        self._draw_per_item = split == "trn"
        pairs = [ep for c in class_ids for ep in self._classwise[c]]
        if num_episodes == "reference":
            num_episodes = len(pairs) if split == "trn" else 1000
        if split == "trn":  # placeholders that set the epoch length: each item draws its own episode
            episodes = [pairs[k % len(pairs)] for k in range(int(num_episodes))]
            to_check = pairs
        else:
            rs = np.random.RandomState(seed)
            episodes = []
            for _ in range(int(num_episodes)):
                cls = int(rs.choice(class_ids, 1, replace=False)[0])
                name = str(rs.choice(classwise[cls], 1, replace=False)[0])
                episodes.append(self._episode(name, cls))
            to_check = episodes
        _require_files(to_check, "COCO-20i")
        super().__init__(episodes, fewshot_labels("coco", label_style), class_ids, transform, num_support, pairs)

    def _episode(self, name: str, class_id: int) -> Episode:
        stem = name[: name.rindex(".")]
        return Episode(self._root / name, self._root / "annotations" / f"{stem}.png", class_id)

    def query_episode(self, index: int) -> Episode:
        if not self._draw_per_item:
            return self.episodes[index]
        cls = self.class_ids[int(torch.randint(len(self.class_ids), ()))]
        images = self._classwise[cls]
        return images[int(torch.randint(len(images), ()))]

    def binary_mask(self, path: Path, class_id: int) -> torch.Tensor:
        return torch.from_numpy((read_mask_array(path) == class_id + 1).astype(np.int64))


class FSS1000(FewShotDataset):
    """FSS-1000 query episodes (HSNet's shipped 520 trn / 240 val / 240 test categories; ``root``:
    ``FSS-1000`` or a folder holding it; mask >= 128 = foreground). Class id = position in the sorted
    split list + offset (trn 0, val 520, test 760); every ``.jpg`` is one episode, in ``sorted(glob)``
    order."""

    _OFFSETS: ClassVar[dict[str, int]] = {"trn": 0, "val": 520, "test": 760}

    def __init__(self, root: str | Path, split: Literal["trn", "val", "test"] = "test",
                 transform: JointTransform | None = None, label_style: LabelStyle = "reference",
                 num_support: int = 0) -> None:
        categories = sorted(fss_split_categories(split))  # DatasetError for an unknown split
        root = require(descend(Path(root), "FSS-1000"), "FSS-1000 root")
        offset = self._OFFSETS[split]
        episodes = []
        for i, cat in enumerate(categories):
            cat_dir = require(root / cat, f"FSS-1000 category {cat!r}")
            # The reference keeps files whose name's first '.'-field is followed by 'jpg'.
            for img in sorted(cat_dir.glob("*"), key=str):
                if img.name.split(".")[1:2] == ["jpg"]:
                    mask = require(img.with_name(img.name.split(".")[0] + ".png"), "FSS-1000 mask", "file")
                    episodes.append(Episode(img, mask, i + offset))
        class_ids = list(range(offset, offset + len(categories)))
        super().__init__(episodes, fewshot_labels("fss", label_style), class_ids, transform, num_support)

    def binary_mask(self, path: Path, class_id: int) -> torch.Tensor:
        # FSS masks are stored as RGB/gray images; the reference converts to 'L' and thresholds at 128.
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("L"))
        except OSError as e:
            raise DatasetError(f"cannot read mask {path}: {e}") from e
        return torch.from_numpy((arr >= 128).astype(np.int64))
