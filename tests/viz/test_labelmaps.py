"""Tests for lseg.viz.labelmaps: colorize, colorize_rgb, score files, heatmap names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lseg.viz import colorize, colorize_rgb, heatmap_path, palette, save_scores

RNG = np.random.default_rng(7)


# ------------------------------------------------------------------------------------------ colorize


def test_colorize_keeps_ids_and_palette(tmp_path: Path) -> None:
    ids = RNG.integers(0, 30, size=(9, 11))
    img = colorize(ids)
    assert img.mode == "P" and img.size == (11, 9)
    np.testing.assert_array_equal(np.asarray(img), ids)
    np.testing.assert_array_equal(np.array(img.getpalette()[: 3 * 256]).reshape(256, 3), palette(256))
    np.testing.assert_array_equal(np.asarray(img.convert("RGB")), palette(30)[ids])
    img.save(tmp_path / "ids.png")
    with Image.open(tmp_path / "ids.png") as reread:
        np.testing.assert_array_equal(np.asarray(reread), ids)


def test_colorize_inputs_and_errors() -> None:
    torch = pytest.importorskip("torch")
    ids = torch.tensor([[0, 1], [2, 255]])
    np.testing.assert_array_equal(np.asarray(colorize(ids)), ids.numpy())
    np.testing.assert_array_equal(np.asarray(colorize(ids[None])), ids.numpy())  # 1xHxW
    with pytest.raises(ValueError, match="colorize_rgb"):
        colorize(np.array([[256]]))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        colorize(np.array([[-1]]))
    with pytest.raises(ValueError, match="integer"):
        colorize(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="HxW"):
        colorize(np.zeros((2, 2, 2), np.int64))


def test_colorize_rgb_many_classes() -> None:
    ids = np.array([[0, 300], [1000, -1]])
    rgb = colorize_rgb(ids)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    p = palette(1001)
    np.testing.assert_array_equal(rgb[0, 1], p[300])
    np.testing.assert_array_equal(rgb[1, 0], p[1000])
    np.testing.assert_array_equal(rgb[1, 1], [0, 0, 0])


# ------------------------------------------------------------------------------------------ files


def test_save_scores_writes_float16_probs_and_labels(tmp_path: Path) -> None:
    probs = RNG.random((3, 5, 7)).astype(np.float32)
    path = save_scores(tmp_path / "a_scores.npz", probs, ["sky", "big tree", "café"])
    with np.load(path) as z:  # plain arrays: no pickle needed to read it
        assert z["probs"].dtype == np.float16 and np.allclose(z["probs"], probs, atol=1e-3)
        assert z["labels"].tolist() == ["sky", "big tree", "café"]
    assert [p.name for p in tmp_path.iterdir()] == ["a_scores.npz"]  # written atomically: no temp left


def test_heatmap_path_names_the_label_safely(tmp_path: Path) -> None:
    assert heatmap_path(tmp_path / "p", 2, "big tree") == tmp_path / "p_heat_02_big_tree.png"
    assert heatmap_path(tmp_path / "p", 0, "../x").name == "p_heat_00_x.png"
