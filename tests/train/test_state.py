"""A training run's state on disk (:mod:`lseg.train.state`): checkpoint files, resumption, RNG state."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lseg.errors import CheckpointError
from lseg.train.state import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    load_checkpoint,
    resolve_resume,
    rng_state,
    set_rng_state,
)


def test_rng_state_round_trips_and_loads_without_pickle(tmp_path: Path):
    state = rng_state()
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    state = torch.load(path, weights_only=True)  # tensors and plain numbers only
    draws = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def test_load_checkpoint_checks_the_format(tmp_path: Path):
    good = tmp_path / "last.ckpt"
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": 3}, good)
    assert load_checkpoint(good)["step"] == 3
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not an lseg training checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")
    torch.save({"format": CHECKPOINT_FORMAT, "version": 99}, tmp_path / "new.ckpt")
    with pytest.raises(CheckpointError, match="unsupported training checkpoint version 99"):
        load_checkpoint(tmp_path / "new.ckpt")
    (tmp_path / "broken.ckpt").write_bytes(good.read_bytes()[:200])  # a truncated file
    with pytest.raises(CheckpointError, match="cannot read training checkpoint"):
        load_checkpoint(tmp_path / "broken.ckpt")
    # an empty file, garbage, a pickle that would run code: one line each, nothing executed
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "garbage.ckpt").write_bytes(b"\x80\x02garbage" * 3)
    torch.save({"format": CHECKPOINT_FORMAT, "step": Path("x")}, tmp_path / "code.ckpt")
    for name, says in [("empty", "is not a training checkpoint: neither"),
                       ("garbage", "cannot read training checkpoint .*: torch's safe loader does not support its pickle"),
                       ("code", "refusing to load .*: it contains Python objects .*(loading it would run code)")]:
        with pytest.raises(CheckpointError, match=says) as error:
            load_checkpoint(tmp_path / f"{name}.ckpt")
        assert f"{name}.ckpt" in str(error.value) and "\n" not in str(error.value)


def test_resolve_resume(tmp_path: Path):
    last = tmp_path / "last.ckpt"
    assert resolve_resume("auto", last) is None and resolve_resume("never", last) is None
    last.write_bytes(b"x")
    assert resolve_resume("auto", last) == last and resolve_resume(True, last) == last
    assert resolve_resume(str(last), tmp_path / "other.ckpt") == last
    with pytest.raises(CheckpointError, match="--resume: checkpoint not found"):
        resolve_resume(tmp_path / "missing.ckpt", last)


def test_resolve_resume_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "last.ckpt").write_bytes(b"x")
    assert resolve_resume("~/last.ckpt", tmp_path / "other.ckpt") == tmp_path / "last.ckpt"
