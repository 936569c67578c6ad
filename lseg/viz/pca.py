"""Dense feature maps as pictures: :func:`pca_rgb` projects them on their first 3 principal components."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from lseg.viz._arrays import _to_numpy


def pca_rgb(features: Any, *, layout: Literal["DHW", "HWD"] = "DHW", n_samples: int = 10_000,
            seed: int = 0) -> np.ndarray:
    """A dense feature map as ``HxWx3 uint8`` RGB: its projection on its first 3 principal components.

    The axes are fitted exactly (SVD, float64) on ``n_samples`` (>= 1) pixels drawn with ``seed``,
    each signed so its largest loading is positive (scikit-learn's ``svd_flip``: colours do not depend
    on the SVD implementation); each channel is min-max normalised to ``[0, 255]``, a constant one
    (spread below 1e-6 of the first's) 0.

    Args:
        features: ``DxHxW`` (``layout="DHW"``; ``1xDxHxW`` accepted) or ``HxWxD`` (``"HWD"``) numeric
            features, numpy or torch; with ``D < 3`` the missing channels are 0.
    """
    f = _to_numpy(features)
    if layout not in ("DHW", "HWD"):
        raise ValueError(f"pca_rgb: layout must be 'DHW' or 'HWD', got {layout!r}")
    if layout == "DHW" and f.ndim == 4 and f.shape[0] == 1:
        f = f[0]
    if f.ndim != 3:
        raise ValueError(f"pca_rgb: features must be 3-D ({layout}), got shape {tuple(f.shape)}")
    if f.dtype.kind not in "fiub":
        raise ValueError(f"pca_rgb: features must be numeric, got dtype {f.dtype}")
    if n_samples < 1:
        raise ValueError(f"pca_rgb: n_samples must be >= 1, got {n_samples}")
    if layout == "DHW":
        d, h, w = f.shape
        flat = f.reshape(d, h * w).T  # (HW, D) view
    else:
        h, w, d = f.shape
        flat = f.reshape(h * w, d)
    if h * w == 0 or d == 0:
        raise ValueError(f"pca_rgb: empty feature map of shape {tuple(f.shape)}")
    flat = flat.astype(np.float32, copy=False)
    if not np.isfinite(flat).all():
        raise ValueError("pca_rgb: features contain NaN or inf")

    rng = np.random.default_rng(seed)
    n = h * w
    sample_idx = np.sort(rng.choice(n, size=n_samples, replace=False)) if n > n_samples else slice(None)
    sample = flat[sample_idx].astype(np.float64)
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    axes = vt[:3]  # (<=3, D)
    # Deterministic sign: the largest-magnitude loading of each axis is positive.
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
