"""lseg.inference.allocator: the process-wide malloc tuning is an explicit opt-in call."""

from __future__ import annotations

import subprocess
import sys

import pytest

import lseg.inference.predictor
from lseg.inference.allocator import tune_allocator


def test_tune_allocator_reports_whether_it_applied():
    applied = tune_allocator()
    assert isinstance(applied, bool)
    if sys.platform.startswith("linux"):
        import ctypes.util

        if ctypes.util.find_library("c") == "libc.so.6":
            assert applied  # glibc: mallopt accepted both thresholds


def test_old_import_path_still_works():
    assert lseg.inference.predictor.tune_allocator is tune_allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_library_use_does_not_tune_the_allocator():
    """Building a predictor leaves malloc alone (mallopt is process wide: the CLI calls it, a
    library user opts in): checked by intercepting the call in a fresh process."""
    script = (
        "import lseg, lseg.inference.allocator, lseg.inference.predictor\n"
        "calls = []\n"
        "lseg.inference.allocator.tune_allocator = lseg.inference.predictor.tune_allocator = lambda: calls.append(1) or True\n"
        "p = lseg.LSegPredictor(lseg.create_model('lseg_tiny_test'), size=32)\n"
        "import numpy as np; p.segment(np.zeros((32, 32, 3), np.uint8), ['a', 'b'])\n"
        "print(len(calls))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "0"
