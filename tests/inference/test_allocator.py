"""lseg.inference.allocator: the process-wide malloc tuning is an explicit opt-in call."""

from __future__ import annotations

import sys

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


def test_library_use_does_not_tune_the_allocator(tiny_model, monkeypatch):
    """Building a predictor and segmenting leave malloc alone (mallopt is process wide: the CLI calls
    it, a library user opts in): checked by intercepting the call where the library could make it."""
    import numpy as np

    import lseg

    calls = []
    for module in (lseg.inference.allocator, lseg.inference.predictor):
        monkeypatch.setattr(module, "tune_allocator", lambda: calls.append(1) or True)
    p = lseg.LSegPredictor(tiny_model, size=32)
    p.segment(np.zeros((32, 32, 3), np.uint8), ["a", "b"])
    assert calls == []
