"""Deterministic data order and augmentation (the basis of exact resume and DDP equivalence)."""

from __future__ import annotations

import torch

from lseg.train.data import ResumableShardSampler, SeededSamples


def _keys(sampler: ResumableShardSampler, epoch: int, start: int = 0) -> list[tuple[int, int]]:
    sampler.set_position(epoch, start)
    return list(sampler)


def test_ranks_split_each_step_of_the_single_process_order():
    n, batch, accumulate = 23, 2, 2
    single = ResumableShardSampler(n, batch * 2, accumulate, rank=0, world_size=1, seed=7)
    ranks = [ResumableShardSampler(n, batch, accumulate, rank=r, world_size=2, seed=7) for r in range(2)]
    assert single.steps == ranks[0].steps == n // 8
    for epoch in (0, 3):
        full = [i for _, i in _keys(single, epoch)]
        parts = [[i for _, i in _keys(s, epoch)] for s in ranks]
        per_forward = batch * 2
        for f in range(len(full) // per_forward):  # every forward: the two ranks together = the single batch
            together = parts[0][f * batch : (f + 1) * batch] + parts[1][f * batch : (f + 1) * batch]
            assert sorted(together) == sorted(full[f * per_forward : (f + 1) * per_forward])
        assert len(set(full)) == len(full) == single.steps * 8  # no repeats; the remainder is dropped


def test_order_depends_on_seed_and_epoch_only_and_resume_skips():
    a = ResumableShardSampler(40, 4, 1, 0, 1, seed=1)
    b = ResumableShardSampler(40, 4, 1, 0, 1, seed=1)
    assert _keys(a, 2) == _keys(b, 2)
    assert _keys(a, 2) != _keys(a, 3)
    assert _keys(a, 2) != _keys(ResumableShardSampler(40, 4, 1, 0, 1, seed=2), 2)
    assert _keys(a, 2, start=3) == _keys(b, 2)[3 * 4 :]
    assert len(a) == (10 - 3) * 4


class _RandomItems:
    """A dataset whose items are random draws (like a random augmentation)."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(3)


def test_seeded_samples_are_a_function_of_seed_epoch_index():
    ds = SeededSamples(_RandomItems(), seed=0)
    first = ds[(1, 2)]
    torch.rand(10)  # whatever happened before does not matter
    assert torch.equal(ds[(1, 2)], first)
    assert not torch.equal(ds[(2, 2)], first) and not torch.equal(ds[(1, 3)], first)
    assert not torch.equal(SeededSamples(_RandomItems(), seed=1)[(1, 2)], first)
    state = torch.get_rng_state()
    ds[(0, 0)]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
