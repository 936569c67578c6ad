"""Tests for lseg.viz.colors: palette fidelity, the viridis colour map."""

from __future__ import annotations

import numpy as np
import pytest

from lseg.viz import VIRIDIS_ANCHORS, colormap, palette, voc_palette


def _reference_palette(num_cls: int) -> list[int]:
    """lang-seg's ``get_new_pallete`` (modules/models/lseg_net / test scripts), verbatim logic."""
    n = num_cls
    pallete = [0] * (n * 3)
    for j in range(n):
        lab = j
        pallete[j * 3 + 0] = 0
        pallete[j * 3 + 1] = 0
        pallete[j * 3 + 2] = 0
        i = 0
        while lab > 0:
            pallete[j * 3 + 0] |= ((lab >> 0) & 1) << (7 - i)
            pallete[j * 3 + 1] |= ((lab >> 1) & 1) << (7 - i)
            pallete[j * 3 + 2] |= ((lab >> 2) & 1) << (7 - i)
            i = i + 1
            lab >>= 3
    return pallete


# ------------------------------------------------------------------------------------------ palette


def test_voc_palette_matches_reference() -> None:
    for n in (0, 1, 21, 150, 256, 1000):
        p = voc_palette(n)
        assert p.shape == (n, 3) and p.dtype == np.uint8
        assert p.reshape(-1).tolist() == _reference_palette(n)
    assert voc_palette(5).tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]


def test_palette_colours_unique() -> None:
    p = palette(4096)
    assert len({tuple(c) for c in p.tolist()}) == 4096


def test_palette_rejects_bad_n() -> None:
    for bad in (-1, 1.5, True, (1 << 24) + 1):
        with pytest.raises(ValueError, match="palette"):
            palette(bad)  # type: ignore[arg-type]


def test_colormap_is_viridis_with_increasing_lightness() -> None:
    ramp = colormap(np.linspace(0, 1, 256))
    assert ramp.shape == (256, 3) and ramp.dtype == np.uint8
    np.testing.assert_array_equal(ramp[0], VIRIDIS_ANCHORS[0])
    np.testing.assert_array_equal(ramp[-1], VIRIDIS_ANCHORS[-1])
    luma = ramp.astype(float) @ [0.2126, 0.7152, 0.0722]
    assert (np.diff(luma) >= -0.5).all() and luma[-1] - luma[0] > 150
    np.testing.assert_array_equal(colormap(np.array([-5.0, 7.0])), colormap(np.array([0.0, 1.0])))
    np.testing.assert_array_equal(colormap(np.array([5.0]), vmin=0, vmax=10)[0], ramp[128])
    with pytest.raises(ValueError, match="NaN"):
        colormap(np.array([np.nan]))
    with pytest.raises(ValueError, match="vmax"):
        colormap(np.zeros(2), vmin=1, vmax=1)
