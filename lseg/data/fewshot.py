"""Episodes of the few-shot benchmarks (PASCAL-5i, COCO-20i, FSS-1000), as LSeg's zero-shot protocol uses them.

LSeg's "zero-shot" evaluation (reference ``test_lseg_zs.py`` on HSNet's loaders) gives the model the
query image and the **name** of one class known to be in it, and scores a binary (others vs. class)
prediction. The support set is not used there, so by default these readers return only the query
side. Zero-shot *training* (reference ``LSegmentationModuleZS``) adds one support image of the same
class to every query: pass ``num_support=1``.

Every item is::

    {"image": uint8 tensor (3, H, W) RGB,
     "mask": int64 tensor (H, W): 1 = the episode's class, 0 = anything else, 255 = ignored boundary
             (PASCAL only; COCO / FSS masks have no ignored pixels),
     "class_id": int (benchmark class id), "class_name": str, "path": str}

plus, with ``num_support=S > 0``, ``"support_images"`` / ``"support_masks"`` (lists of S tensors, same
conventions, each passed through the transform) and ``"support_paths"``. Supports are drawn, as
HSNet does, uniformly among the other images of the episode's class in the same split (never the
query itself), with torch's global RNG: the training loop seeds it per (seed, epoch, item), so the
draws are reproducible and differ from epoch to epoch.

Images and masks are returned at their original resolution. The reference evaluates at 480x480
(image bilinear, mask nearest, aspect ratio not kept); use
:func:`lseg.data.transforms.fewshot_transform` for that.

Episode lists are deterministic: PASCAL and FSS follow fixed lists, COCO draws its episodes up front
from ``numpy.random.RandomState(seed)``, replaying the reference's ``np.random`` stream.

Shared parts: the episode list and support draw (:mod:`lseg.data.episodes`), COCO-20i's split lists
(:mod:`lseg.data.coco20i_splits`); their public names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from PIL import Image

from lseg.data.base import IGNORE_INDEX, JointTransform, read_mask_array, require_dir, require_file
from lseg.data.coco20i_splits import convert_coco20i_splits, derive_coco20i_lists, read_coco20i_json
from lseg.data.episodes import Episode, FewShotDataset
from lseg.data.label_sets import fewshot_labels, fss_split_categories, read_package_file
from lseg.errors import DatasetError

__all__ = [
    "FSS1000",
    "COCO20i",
    "Episode",
    "FewShotDataset",
    "Pascal5i",
    "coco20i_fold_classes",
    "convert_coco20i_splits",
    "pascal5i_fold_classes",
]

LabelStyle = Literal["reference", "clean"]


def pascal5i_fold_classes(fold: int) -> list[int]:
    """0-based class ids tested in PASCAL-5i fold ``fold``: the contiguous block ``5*fold .. 5*fold+4``."""
    _check_fold(fold)
    return [5 * fold + i for i in range(5)]


def coco20i_fold_classes(fold: int) -> list[int]:
    """0-based class ids tested in COCO-20i fold ``fold``: the interleaved set ``{4k + fold : k = 0..19}``."""
    _check_fold(fold)
    return [4 * k + fold for k in range(20)]


def _check_fold(fold: int) -> None:
    if fold not in (0, 1, 2, 3):
        raise DatasetError(f"fold must be 0, 1, 2 or 3, not {fold!r}")


class Pascal5i(FewShotDataset):
    """PASCAL-5i query episodes (HSNet splits, 20 classes, 4 folds).

    Layout (HSNet ``Datasets_HSN/VOC2012``)::

        VOC2012/
          JPEGImages/*.jpg
          SegmentationClassAug/*.png     # 0 background, 1..20 classes, 255 boundary

    Fold ``i`` tests classes ``5i .. 5i+4`` (0-based). The val episode lists (``<image>__<class 1-based>``
    lines, 346/451/725/346 per fold) are shipped with the package, copied from lang-seg
    ``fewshot_data/data/splits/pascal/val``. Training lists (``trn``) are not shipped; pass
    ``splits_dir`` holding ``trn/fold{0..3}.txt`` (HSNet layout: lang-seg
    ``fewshot_data/data/splits/pascal/trn``, 2286/3425/5883/2086 lines). Training fold ``i`` reads
    the three other folds' ``trn`` lists. A ``val/fold{i}.txt`` missing from ``splits_dir`` falls back
    to the shipped list.

    Episode ``k`` uses list entry ``k % n``. For ``val`` the reference fixes 1000 episodes, so the list
    (n = 346..725) is cycled and every entry counts 1000 / n = 1.4-2.9 times, the entries at the start
    of the list once more than the rest: the score is a re-weighted average, not a per-image one. Pass
    ``num_episodes=None`` for exactly one pass over the list.

    Mask: ``1`` where the stored value is ``class + 1``, ``255`` where it is 255 (boundary, ignored by
    :class:`lseg.eval.FewShotMeter`), ``0`` elsewhere.

    Args:
        root: ``VOC2012`` or a folder holding it (``Datasets_HSN``, ``VOCdevkit``).
        fold: 0..3.
        split: ``"val"`` (the reference also maps ``"test"`` here) or ``"trn"`` (the other folds' classes).
        splits_dir: Folder with ``{trn,val}/fold{i}.txt``; default: the shipped val lists.
        num_episodes: ``"reference"`` (1000 for val, one pass for trn, as HSNet), an episode count
            (the list is cycled), or ``None`` for one pass.
        transform: Joint ``(image, mask)`` transform.
        label_style: ``"reference"`` (``"diningtable"``) or ``"clean"`` (``"dining table"``).
        num_support: Support images per item (0: query only, the evaluation protocol; 1: training).
    """

    def __init__(
        self,
        root: str | Path,
        fold: int,
        split: Literal["val", "test", "trn"] = "val",
        splits_dir: str | Path | None = None,
        num_episodes: int | Literal["reference"] | None = "reference",
        transform: JointTransform | None = None,
        label_style: LabelStyle = "reference",
        num_support: int = 0,
    ) -> None:
        _check_fold(fold)
        split = "val" if split in ("val", "test") else split
        if split not in ("val", "trn"):
            raise DatasetError(f"unknown PASCAL-5i split {split!r}; expected 'val', 'test' or 'trn'")
        root = Path(root)
        for sub in ("VOC2012", "VOCdevkit/VOC2012"):
            if (root / sub).is_dir():
                root = root / sub
                break
        image_dir = require_dir(root / "JPEGImages", "PASCAL-5i images")
        mask_dir = require_dir(root / "SegmentationClassAug", "PASCAL-5i SBD-augmented masks")

        folds = [fold] if split == "val" else [f for f in range(4) if f != fold]
        metadata: list[tuple[str, int]] = []
        for f in folds:
            metadata += self._read_fold(split, f, splits_dir)
        if num_episodes == "reference":
            num_episodes = 1000 if split == "val" else None
        n = len(metadata) if num_episodes is None else int(num_episodes)
        episodes = [
            Episode(image_dir / f"{name}.jpg", mask_dir / f"{name}.png", cls)
            for name, cls in (metadata[k % len(metadata)] for k in range(n))
        ]
        for ep in dict.fromkeys(episodes):
            require_file(ep.image, "PASCAL-5i image")
            require_file(ep.mask, "PASCAL-5i mask")
        class_ids = pascal5i_fold_classes(fold)
        if split == "trn":
            class_ids = [c for c in range(20) if c not in class_ids]
        super().__init__(episodes, fewshot_labels("pascal", label_style), class_ids, transform, num_support)

    @staticmethod
    def _read_fold(split: str, fold: int, splits_dir: str | Path | None) -> list[tuple[str, int]]:
        path = None if splits_dir is None else Path(splits_dir) / split / f"fold{fold}.txt"
        if path is not None and (path.is_file() or split == "trn"):
            text = require_file(path, "PASCAL-5i split list").read_text()
        elif split == "val":
            text = read_package_file(f"pascal5i_val_fold{fold}.txt")
        else:
            raise DatasetError(
                "PASCAL-5i training lists are not shipped; pass splits_dir=<folder with trn/fold{0..3}.txt> "
                "(HSNet's lists: lang-seg fewshot_data/data/splits/pascal)"
            )
        out = []
        for line in text.splitlines():
            if line.strip():
                name, cls = line.strip().split("__")
                out.append((name, int(cls) - 1))  # files are 1-based
        return out

    def binary_mask(self, path: Path, class_id: int) -> torch.Tensor:
        arr = read_mask_array(path).astype(np.int64)
        out = np.zeros_like(arr)
        out[arr == class_id + 1] = 1
        out[arr == 255] = IGNORE_INDEX
        return torch.from_numpy(out)


class COCO20i(FewShotDataset):
    """COCO-20i query episodes (HSNet, 80 classes, 4 interleaved folds).

    Layout (HSNet ``Datasets_HSN/COCO2014``)::

        COCO2014/
          train2014/*.jpg, val2014/*.jpg
          annotations/train2014/*.png, annotations/val2014/*.png   # 0 background, class c -> c + 1

    Fold ``i`` tests classes ``{4k + i}`` (0-based). Per-class image lists come from ``splits_dir``
    (``{trn,val}/fold{i}.json``, see :func:`convert_coco20i_splits` to make them from HSNet's pickles).
    Without ``splits_dir`` they are derived by scanning every mask of the split for the fold's classes;
    HSNet's lists are not guaranteed to be identical, so the episodes (and scores) can differ.

    ``val`` episodes are drawn once at construction, replaying the reference: with
    ``rs = numpy.random.RandomState(seed)``, each episode takes ``c = rs.choice(class_ids, 1,
    replace=False)[0]`` then ``rs.choice(images[c], 1, replace=False)[0]``. With ``seed=0`` and HSNet's
    lists this is the stream the reference's ``fix_randseed(0)`` produces (as long as nothing else draws
    from ``np.random`` in between), and it does not depend on DataLoader workers.

    ``trn`` items are drawn the same way (a class uniformly, then one of its images) but afresh at every
    ``__getitem__``, from torch's global RNG, ignoring the index, as HSNet's training loader does; the
    length (one epoch) is the number of (class, image) pairs in the lists, HSNet's ``len(img_metadata)``.

    Args:
        root: ``COCO2014`` or a folder holding it.
        fold: 0..3.
        split: ``"val"`` (``"test"`` is an alias) or ``"trn"``.
        splits_dir: Folder with ``{trn,val}/fold{i}.json``; ``None`` derives the lists from the masks.
        num_episodes: Number of episodes; ``"reference"``: 1000 for val, the (class, image) pair count
            for trn.
        seed: Seed of the val episode sampler.
        transform: Joint ``(image, mask)`` transform.
        label_style: ``"reference"`` (``"trafficlight"``) or ``"clean"`` (``"traffic light"``).
        num_support: Support images per item (0: query only; 1: training).
    """

    def __init__(
        self,
        root: str | Path,
        fold: int,
        split: Literal["val", "test", "trn"] = "val",
        splits_dir: str | Path | None = None,
        num_episodes: int | Literal["reference"] = "reference",
        seed: int = 0,
        transform: JointTransform | None = None,
        label_style: LabelStyle = "reference",
        num_support: int = 0,
    ) -> None:
        _check_fold(fold)
        split = "val" if split in ("val", "test") else split
        if split not in ("val", "trn"):
            raise DatasetError(f"unknown COCO-20i split {split!r}; expected 'val', 'test' or 'trn'")
        root = Path(root)
        if (root / "COCO2014").is_dir():
            root = root / "COCO2014"
        require_dir(root, "COCO-20i root")
        class_ids = coco20i_fold_classes(fold)
        if split == "trn":
            class_ids = [c for c in range(80) if c not in class_ids]

        if splits_dir is not None:
            classwise = read_coco20i_json(
                require_file(Path(splits_dir) / split / f"fold{fold}.json", "COCO-20i split")
            )
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
        for ep in dict.fromkeys(to_check):
            require_file(ep.image, "COCO-20i image")
            require_file(ep.mask, "COCO-20i mask")
        self._pairs = pairs
        super().__init__(episodes, fewshot_labels("coco", label_style), class_ids, transform, num_support)

    def _episode(self, name: str, class_id: int) -> Episode:
        stem = name[: name.rindex(".")]
        return Episode(self._root / name, self._root / "annotations" / f"{stem}.png", class_id)

    def query_episode(self, index: int) -> Episode:
        if not self._draw_per_item:
            return self.episodes[index]
        cls = self.class_ids[int(torch.randint(len(self.class_ids), ()))]
        images = self._classwise[cls]
        return images[int(torch.randint(len(images), ()))]

    def pool_episodes(self) -> Sequence[Episode]:
        return self._pairs

    def binary_mask(self, path: Path, class_id: int) -> torch.Tensor:
        return torch.from_numpy((read_mask_array(path) == class_id + 1).astype(np.int64))


class FSS1000(FewShotDataset):
    """FSS-1000 query episodes (HSNet splits: 520 trn / 240 val / 240 test categories).

    Layout (HSNet ``Datasets_HSN/FSS-1000``)::

        FSS-1000/<category>/{1..10}.jpg     # images
        FSS-1000/<category>/{1..10}.png     # masks, binarised at 128 (>= 128 = foreground)

    Class id = position of the category in the **sorted** split list + offset (trn 0, val 520,
    test 760), i.e. the line of lang-seg's ``fewshot_fss.txt``. Every ``.jpg`` of every category is one
    episode, in ``sorted(glob)`` order (``1, 10, 2, ..., 9``), as the reference does with ``--nshot 0``.
    The category lists are shipped (copied from lang-seg ``fewshot_data/data/splits/fss``).

    Args:
        root: ``FSS-1000`` or a folder holding it.
        split: ``"test"``, ``"val"`` or ``"trn"``.
        transform: Joint ``(image, mask)`` transform.
        label_style: ``"reference"`` (``"ac_wall"``) or ``"clean"`` (``"ac wall"``).
        num_support: Support images per item, from the query's category (0: query only; 1: training).
    """

    _OFFSETS: ClassVar[dict[str, int]] = {"trn": 0, "val": 520, "test": 760}

    def __init__(
        self,
        root: str | Path,
        split: Literal["trn", "val", "test"] = "test",
        transform: JointTransform | None = None,
        label_style: LabelStyle = "reference",
        num_support: int = 0,
    ) -> None:
        if split not in self._OFFSETS:
            raise DatasetError(f"unknown FSS-1000 split {split!r}; expected 'trn', 'val' or 'test'")
        root = Path(root)
        if (root / "FSS-1000").is_dir():
            root = root / "FSS-1000"
        require_dir(root, "FSS-1000 root")
        categories = sorted(fss_split_categories(split))
        episodes = []
        for i, cat in enumerate(categories):
            cat_dir = require_dir(root / cat, f"FSS-1000 category {cat!r}")
            # The reference keeps files whose name's first '.'-field is followed by 'jpg'.
            for img in sorted(str(p) for p in cat_dir.glob("*")):
                name = Path(img).name
                if name.split(".")[1:2] == ["jpg"]:
                    mask = Path(img).with_name(name.split(".")[0] + ".png")
                    episodes.append(
                        Episode(Path(img), require_file(mask, "FSS-1000 mask"), i + self._OFFSETS[split])
                    )
        class_ids = list(range(self._OFFSETS[split], self._OFFSETS[split] + len(categories)))
        super().__init__(episodes, fewshot_labels("fss", label_style), class_ids, transform, num_support)

    def binary_mask(self, path: Path, class_id: int) -> torch.Tensor:
        # FSS masks are stored as RGB/gray images; the reference converts to 'L' and thresholds at 128.
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("L"))
        except OSError as e:
            raise DatasetError(f"cannot read mask {path}: {e}") from e
        return torch.from_numpy((arr >= 128).astype(np.int64))
