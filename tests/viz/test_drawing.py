"""Tests for lseg.viz.drawing: overlay + legend, heatmaps, grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lseg.io import load_image
from lseg.viz import (
    VIRIDIS_ANCHORS,
    colormap,
    grid,
    heatmaps,
    legend_font_size,
    legend_limits,
    overlay,
    palette,
    save_label_map,
)
from lseg.viz.drawing import _Item, _legend_layout

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


# Issue 23, item 18: the legend is sized from the photo it sits beside and stays within a band.

LONG_LABEL = ("a red bicycle leaning against a weathered brick wall beside a green door under a striped awning "
              "on a sunny afternoon, " * 4)[:300]
COMMON = ["sky", "building", "tree", "road", "sidewalk", "person", "car", "bicycle", "traffic light", "pole",
          "grass", "dog", "cat", "bench", "window", "door", "sign", "fence", "water", "other"]


def _bands(w: int, h: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey ``w x h`` photo and ``k`` vertical bands of labels (all present)."""
    ids = np.minimum(np.arange(w) * k // max(w, 1), k - 1)
    return np.full((h, w, 3), 100, np.uint8), np.broadcast_to(ids, (h, w))


def _within_limits(out: Image.Image, w: int, h: int) -> bool:
    """The overlay is the photo plus one band no larger than legend_limits, on the right or below."""
    right, below = legend_limits((w, h))["right"], legend_limits((w, h))["below"]
    return (out.width - w <= right[0] and out.height <= max(h, right[1])) or \
        (out.width <= max(w, below[0]) and out.height - h <= below[1])


def test_legend_font_size_from_the_short_side() -> None:
    assert legend_font_size((640, 480)) == 16 and legend_font_size((6000, 4000)) == 133
    assert legend_font_size((4000, 40)) == 12 and legend_font_size((40, 4000)) == 12  # not from the long side
    assert legend_limits((451, 300)) == {"right": (225, 300), "below": (451, 192)}
    assert legend_limits((4000, 40)) == {"right": (2000, 192), "below": (4000, 192)}


def test_overlay_long_label_wrapped_not_widened() -> None:
    photo, ids = _bands(451, 300, 4)  # was 2648 px wide: the 300 characters on one line
    out = overlay(photo, ids, ["sky", LONG_LABEL, "grass", "other"])
    assert out.height == 300 and 451 < out.width <= 451 + 225
    layout = _legend_layout((451, 300), [_Item((1, 2, 3), t, 0.25) for t in ["sky", LONG_LABEL, "grass", "other"]], 0)
    lines = {item.label: lines for item, lines, _, _ in layout.placed}
    assert lines["sky"] == ["sky"] and len(lines[LONG_LABEL]) == 2 and lines[LONG_LABEL][-1].endswith("\u2026")
    assert LONG_LABEL.startswith(lines[LONG_LABEL][0])


def test_overlay_of_a_strip_keeps_its_width() -> None:
    photo, ids = _bands(4000, 40, 4)  # was 4681x753: 89 px text sized from the 4000 px side
    out = overlay(photo, ids, ["sky", "building", "tree", "other"])
    assert out.width == 4000 and 40 < out.height <= 40 + 2 * 6 + 20  # one row of 12 px entries below
    tall = overlay(*_bands(40, 4000, 4), ["sky", "building", "tree", "other"])
    assert tall.height == 4000 and 40 < tall.width <= 40 + 16 * 12  # a column on the right


@pytest.mark.parametrize("size", [(8, 5), (80, 60), (100, 30), (451, 300), (640, 480), (4000, 40), (40, 4000),
                                  (1920, 1080)])
@pytest.mark.parametrize("k", [4, 40, 300])
def test_overlay_size_within_legend_limits(size: tuple[int, int], k: int) -> None:
    w, h = size
    labels = [f"label {i}" + (" with a longer description of the thing" if i % 5 == 0 else "") for i in range(k)]
    out = overlay(*_bands(w, h, k), labels)
    assert _within_limits(out, w, h), (size, k, out.size)
    np.testing.assert_array_equal(np.asarray(out)[:h, :w], np.asarray(overlay(*_bands(w, h, k), labels, legend=False)))


@pytest.mark.parametrize("k", [4, 20])
def test_legend_readable_for_a_normal_photo(k: int) -> None:
    """640x480 with 4-20 labels: every label, one line each, 16 px text, one column on the right."""
    out = overlay(*_bands(640, 480, k), COMMON[-k:])
    assert out.height == 480 and 640 + 100 < out.width <= 640 + 200
    assert _swatch_order(out, 640, palette(k)) == list(range(k))
    layout = _legend_layout((640, 480), [_Item((1, 2, 3), t, 1 / k) for t in COMMON[-k:]], 0)
    assert layout.side == "right" and layout.metrics.size == 16 and len(layout.placed) == k
    assert {x for _, _, x, _ in layout.placed} == {layout.metrics.pad}  # one column
    assert all(len(lines) == 1 for _, lines, _, _ in layout.placed)


def test_legend_too_many_labels_shrinks_then_lists_the_largest() -> None:
    k = 300
    items = [_Item((1, 2, 3), f"label number {i}", (i + 1) / (k * (k + 1) / 2)) for i in range(k)]
    layout = _legend_layout((640, 480), items, 0)
    shown = [item for item, _, _, _ in layout.placed]
    assert layout.metrics.size == 12  # shrunk from 16 before leaving labels out
    assert shown[-1].colour is None and shown[-1].label == f"+ {k - len(shown) + 1} more labels"
    assert [it.label for it in shown[:3]] == ["label number 299", "label number 298", "label number 297"]
    limit_w, limit_h = legend_limits((640, 480))[layout.side]  # the side that shows more
    assert layout.width <= limit_w and layout.height <= limit_h


def test_heatmap_caption_cuts_a_long_name() -> None:
    maps = heatmaps(np.zeros((1, 60, 90), np.float32), [LONG_LABEL], annotate=True)
    assert maps[LONG_LABEL].width == 90 and maps[LONG_LABEL].height < 60 + 60


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
    overlay(photo, ids, ["a", "b", "c", "d"]).save(tmp_path / "overlay.png")
    save_label_map(tmp_path / "ids.png", ids, ["a", "b", "c", "d"])
    assert load_image(tmp_path / "overlay.png").shape[0] >= 60
    with Image.open(tmp_path / "ids.png") as im:
        np.testing.assert_array_equal(np.asarray(im), ids)


def test_a_labels_string_is_a_comma_separated_list_not_one_label_per_character() -> None:
    photo = np.zeros((40, 60, 3), dtype=np.uint8)
    ids = np.zeros((40, 60), dtype=np.uint8)
    ids[:, 30:] = 1
    as_list = np.asarray(overlay(photo, ids, ["dog", "cat"]))
    np.testing.assert_array_equal(np.asarray(overlay(photo, ids, "dog, cat")), as_list)
    probs = np.full((2, 40, 60), 0.5, dtype=np.float32)
    assert list(heatmaps(probs, "dog, cat")) == ["dog", "cat"]
