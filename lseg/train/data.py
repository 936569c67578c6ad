"""Deterministic, resumable training data: the **order** is a function of ``(seed, epoch)``, each
sample's **augmentation** of ``(seed, epoch, index)``: a resumed run, or N processes with batch B, see
what one uninterrupted run with batch N x B sees, whatever the number of workers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["ResumableShardSampler", "SeededSamples", "sample_seed"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one (seed, epoch, index) triple, stable across platforms."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class SeededSamples(Dataset):
    """``dataset`` whose item ``(epoch, index)`` is ``dataset[index]`` drawn under torch RNG seed
    :func:`sample_seed` ``(seed, epoch, index)`` (the caller's RNG state is restored afterwards)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        assert isinstance(self.dataset, Sized)
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return self.dataset[index]


class ResumableShardSampler(Sampler[tuple[int, int]]):
    """Yields this process's ``(epoch, index)`` keys for one epoch, from the position :meth:`set_position`
    selects: one permutation of the ``num_samples`` per epoch, cut into optimizer steps of whole global
    batches (the remainder is left out), process ``rank`` taking every ``world_size``-th image of each."""

    def __init__(self, num_samples: int, batch_size: int, accumulate: int, rank: int, world_size: int,
                 seed: int) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.accumulate = accumulate
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.global_batch = batch_size * accumulate * world_size
        self.steps = num_samples // self.global_batch  # optimizer steps per epoch
        if self.steps == 0:
            raise ValueError(
                f"the dataset has {num_samples} images, fewer than one global batch ({self.global_batch} = "
                f"{batch_size} per device x {world_size} devices x {accumulate} accumulated)"
            )
        self.epoch = 0
        self.start_step = 0

    def set_position(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch and the optimizer step within it to start from (not ``set_epoch``, which
        Lightning's dataloader wrapper calls with its own count)."""
        if not 0 <= start_step < self.steps:
            raise ValueError(f"start_step {start_step} outside 0..{self.steps - 1}")
        self.epoch = epoch
        self.start_step = start_step

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1))
        perm = torch.randperm(self.num_samples, generator=g)[: self.steps * self.global_batch]
        per_step = perm.view(self.steps, self.accumulate, self.world_size * self.batch_size)
        mine = per_step[:, :, self.rank :: self.world_size].reshape(-1).tolist()  # this epoch, in order
        return ((self.epoch, index) for index in mine[self.start_step * self.accumulate * self.batch_size :])

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.accumulate * self.batch_size
