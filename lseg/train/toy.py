"""Synthetic datasets in real on-disk layouts, for smoke tests and for trying the pipeline on a CPU
(``docs/training.md`` has the commands)."""

from __future__ import annotations

import colorsys
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

__all__ = ["TOY_COLOURS", "make_toy_dataset", "make_toy_fewshot"]

#: Mean RGB colour of each toy class (background first).
TOY_COLOURS: tuple[tuple[int, int, int], ...] = (
    (60, 150, 60), (200, 40, 40), (40, 60, 210), (230, 210, 60), (150, 60, 200),  # 0: grass-like background
)


def make_toy_dataset(root: str | Path, num_images: int = 8, size: int | tuple[int, int] = 64,
                     labels: Sequence[str] = ("grass", "red square", "blue ball"), seed: int = 0) -> Path:
    """Write shapes of distinctly coloured classes on a textured background (class 0) in the
    :class:`lseg.data.FolderDataset` layout under ``root`` and return it. ``size``: a side or
    ``(height, width)``; ``labels``: background first, at most ``len(TOY_COLOURS)``."""
    if not 2 <= len(labels) <= len(TOY_COLOURS):
        raise ValueError(f"need 2..{len(TOY_COLOURS)} labels, got {len(labels)}")
    h, w = (size, size) if isinstance(size, int) else size
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(num_images):
        mask = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(2, 5))):
            cls = int(rng.integers(1, len(labels)))
            ch, cw = int(rng.integers(h // 5, h // 2)), int(rng.integers(w // 5, w // 2))
            cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
            mask[_blob(rng, yy - cy, xx - cx, ch, cw)] = cls
        colours = np.asarray(TOY_COLOURS[: len(labels)], np.float32)
        image = colours[mask] + rng.normal(0.0, 12.0, (h, w, 3)).astype(np.float32)
        image[mask == 0] += 25.0 * np.sin(xx[mask == 0, None] / 3.0)  # a stripe texture on the background
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"toy_{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"toy_{i:04d}.png")
    return root


def _blob(rng: np.random.Generator, dy: np.ndarray, dx: np.ndarray, ch: int, cw: int) -> np.ndarray:
    """A ``ch`` x ``cw`` rectangle or (equally likely) ellipse at offsets ``dy``, ``dx`` from its centre."""
    if rng.random() < 0.5:
        return (abs(dy) <= ch // 2) & (abs(dx) <= cw // 2)
    return (dy / (ch / 2)) ** 2 + (dx / (cw / 2)) ** 2 <= 1.0


def _object_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One object of a random saturated colour on the striped background: RGB uint8 image, object mask."""
    yy, xx = np.mgrid[0:h, 0:w]
    ch, cw = int(rng.integers(h // 3, 2 * h // 3)), int(rng.integers(w // 3, 2 * w // 3))
    cy, cx = int(rng.integers(ch // 2, h - ch // 2)), int(rng.integers(cw // 2, w - cw // 2))
    obj = _blob(rng, yy - cy, xx - cx, ch, cw)
    # a colour per image, not per class: what is learnt is "the named object", not a colour
    colour = np.asarray(colorsys.hsv_to_rgb(float(rng.random()), 0.85, 0.95)) * 255.0
    image = np.empty((h, w, 3), np.float32)
    image[:] = (110.0, 125.0, 100.0)
    image += (22.0 * np.sin((xx + yy * float(rng.uniform(0.3, 1.0))) / 2.5))[..., None]
    image[obj] = colour
    image += rng.normal(0.0, 10.0, (h, w, 3)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), obj


def _ring(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbourhood crosses the object border (VOC-style 255 boundary)."""
    edge = np.zeros_like(mask, bool)
    edge[1:, :] |= mask[1:, :] != mask[:-1, :]
    edge[:-1, :] |= mask[1:, :] != mask[:-1, :]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[:, :-1] |= mask[:, 1:] != mask[:, :-1]
    return edge


def make_toy_fewshot(root: str | Path, benchmark: Literal["pascal5i", "coco20i", "fss1000"],
                     per_class: int = 2, size: int = 64, seed: int = 0) -> Path:
    """Write a tiny few-shot benchmark in HSNet's ``Datasets_HSN`` layout under ``root`` and return it:
    ``per_class`` (>= 2, so every query has a support) images per class and split, each one object in a
    random saturated colour (the colour does not tell the class). ``pascal5i`` also writes the lists
    ``splits/pascal/{trn,val}/fold{0..3}.txt`` (pass that folder as ``splits_dir``)."""
    if per_class < 2:
        raise ValueError(f"per_class must be >= 2 (a support needs another image of the class), got {per_class}")
    root = Path(root)
    rng = np.random.default_rng(seed)

    def save(image: np.ndarray, mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
        image_path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(image_path, quality=95)
        Image.fromarray(mask).save(mask_path)

    if benchmark == "pascal5i":
        voc = root / "VOC2012"
        lists: dict[tuple[str, int], list[str]] = {}
        for k, (split, cls, _) in enumerate(itertools.product(("trn", "val"), range(20), range(per_class))):
            name = f"{2007 + (split == 'val')}_{k:06d}"
            image, obj = _object_scene(rng, size, size)
            mask = np.where(obj, cls + 1, 0).astype(np.uint8)
            mask[_ring(obj)] = 255
            save(image, mask, voc / "JPEGImages" / f"{name}.jpg", voc / "SegmentationClassAug" / f"{name}.png")
            lists.setdefault((split, cls // 5), []).append(f"{name}__{cls + 1:02d}")
        for (split, fold), lines in lists.items():
            path = root / "splits" / "pascal" / split / f"fold{fold}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif benchmark == "coco20i":
        coco = root / "COCO2014"
        images = itertools.product(("train2014", "val2014"), range(80), range(per_class))
        for k, (split, cls, _) in enumerate(images, 1):
            stem = f"COCO_{split}_{k:012d}"
            image, obj = _object_scene(rng, size, size)
            mask = np.where(obj, cls + 1, 0).astype(np.uint8)
            save(image, mask, coco / split / f"{stem}.jpg", coco / "annotations" / split / f"{stem}.png")
    elif benchmark == "fss1000":
        from lseg.data.label_sets import fss_split_categories

        fss = root / "FSS-1000"
        categories = [cat for split in ("trn", "val", "test") for cat in sorted(fss_split_categories(split))]
        for cat, n in itertools.product(categories, range(1, per_class + 1)):
            image, obj = _object_scene(rng, size, size)
            mask = np.where(obj, 255, 0).astype(np.uint8)
            save(image, mask, fss / cat / f"{n}.jpg", fss / cat / f"{n}.png")
    else:
        raise ValueError(f"unknown few-shot benchmark {benchmark!r}; expected pascal5i, coco20i or fss1000")
    return root
