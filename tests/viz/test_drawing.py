"""Tests for lseg.viz.drawing: overlay + legend, heatmaps, grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lseg.io import load_image, save_png
from lseg.viz import VIRIDIS_ANCHORS, colormap, grid, heatmaps, overlay, palette

RNG = np.random.default_rng(7)


# ------------------------------------------------------------------------------------------ overlay


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """A 60x90 photo and a label map: class 2 largest, then 1, then 3; class 0 absent."""
    photo = RNG.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    ids = np.full((60, 90), 2, np.int64)
    ids[:, :30] = 1
    ids[:10, 80:] = 3
    return photo, ids


def test_overlay_blending() -> None:
    photo, ids = _scene()
    labels = ["zero", "one", "two", "three"]
    assert np.array_equal(np.asarray(overlay(photo, ids, labels, alpha=0.0, legend=False)), photo)
    full = np.asarray(overlay(photo, ids, labels, alpha=1.0, legend=False))
    np.testing.assert_array_equal(full, palette(4)[ids])
    half = np.asarray(overlay(photo, ids, labels, alpha=0.5, legend=False)).astype(int)
    expected = np.rint(0.5 * photo + 0.5 * palette(4)[ids].astype(float)).astype(int)
    assert np.abs(half - expected).max() <= 1


def test_overlay_ignores_out_of_range_ids() -> None:
    photo, ids = _scene()
    ids[0, 0], ids[1, 1] = 255, -1  # ignore index / negative: left uncoloured
    out = np.asarray(overlay(photo, ids, ["a", "b", "c", "d"], alpha=1.0, legend=False))
    np.testing.assert_array_equal(out[0, 0], photo[0, 0])
    np.testing.assert_array_equal(out[1, 1], photo[1, 1])


def test_overlay_accepts_pil_and_tensors() -> None:
    torch = pytest.importorskip("torch")
    photo, ids = _scene()
    a = overlay(Image.fromarray(photo), torch.from_numpy(ids), ["a", "b", "c", "d"], legend=False)
    b = overlay(photo, ids, ["a", "b", "c", "d"], legend=False)
    assert a.mode == "RGB" and np.array_equal(np.asarray(a), np.asarray(b))


def _swatch_order(img: Image.Image, x0: int, colours: np.ndarray) -> list[int]:
    """Class ids in the order their exact colour first appears (top to bottom) right of ``x0``."""
    panel = np.asarray(img)[:, x0:]
    order: list[int] = []
    for y in range(panel.shape[0]):
        for k, colour in enumerate(colours):
            if k not in order and (panel[y] == colour).all(axis=1).any():
                order.append(k)
    return order


def test_overlay_legend_lists_every_label_in_index_order() -> None:
    photo, ids = _scene()
    labels = ["zero", "one", "two", "three"]
    out = overlay(photo, ids, labels)
    assert out.mode == "RGB" and out.width > 90 and out.height >= 60
    np.testing.assert_array_equal(np.asarray(out)[:60, :90], np.asarray(overlay(photo, ids, labels,
                                                                                  legend=False)))
    assert _swatch_order(out, 90, palette(4)) == [0, 1, 2, 3]  # class 0 is absent and still listed


def test_overlay_legend_taller_than_image() -> None:
    ids = np.arange(40).reshape(5, 8)  # 40 classes on a 5x8 image
    out = overlay(np.zeros((5, 8, 3), np.uint8), ids, [f"class {i}" for i in range(40)])
    assert out.height > 5 and out.width > 8


@pytest.mark.parametrize("without_font_packages", [False, True])
def test_overlay_unicode_labels_never_crash(monkeypatch: pytest.MonkeyPatch, without_font_packages: bool) -> None:
    if without_font_packages:  # neither matplotlib's DejaVu nor mplfonts: Pillow's own font
        import lseg.viz.fonts

        monkeypatch.setattr(lseg.viz.fonts, "font_files", lambda: ())
    labels = ["🐶 dog", "猫", "Straße", "", "tab\tand\nnewline", "\x00nul", "e\u0301", "\ud800"]
    ids = np.arange(len(labels)).repeat(4).reshape(4, -1)
    out = overlay(np.full((4, 8, 3), 90, np.uint8), ids, labels)
    assert out.mode == "RGB" and out.width > 8


def test_overlay_errors() -> None:
    photo, ids = _scene()
    with pytest.raises(ValueError, match="60x90"):
        overlay(photo, ids[:, :-1], ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="alpha"):
        overlay(photo, ids, ["a", "b", "c", "d"], alpha=1.5)
    with pytest.raises(ValueError, match="integer"):
        overlay(photo, ids.astype(np.float32), ["a", "b", "c", "d"])


def test_overlay_without_labels_is_the_photo() -> None:
    photo, ids = _scene()
    assert np.array_equal(np.asarray(overlay(photo, ids, [])), photo)


# ------------------------------------------------------------------------------------------ heatmaps


def test_heatmaps() -> None:
    probs = np.zeros((3, 4, 5), np.float32)
    probs[0] = 1.0
    probs[1, :, :2] = 0.5
    maps = heatmaps(probs, ["sky", "dog", "cat"])
    assert list(maps) == ["sky", "dog", "cat"]
    for im in maps.values():
        assert im.mode == "RGB" and im.size == (5, 4)
    np.testing.assert_array_equal(np.asarray(maps["sky"])[0, 0], VIRIDIS_ANCHORS[-1])
    np.testing.assert_array_equal(np.asarray(maps["cat"])[0, 0], VIRIDIS_ANCHORS[0])
    assert not np.array_equal(np.asarray(maps["dog"])[0, 0], np.asarray(maps["dog"])[0, 4])


def test_heatmaps_over_image_and_errors() -> None:
    torch = pytest.importorskip("torch")
    photo = RNG.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    probs = torch.rand(1, 2, 4, 5)  # batch of one, torch
    maps = heatmaps(probs, ["a", "b"], image=photo, alpha=0.0)
    np.testing.assert_array_equal(np.asarray(maps["a"]), photo)
    blended = np.asarray(heatmaps(probs, ["a", "b"], image=photo, alpha=0.5)["b"]).astype(int)
    expected = 0.5 * photo + 0.5 * colormap(probs[0, 1].numpy())
    assert np.abs(blended - expected).max() <= 1
    with pytest.raises(ValueError, match="2 score maps but 3 labels"):
        heatmaps(probs, ["a", "b", "c"])
    with pytest.raises(ValueError, match="distinct"):
        heatmaps(probs, ["a", "a"])
    with pytest.raises(ValueError, match="upsample"):
        heatmaps(probs, ["a", "b"], image=np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="KxHxW"):
        heatmaps(np.zeros((4, 5)), ["a"])


# ------------------------------------------------------------------------------------------ grid


def test_grid_layout() -> None:
    images = [np.full((10, 20, 3), 40 * i, np.uint8) for i in range(5)]
    out = grid(images, ncols=2, pad=4)
    assert out.mode == "RGB" and out.size == (4 + 2 * 24, 4 + 3 * 14)
    a = np.asarray(out)
    np.testing.assert_array_equal(a[4, 28], [40, 40, 40])  # row 0, col 1
    np.testing.assert_array_equal(a[4 + 2 * 14, 4], [160, 160, 160])  # row 2, col 0
    np.testing.assert_array_equal(a[0, 0], [255, 255, 255])
    assert grid(images[:2], ncols=8, pad=0).size == (40, 10)  # never more columns than images


def test_grid_mixed_inputs_centred() -> None:
    small = Image.new("RGB", (2, 2), (1, 2, 3))
    big = np.zeros((6, 6, 3), np.uint8)
    out = np.asarray(grid({"a": small, "b": big}, ncols=2, pad=0, background=(9, 9, 9)))
    assert out.shape == (6, 12, 3)
    np.testing.assert_array_equal(out[2:4, 2:4].reshape(-1, 3), [[1, 2, 3]] * 4)
    np.testing.assert_array_equal(out[0, 0], [9, 9, 9])
    with pytest.raises(ValueError, match="no images"):
        grid([])
    with pytest.raises(ValueError, match="ncols"):
        grid([big], ncols=0)


def test_outputs_save_as_png(tmp_path: Path) -> None:
    photo, ids = _scene()
    save_png(tmp_path / "overlay.png", overlay(photo, ids, ["a", "b", "c", "d"]))
    save_png(tmp_path / "ids.png", ids.astype(np.uint8), palette=palette(4))
    assert load_image(tmp_path / "overlay.png").shape[0] >= 60
    with Image.open(tmp_path / "ids.png") as im:
        np.testing.assert_array_equal(np.asarray(im), ids)
