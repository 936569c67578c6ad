"""Process-wide memory allocator tuning for inference: opt in with one call.

Nothing in the library calls this behind the caller's back: the CLI entry points (which own their
process) call it before any model is built; a library user who wants the flat peak memory it gives
calls ``lseg.inference.allocator.tune_allocator()`` once, early.
"""

from __future__ import annotations

import ctypes
import sys


def tune_allocator() -> bool:
    """Pin glibc's malloc thresholds for inference (Linux/glibc only; returns whether it applied).

    By default glibc raises its mmap threshold (up to 32 MiB) each time a large block is freed, so
    the multi-megabyte activations of a forward end up on the heap, where freed memory is kept and
    fragments: peak RSS of a ViT-L/480 forward grows by ~150 MB over repeated calls. A fixed 4 MiB
    mmap threshold (bigger tensors are mapped and returned to the system when freed) with a 32 MiB
    trim threshold keeps the peak flat; a lower threshold saves a little more memory but costs ~1 s
    per forward in page faults (measured on this project's 2-core hosts). Process wide: called by the
    CLI's entry point, ``lseg bench`` and the benchmarks; library users opt in.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to do
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 4 << 20)) and bool(mallopt(m_trim_threshold, 32 << 20))
