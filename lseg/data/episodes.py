"""The episode list and the support draw the few-shot benchmarks of :mod:`lseg.data.fewshot` share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from lseg.data.base import IGNORE_INDEX, JointTransform, read_image
from lseg.errors import DatasetError

__all__ = ["Episode", "FewShotDataset"]


@dataclass(frozen=True)
class Episode:
    """One query: image file, mask file and the benchmark class id (0-based)."""

    image: Path
    mask: Path
    class_id: int


class FewShotDataset(Dataset):
    """Base class: a fixed list of :class:`Episode` plus the benchmark's class names; a benchmark says
    how a mask is binarised (:meth:`binary_mask`).

    Attributes:
        episodes: the episodes, in evaluation order.
        labels: class string of every benchmark class id (all 20 / 80 / 1000, not just the fold's).
        class_ids: the class ids this split evaluates.
        ignore_index: 255 (boundary pixels; only PASCAL masks carry them).
        transform: optional joint ``(image, mask) -> (image, mask)`` transform.
    """

    ignore_index: int = IGNORE_INDEX

    def __init__(self, episodes: Sequence[Episode], labels: Sequence[str], class_ids: Sequence[int],
                 transform: JointTransform | None = None, num_support: int = 0) -> None:
        if len(episodes) == 0:
            raise DatasetError(f"{type(self).__name__}: no episodes")
        if num_support < 0:
            raise DatasetError(f"num_support must be >= 0, got {num_support}")
        self.episodes = list(episodes)
        self.labels = list(labels)
        self.class_ids = list(class_ids)
        self.transform = transform
        self.num_support = num_support
        self._pools: dict[int, list[Episode]] | None = None

    def __len__(self) -> int:
        return len(self.episodes)

    def binary_mask(self, path: Path, class_id: int) -> torch.Tensor:
        """The int64 ``(H, W)`` mask of ``path``: 1 = ``class_id``, 0 = rest (255 = ignored, if any)."""
        raise NotImplementedError

    def query_episode(self, index: int) -> Episode:
        """The episode item ``index`` shows (COCO-20i ``trn`` draws it, as the reference)."""
        return self.episodes[index]

    def pool_episodes(self) -> Sequence[Episode]:
        """Every (image, class) pair of the split, which supports are drawn from."""
        return self.episodes

    def support_pool(self, class_id: int) -> list[Episode]:
        """The distinct images of ``class_id`` a support can come from (query not excluded)."""
        if self._pools is None:
            pools: dict[int, list[Episode]] = {}
            for ep in dict.fromkeys(self.pool_episodes()):
                pools.setdefault(ep.class_id, []).append(ep)
            self._pools = pools
        return self._pools.get(class_id, [])

    def _load(self, ep: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        image = read_image(ep.image)
        mask = self.binary_mask(ep.mask, ep.class_id)
        if tuple(image.shape[-2:]) != tuple(mask.shape):
            raise DatasetError(
                f"image {ep.image} is {tuple(image.shape[-2:])} but mask {ep.mask} is {tuple(mask.shape)}"
            )
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        ep = self.query_episode(index)
        image, mask = self._load(ep)
        item: dict[str, Any] = {"image": image, "mask": mask, "class_id": ep.class_id,
                                "class_name": self.labels[ep.class_id], "path": str(ep.image)}
        if self.num_support:
            pool = [e for e in self.support_pool(ep.class_id) if e.image != ep.image]
            if len(pool) < self.num_support:
                raise DatasetError(
                    f"class {ep.class_id} ({self.labels[ep.class_id]!r}) has {len(pool)} image(s) besides "
                    f"{ep.image}; {self.num_support} support(s) needed"
                )
            picks = [pool[int(i)] for i in torch.randperm(len(pool))[: self.num_support]]
            supports = [self._load(e) for e in picks]
            item["support_images"] = [im for im, _ in supports]
            item["support_masks"] = [m for _, m in supports]
            item["support_paths"] = [str(e.image) for e in picks]
        return item
