"""Prefetching: decode and resize images in DataLoader workers while the model runs. Batches come
back in input order (pinned on a GPU), an unreadable file as its error; items are drawn only as
workers need them, so a batch job claims an input just before it is loaded."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from lseg.errors import LSegError
from lseg.inference.predictor import LSegPredictor, PreparedImage, prepare_image
from lseg.io import load_image

__all__ = ["prepared_batches"]


class _Prepared(Dataset[tuple[int, Any]]):
    """Map-style over keys ``(index, path)`` (the sampler sends the path itself to the worker); the
    workers need the geometry only, never the model."""

    def __init__(self, size: int | None) -> None:
        self.size = size

    def __getitem__(self, key: tuple[int, str]) -> tuple[int, PreparedImage | LSegError]:
        index, path = key
        try:
            return index, prepare_image(load_image(path), self.size)
        except LSegError as e:
            return index, e


def _init_worker(_: int) -> None:
    torch.set_num_threads(1)  # each worker resizes one image at a time; the model keeps the cores


def prepared_batches(predictor: LSegPredictor, items: Iterable[Any]
                     ) -> Iterator[list[tuple[Any, PreparedImage | LSegError]]]:
    """``items`` (anything with a ``source`` path) in order, ``predictor.batch_size`` at a time, each
    with its image decoded and resized ahead in workers, or the error that made it unreadable."""
    workers = min(4, max(1, (os.cpu_count() or 1) // 2))  # ahead of the model, leaving it most cores
    seen: dict[int, Any] = {}

    def keys() -> Iterator[tuple[int, str]]:  # the sampler, drawn lazily from ``items``
        for index, item in enumerate(items):
            seen[index] = item
            yield index, str(item.source)

    loader = DataLoader(
        _Prepared(predictor.size), batch_size=predictor.batch_size, shuffle=False, num_workers=workers,
        sampler=keys(), collate_fn=list, worker_init_fn=_init_worker,
        pin_memory=predictor.device.type == "cuda", persistent_workers=False, prefetch_factor=2,
    )
    for batch in loader:
        yield [(seen.pop(index), image) for index, image in batch]
