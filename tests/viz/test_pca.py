"""Tests for lseg.viz.pca: feature PCA."""

from __future__ import annotations

import numpy as np
import pytest

from lseg.viz import pca_rgb

RNG = np.random.default_rng(7)


# ------------------------------------------------------------------------------------------ PCA


def _clustered_features(d: int = 64, h: int = 12, w: int = 15) -> tuple[np.ndarray, np.ndarray]:
    centres = RNG.normal(size=(3, d)) * 5
    ids = np.zeros((h, w), np.int64)
    ids[:, 5:10] = 1
    ids[:, 10:] = 2
    feats = centres[ids] + RNG.normal(size=(h, w, d)) * 0.05  # HxWxD
    return feats.transpose(2, 0, 1).astype(np.float32), ids  # DxHxW


def test_pca_rgb_separates_clusters() -> None:
    feats, ids = _clustered_features()
    rgb = pca_rgb(feats)
    assert rgb.shape == (12, 15, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    # 3 centred clusters span 2 dimensions: channels 0-1 carry them, channel 2 is (stretched) noise.
    top2 = rgb[..., :2].astype(float)
    means = [top2[ids == k].mean(axis=0) for k in range(3)]
    spreads = [np.abs(top2[ids == k] - means[k]).max() for k in range(3)]
    gaps = [np.abs(means[a] - means[b]).max() for a, b in [(0, 1), (0, 2), (1, 2)]]
    assert max(spreads) < 20 and min(gaps) > 100
    assert (rgb[..., :2].reshape(-1, 2).min(axis=0) == 0).all()  # min-max per channel
    assert (rgb[..., :2].reshape(-1, 2).max(axis=0) == 255).all()


def test_pca_rgb_deterministic_numpy_and_torch() -> None:
    torch = pytest.importorskip("torch")
    feats, _ = _clustered_features()
    a = pca_rgb(feats, n_samples=50)
    np.testing.assert_array_equal(a, pca_rgb(feats, n_samples=50))
    np.testing.assert_array_equal(a, pca_rgb(torch.from_numpy(feats)[None], n_samples=50))
    # The sign convention makes the result independent of the features' overall sign flips
    # only up to inversion; what matters is that it does not depend on SVD internals:
    b = pca_rgb(feats.astype(np.float64), n_samples=50)
    assert np.abs(a.astype(int) - b).max() <= 1


def test_pca_rgb_degenerate_inputs() -> None:
    np.testing.assert_array_equal(pca_rgb(np.ones((8, 4, 4), np.float32)), np.zeros((4, 4, 3), np.uint8))
    one = pca_rgb(np.arange(16, dtype=np.float32).reshape(1, 4, 4))  # D = 1
    assert one[..., 0].min() == 0 and one[..., 0].max() == 255 and (one[..., 1:] == 0).all()
    assert pca_rgb(RNG.normal(size=(2, 1, 1))).shape == (1, 1, 3)
    with pytest.raises(ValueError, match="NaN"):
        pca_rgb(np.full((3, 2, 2), np.nan))
    with pytest.raises(ValueError, match="3-D"):
        pca_rgb(np.zeros((2, 2)))
