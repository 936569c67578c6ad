"""Dense feature maps as pictures: :func:`pca_rgb` projects them on their first 3 principal components."""

from __future__ import annotations

from typing import Any

import numpy as np

from lseg.viz._arrays import _to_numpy


def pca_rgb(features: Any, *, n_samples: int = 10_000, seed: int = 0) -> np.ndarray:
    """A ``DxHxW`` (or ``1xDxHxW``) feature map, numpy or torch, as ``HxWx3 uint8`` RGB: its projection on
    its first 3 principal components (missing ones 0), fitted exactly on ``n_samples`` pixels drawn
    with ``seed``, each axis signed so its largest loading is positive (scikit-learn's ``svd_flip``);
    each channel min-max normalised to ``[0, 255]``, a constant one 0."""
    f = _to_numpy(features)
    if f.ndim == 4 and f.shape[0] == 1:
        f = f[0]
    if f.ndim != 3:
        raise ValueError(f"pca_rgb: features must be 3-D (DHW), got shape {tuple(f.shape)}")
    if f.dtype.kind not in "fiub":
        raise ValueError(f"pca_rgb: features must be numeric, got dtype {f.dtype}")
    if n_samples < 1:
        raise ValueError(f"pca_rgb: n_samples must be >= 1, got {n_samples}")
    d, h, w = f.shape
    if h * w == 0 or d == 0:
        raise ValueError(f"pca_rgb: empty feature map of shape {tuple(f.shape)}")
    flat = f.reshape(d, h * w).T.astype(np.float32, copy=False)  # (HW, D)
    if not np.isfinite(flat).all():
        raise ValueError("pca_rgb: features contain NaN or inf")

    rng = np.random.default_rng(seed)
    n = h * w
    sample_idx = np.sort(rng.choice(n, size=n_samples, replace=False)) if n > n_samples else slice(None)
    sample = flat[sample_idx].astype(np.float64)
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    axes = vt[:3]  # (<=3, D)
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]

    projected = (flat - mean.astype(np.float32)) @ axes.T.astype(np.float32)  # (HW, <=3)
    rgb = np.zeros((n, 3), dtype=np.float32)
    rgb[:, : projected.shape[1]] = projected
    lo, hi = rgb.min(axis=0), rgb.max(axis=0)
    span = (hi - lo).astype(np.float64)
    # Rounding noise next to the first component (rank-deficient features) is not stretched to full range.
    meaningful = span > 1e-6 * max(float(span[0]), 1e-30)
    scale = np.where(meaningful, 255.0 / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
    out = np.rint((rgb - lo) * scale).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.reshape(h, w, 3))
