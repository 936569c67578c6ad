"""Fixtures for the training tests: a toy folder dataset and a small, fast training config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from train.helpers import tiny_train_config

from lseg.train import TrainConfig
from lseg.train.toy import make_toy_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny model gains nothing from 2 threads, and on a shared 2-core machine OpenMP threads
    spin-waiting for a busy core make it ~5x slower; one thread keeps these tests fast and stable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet_random_text_warning():
    """The tiny models have a random text tower by design; silence the warning that says so."""
    logger = logging.getLogger("lseg.train.init")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 images of 64x64, three classes (grass, red square, blue ball)."""
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "data", num_images=8, size=64, seed=0)


@pytest.fixture(scope="session")
def toy_val_root(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy folder dataset plus ``splits/val.txt`` (4 of its 8 images), for validation runs."""
    import shutil

    root = tmp_path_factory.mktemp("toyval") / "data"
    shutil.copytree(toy_root, root)
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("".join(f"toy_{i:04d}\n" for i in range(4)))
    return root


@pytest.fixture
def tiny_cfg(toy_root: Path, tmp_path: Path) -> TrainConfig:
    """A CPU config for the tiny model on the toy data (64 px crops, no workers, no progress bar)."""
    return tiny_train_config(toy_root, tmp_path / "run")
