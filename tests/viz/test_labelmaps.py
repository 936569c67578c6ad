"""Tests for lseg.viz.labelmaps: label map files, score files, heatmap names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lseg.viz import heatmap_path, palette, read_label_names, save_label_map, save_scores

RNG = np.random.default_rng(7)


# ------------------------------------------------------------------------------------------ label maps


def test_save_label_map_keeps_ids_palette_and_names(tmp_path: Path) -> None:
    ids = RNG.integers(0, 30, size=(9, 11))
    labels = [f"l{i}" for i in range(30)]
    path = save_label_map(tmp_path / "ids.png", ids, labels)
    with Image.open(path) as img:
        assert img.mode == "P" and img.size == (11, 9)
        np.testing.assert_array_equal(np.asarray(img), ids)
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), palette(30)[ids])
    assert read_label_names(path) == labels
    many = np.array([[0, 300], [1000, 2]])
    with Image.open(save_label_map(tmp_path / "many.png", many, [str(i) for i in range(1001)])) as img:
        np.testing.assert_array_equal(np.asarray(img), many)  # 16-bit grey


def test_save_label_map_inputs_and_errors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    ids = torch.tensor([[0, 1], [2, 3]])
    for given in (ids, ids[None]):  # a tensor, and 1xHxW
        with Image.open(save_label_map(tmp_path / "t.png", given, list("abcd"))) as img:
            np.testing.assert_array_equal(np.asarray(img), ids.numpy())
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        save_label_map(tmp_path / "x.png", np.array([[4]]), list("abcd"))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        save_label_map(tmp_path / "x.png", np.array([[-1]]), list("abcd"))
    with pytest.raises(ValueError, match="integer"):
        save_label_map(tmp_path / "x.png", np.zeros((2, 2), np.float32), ["a"])
    with pytest.raises(ValueError, match="HxW"):
        save_label_map(tmp_path / "x.png", np.zeros((2, 2, 2), np.int64), ["a"])


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
    # docs/cli.md said `<i>` has two digits: three above 100 labels (names still sort in label order)
    assert heatmap_path(tmp_path / "p", 7, "x", count=101).name == "p_heat_007_x.png"


def test_a_labels_string_is_a_comma_separated_list_not_one_label_per_character(tmp_path: Path) -> None:
    ids = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    assert read_label_names(save_label_map(tmp_path / "m.png", ids, "dog, cat")) == ["dog", "cat"]
    probs = np.full((2, 2, 2), 0.5, dtype=np.float32)
    with np.load(save_scores(tmp_path / "s.npz", probs, '"salt, pepper", sky')) as f:
        assert f["labels"].tolist() == ["salt, pepper", "sky"]
