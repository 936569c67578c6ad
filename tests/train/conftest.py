"""Fixtures for the training tests: a toy folder dataset and a small, fast training config."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
import torch

from lseg.train import TrainConfig
from lseg.train.toy import make_toy_dataset

REPO = Path(__file__).resolve().parents[2]


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
    return TrainConfig(
        model="lseg_tiny_test", dataset="folder", data_root=str(toy_root), split=None,
        base_size=64, crop_size=64, scale_range=(0.75, 1.25), batch_size=2, max_steps=4,
        base_lr=0.01, lr_scaling="none", accelerator="cpu", num_workers=0, log_every_n_steps=1,
        checkpoint_every_n_steps=0, progress_bar=False, out_dir=str(tmp_path / "run"),
    )


def _cli_env() -> dict[str, str]:
    """Environment for `python -m lseg.cli ...` subprocesses: loopback-only gloo rendezvous."""
    env = dict(os.environ)
    env.update(MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo", TQDM_DISABLE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("MASTER_PORT", None)  # Fabric picks a free port
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_cli(*args: str, timeout: float = 240) -> str:
    """Run ``python -m lseg.cli ARGS`` in a subprocess; return stdout+stderr, fail with it on error."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "lseg.cli", *args], env=_cli_env(), cwd=REPO, capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"lseg {' '.join(args)} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


@pytest.fixture
def run_cli():
    """``run_cli(*args)``: the lseg CLI in a subprocess (needed for Fabric's multi-process self-launch)."""
    return _run_cli
