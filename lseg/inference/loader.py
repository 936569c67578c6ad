"""Prefetching: decode and resize images in DataLoader workers while the model runs. Batches come
back in input order (pinned on a GPU), an unreadable file as its error; items are drawn only as
workers need them, so a batch job claims an input just before it is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from lseg.errors import LSegError
from lseg.inference.predictor import LSegPredictor, PreparedImage, prepare_image
from lseg.io import load_image

__all__ = ["default_workers", "prepared_batches"]


class _Item(Protocol):
    source: Path


class _Prepared(Dataset[tuple[int, Any]]):
    """Map-style over keys ``(index, path)``: the sampler sends the path itself to the worker."""

    def __init__(self, size: int | None) -> None:
        self.size = size  # the workers need the geometry only, never the model

    def __getitem__(self, key: tuple[int, str]) -> tuple[int, PreparedImage | LSegError]:
        index, path = key
        try:
            return index, prepare_image(load_image(path), self.size)
        except LSegError as e:
            return index, e


class _Keys:
    """The sampler: ``(index, path)`` for each item, drawn lazily from ``items``."""

    def __init__(self, items: Iterable[_Item]) -> None:
        self.items, self.seen = items, {}

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for index, item in enumerate(self.items):
            self.seen[index] = item
            yield index, str(item.source)


def default_workers() -> int:
    """Loader processes: enough to keep decoding ahead of the model, leaving it most cores."""
    return min(4, max(1, (os.cpu_count() or 1) // 2))


def _init_worker(_: int) -> None:
    torch.set_num_threads(1)  # each worker resizes one image at a time; the model keeps the cores


def prepared_batches(predictor: LSegPredictor, items: Iterable[_Item], num_workers: int | None = None
                     ) -> Iterator[list[tuple[Any, PreparedImage | LSegError]]]:
    """``items`` (anything with a ``source`` path) in order, ``predictor.batch_size`` at a time, each
    with its image decoded and resized ahead in workers, or the error that made it unreadable."""
    workers = default_workers() if num_workers is None else num_workers
    keys = _Keys(items)
    loader = DataLoader(
        _Prepared(predictor.size), batch_size=predictor.batch_size, shuffle=False, num_workers=workers,
        sampler=keys, collate_fn=list, worker_init_fn=_init_worker if workers else None,
        pin_memory=predictor.device.type == "cuda", persistent_workers=False,
        prefetch_factor=2 if workers else None,
    )
    for batch in loader:
        yield [(keys.seen.pop(index), image) for index, image in batch]
