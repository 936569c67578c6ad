"""Tests for lseg.viz: palette fidelity, colorize, overlay + legend, heatmaps, feature PCA, grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lseg.io import load_image, save_png
from lseg.viz import (
    VIRIDIS_ANCHORS,
    colorize,
    colorize_rgb,
    colormap,
    grid,
    heatmaps,
    overlay,
    palette,
    pca_rgb,
    voc_palette,
)

RNG = np.random.default_rng(7)


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
        import lseg.fonts

        monkeypatch.setattr(lseg.fonts, "font_files", lambda: ())
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


def test_pca_rgb_deterministic_and_layouts() -> None:
    torch = pytest.importorskip("torch")
    feats, _ = _clustered_features()
    a = pca_rgb(feats, n_samples=50)
    np.testing.assert_array_equal(a, pca_rgb(feats, n_samples=50))
    np.testing.assert_array_equal(a, pca_rgb(np.ascontiguousarray(feats.transpose(1, 2, 0)), layout="HWD",
                                             n_samples=50))
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
    with pytest.raises(ValueError, match="layout"):
        pca_rgb(np.zeros((3, 2, 2)), layout="CHW")  # type: ignore[arg-type]


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
