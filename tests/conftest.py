"""Shared fixtures. Everything runs offline on CPU with tiny random models.

Fixtures for the hardening tests: every kind of good and bad input file (written once per
session), the tiny model as an lseg folder, and a runner for the ``lseg`` command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hostile_inputs import GoodImage, cli_env, write_bad, write_good

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np

#: The local stand-in for Google Drive (fixtures of the released-weights tests, API and CLI).
pytest_plugins = ["fake_drive"]

# Tiny models: one thread avoids two threads waiting on busy cores (CI has 2; torchrun tests use both).
torch.set_num_threads(1)


def make_photo(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A photograph-like HxWx3 uint8 RGB scene: sky gradient, sun, hills of textured grass."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    t = yy / height
    img[..., 0] = 110 + 60 * t
    img[..., 1] = 160 + 50 * t
    img[..., 2] = 235 - 20 * t
    sun = (yy - 0.2 * height) ** 2 + (xx - 0.75 * width) ** 2 < (0.1 * height) ** 2
    img[sun] = (250, 230, 120)
    horizon = 0.55 * height + 0.08 * height * np.sin(xx / width * 6.0)
    grass = yy > horizon
    noise = rng.normal(0, 18, size=(height, width))
    img[grass] = np.stack([40 + noise, 120 + 1.5 * noise, 35 + noise], -1)[grass]
    return np.clip(img, 0, 255).astype(np.uint8)


#: Slow tests in files this suite's maintainers do not mark by hand (tests/integration/test_readme.py
#: belongs to the docs): (file, test function) -> marked here, every parametrization of it.
_SLOW_ELSEWHERE = {
    ("tests/integration/test_readme.py", "test_page_blocks_run"),  # each page's commands, each a process
    ("tests/integration/test_readme.py", "test_unreadable_sub_folder_is_reported_not_skipped"),  # processes
}


#: Tests that pytest-xdist may give to either worker one by one (the others go a file at a time, so
#: that module fixtures are built once): each page of the docs runs its commands, 5-30 s a page.
_ONE_BY_ONE = {("tests/integration/test_readme.py", "test_page_blocks_run")}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if (item.nodeid.split("::")[0], getattr(item, "originalname", item.name)) in _SLOW_ELSEWHERE:
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """pytest-xdist's scheduling by file (``--dist loadfile``), except :data:`_ONE_BY_ONE`."""
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndSomeTests(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file, _, rest = nodeid.partition("::")
            return nodeid if (file, rest.split("[")[0]) in _ONE_BY_ONE else file

    return FilesAndSomeTests(config, log)


@pytest.fixture
def photo() -> np.ndarray:
    return make_photo()


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny random LSeg (patch-16 layout, seed 0), shared by the session: predictors switch its
    inference optimisations on, so tests that compare exact outputs build their own."""
    import lseg

    torch.manual_seed(0)
    return lseg.create_model("lseg_tiny_test")


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


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], object]) -> Path:
    """The folder ``name`` that ``make(folder)`` fills once per test run, for session fixtures that cost
    seconds: under pytest-xdist the workers share it (the first makes it, the others wait for it and
    read it); in a single process it is a fresh temp folder."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # this run's, shared by its workers
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (folder / ".complete").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def two_processes(tmp_path_factory: pytest.TempPathFactory):
    """The suite's multi-process commands, run once in one torchrun group of two (tests/process_group.py)."""
    from process_group import read_two_process_run, run_two_processes

    return read_two_process_run(once_per_run(tmp_path_factory, "two_processes", run_two_processes))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli(*args)``: ``lseg.cli.main(args)`` in this process, as ``run_cli`` reports a process (exit
    code, stdout, stderr): for the many tests of a command whose subject is not process behaviour."""
    from lseg.cli import main

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def with_bn_stats(name: str = "lseg_tiny_test"):
    """A tiny model (seed 0, eval mode) whose BatchNorm statistics are not the identity, so folding
    them into the convs does something."""
    import lseg

    torch.manual_seed(0)
    model = lseg.create_model(name)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def interrupt_at_call(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, n: int) -> None:
    """Patch ``owner.name`` (a module function or a class's method) to raise KeyboardInterrupt, as Ctrl-C
    would, on its ``n``-th call; the calls before it go through."""
    real, calls = getattr(owner, name), []

    def patched(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, patched)
