"""Prefetching: decode and resize images in DataLoader workers while the model runs.

Shared by the commands that run a predictor over many files. Each item is decoded and resized to
the predictor's working size in a worker process (``torch.utils.data.DataLoader``), batches come
back in input order, pinned when the model is on a GPU, and a file that cannot be read becomes an
error record instead of stopping the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from lseg.errors import LSegError
from lseg.inference import LSegPredictor, PreparedImage, prepare_image
from lseg.io import load_image


@dataclass
class Loaded:
    """One input of a batch: its index in the input list, and the prepared image or the error."""

    index: int
    path: Path
    image: PreparedImage | None
    error: str | None = None


class _Prepared(Dataset[Loaded]):
    def __init__(self, size: int | None, paths: Sequence[Path]) -> None:
        self.size = size  # the workers need the geometry only, never the model
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Loaded:
        try:
            return Loaded(i, self.paths[i], prepare_image(load_image(self.paths[i]), self.size))
        except LSegError as e:
            return Loaded(i, self.paths[i], None, str(e))


def default_workers() -> int:
    """Loader processes: enough to keep decoding ahead of the model, leaving it most cores."""
    return min(4, max(1, (os.cpu_count() or 1) // 2))


def _collate(items: list[Loaded]) -> list[Loaded]:
    return items


def _init_worker(_: int) -> None:
    torch.set_num_threads(1)  # each worker resizes one image at a time; the model keeps the cores


class _Taken:
    """Indices ``0..n-1`` for which ``take(i)`` is true, asked lazily: the DataLoader draws an index
    only when it dispatches that item to a worker, so ``take`` (claiming an output) runs in this
    process, about ``prefetch`` batches ahead of the model, not for the whole list at the start."""

    def __init__(self, n: int, take: Callable[[int], bool]) -> None:
        self.n, self.take = n, take

    def __iter__(self) -> Iterator[int]:
        return (i for i in range(self.n) if self.take(i))


def prepared_batches(
    predictor: LSegPredictor, paths: Sequence[Path], num_workers: int | None = None,
    take: Callable[[int], bool] | None = None,
) -> Iterator[list[Loaded]]:
    """``paths`` in order, ``predictor.batch_size`` at a time, decoded and resized ahead in workers.

    With ``take``, only the inputs ``i`` for which ``take(i)`` returns True (asked in this process,
    just before input ``i`` goes to a worker) are loaded: how workers sharing an output folder claim
    their inputs.
    """
    if not paths:
        return
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(
        _Prepared(predictor.size, paths), batch_size=predictor.batch_size, shuffle=False, num_workers=workers,
        sampler=_Taken(len(paths), take) if take is not None else None,
        collate_fn=_collate, worker_init_fn=_init_worker if workers else None,
        pin_memory=predictor.device.type == "cuda", persistent_workers=False,
        prefetch_factor=2 if workers else None,
    )
    yield from loader
