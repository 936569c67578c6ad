"""Process-wide memory allocator tuning for inference, opt-in: the CLI calls :func:`tune_allocator`;
the library never does behind a caller's back."""

from __future__ import annotations

import ctypes
import sys


def tune_allocator() -> bool:
    """Pin glibc's malloc thresholds for inference (Linux/glibc only; returns whether it applied).

    glibc's sliding mmap threshold puts a forward's multi-megabyte activations on the heap, where
    they fragment (peak RSS of a ViT-L/480 forward grows ~150 MB over calls); a fixed 4 MiB mmap
    threshold and 32 MiB trim threshold keep it flat (lower thresholds cost page faults).
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
