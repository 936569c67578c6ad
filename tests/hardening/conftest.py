"""Fixtures for the hardening tests: every kind of good and bad input file (written once per
session), the tiny model as an lseg folder, and a runner for the ``lseg`` command line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hardening.helpers import GoodImage, cli_env, write_bad, write_good


@pytest.fixture(scope="session")
def good_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GoodImage]:
    return write_good(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="session")
def bad_images(tmp_path_factory: pytest.TempPathFactory, good_images: dict[str, GoodImage]) -> dict[str, Path]:
    return write_bad(tmp_path_factory.mktemp("bad"), good_images)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random model saved as an lseg folder (model.safetensors + config.json)."""
    import lseg

    torch.manual_seed(0)
    return lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m lseg.cli ARGS`` in a fresh process (real stderr, real exit code)."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lseg.cli", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, check=False,
            timeout=timeout,
        )

    return run
