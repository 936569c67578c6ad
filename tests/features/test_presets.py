"""Preprocessing presets against explicit computations (lseg.features.presets)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lseg
from lseg.features import PRESETS, FeatureExtractor, get_preset
from lseg.inference.predictor import MultiScaleConfig, multiscale_logits


@pytest.fixture(scope="module")
def predictor() -> lseg.LSegPredictor:
    torch.manual_seed(0)
    return lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=64)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    """ToTensor + Normalize(0.5, 0.5), as the consumers' transforms (and the ViT models' own)."""
    return (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0 - 0.5) / 0.5


def test_named_presets_are_the_documented_recipes() -> None:
    ref = PRESETS["reference"]
    assert (ref.base_size, ref.crop_size, int(ref.crop_size * ref.stride_rate)) == (520, 480, 320)
    assert ref.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) and ref.flip and ref.output == "original"
    assert PRESETS["reference-ss"].scales == (1.0,) and PRESETS["reference-ss"].flip
    osc = PRESETS["openscene"]
    assert (osc.base_size, osc.crop_size, osc.scales, osc.flip, osc.half_res_windows) == (None, None, (1.0,), True, True)
    assert osc.mean == osc.std == (0.5, 0.5, 0.5)
    vl = PRESETS["vlmaps"]
    assert (vl.base_size, vl.crop_size, vl.scales, vl.flip, vl.output) == (520, 480, (1.0,), False, "input")
    assert vl.mean == vl.std == (0.5, 0.5, 0.5)
    assert PRESETS["ours"].engine == "predictor" and PRESETS["ours"].output == "half"
    with pytest.raises(lseg.LSegError, match="unknown preset"):
        get_preset("openseg")


def test_openscene_is_half_res_of_2x_padded_square_plus_flip(predictor: lseg.LSegPredictor) -> None:
    rgb = _image(24, 40)
    ex = FeatureExtractor(predictor, "openscene")
    got = ex([rgb])[0]
    # OpenScene: crop = base = 2 x long side (80): resize to 48x80 (align_corners=True), pad to 80x80 with
    # -mean/std = -1, half-resolution features of the window + the mirrored window's, cropped to 24x40.
    model = predictor.model
    with torch.inference_mode():
        x = F.interpolate(_normalised(rgb), size=(48, 80), mode="bilinear", align_corners=True)
        square = F.pad(x, (0, 0, 0, 32), value=-1.0)
        feats = model.encode_image(square) + model.encode_image(square.flip(-1)).flip(-1)
        want = F.normalize(feats[..., :24, :40], dim=1)[0]
    assert got.shape == (32, 24, 40) == (32, *rgb.shape[:2])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def _direct_evaluator(model, rgb, base, crop, scales, flip, out_size):  # type: ignore[no-untyped-def]
    """The reference's MultiEvalModule on features, written out: per scale resize, pad, slide,
    upsample x2 each window, average, crop, resize to out_size, sum; then normalise."""
    h, w = rgb.shape[:2]
    x = _normalised(rgb)
    stride = int(crop * 2 / 3)
    total = 0
    for s in scales:
        long = math.ceil(base * s)
        height, width = (long, int(w * long / h + 0.5)) if h > w else (int(h * long / w + 0.5), long)
        cur = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=True)
        ph, pw = max(height, crop), max(width, crop)
        cur = F.pad(cur, (0, pw - width, 0, ph - height), value=-1.0)
        acc = torch.zeros(1, 32, ph, pw)
        cnt = torch.zeros(1, 1, ph, pw)
        for iy in range(math.ceil((ph - crop) / stride) + 1):
            for ix in range(math.ceil((pw - crop) / stride) + 1):
                y0, x0 = iy * stride, ix * stride
                y1, x1 = min(y0 + crop, ph), min(x0 + crop, pw)
                win = F.pad(cur[..., y0:y1, x0:x1], (0, crop - (x1 - x0), 0, crop - (y1 - y0)), value=-1.0)

                def up(t):  # type: ignore[no-untyped-def]
                    return F.interpolate(model.encode_image(t), scale_factor=2, mode="bilinear", align_corners=True)

                out = up(win) + (up(win.flip(-1)).flip(-1) if flip else 0)
                acc[..., y0:y1, x0:x1] += out[..., : y1 - y0, : x1 - x0]
                cnt[..., y0:y1, x0:x1] += 1
        m = (acc / cnt)[..., :height, :width]
        total = total + F.interpolate(m, size=out_size, mode="bilinear", align_corners=True)
    return F.normalize(total, dim=1)[0]


def test_reference_evaluator_matches_direct_computation_and_its_logits(predictor: lseg.LSegPredictor) -> None:
    # The reference geometry at a small size (the tiny model is slow at 520): 2 scales, 2x2 windows.
    preset = dataclasses.replace(get_preset("reference"), base_size=80, crop_size=64, scales=(0.75, 1.25))
    rgb = _image(30, 50, seed=1)
    got = FeatureExtractor(predictor, preset)([rgb])[0]
    with torch.inference_mode():
        want = _direct_evaluator(predictor.model, rgb, 80, 64, (0.75, 1.25), True, (30, 50))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        # Scoring the features gives the reference evaluator's prediction (lseg.inference.predictor, tested
        # against lang-seg): its logits are logit_scale * <text, un-normalised summed features>.
        text = predictor.embed_text(["sky", "grass", "tree", "road"])
        cfg = MultiScaleConfig(scales=(0.75, 1.25), base_size=80, crop_size=64, flip=True)
        logits = multiscale_logits(predictor.model, _normalised(rgb), text, cfg)[0]
    sims = torch.einsum("dhw,kd->khw", got, text)
    assert (sims.argmax(0) == logits.argmax(0)).float().mean() > 0.999
    # per pixel, the logits are the similarities times one positive factor (the feature norm)
    torch.testing.assert_close(F.normalize(logits, dim=0), F.normalize(sims, dim=0), atol=1e-4, rtol=0)


def test_vlmaps_keeps_the_working_grid_and_unpads_before_resizing(predictor: lseg.LSegPredictor) -> None:
    preset = dataclasses.replace(get_preset("vlmaps"), base_size=80, crop_size=64)
    rgb = _image(30, 50, seed=2)
    ex = FeatureExtractor(predictor, preset)
    got = ex([rgb])[0]
    assert got.shape[1:] == (48, 80) == ex.working_size(30, 50)  # long side = base, no resize back
    with torch.inference_mode():
        want = _direct_evaluator(predictor.model, rgb, 80, 64, (1.0,), False, (48, 80))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        # another output size: the un-padded working map, resized straight to it
        small = FeatureExtractor(predictor, preset, resolution="20x30")([rgb])[0]
        torch.testing.assert_close(small, _direct_evaluator(predictor.model, rgb, 80, 64, (1.0,), False, (20, 30)),
                                   atol=1e-5, rtol=0)


def test_ours_resolutions(predictor: lseg.LSegPredictor) -> None:
    rgb = _image(50, 70, seed=3)
    emb = predictor.embed_image(rgb)  # working 46x64, half 23x32
    half = FeatureExtractor(predictor)([rgb])[0]
    torch.testing.assert_close(half, F.normalize(emb.pixels, dim=0), atol=1e-6, rtol=0)
    for res, hw in {"input": (46, 64), "original": (50, 70), "20x30": (20, 30)}.items():
        ex = FeatureExtractor(predictor, "ours", res)
        got = ex([rgb])[0]
        assert got.shape == (32, *hw) and ex.output_size(50, 70) == hw
        ref = F.interpolate(emb.pixels[None], scale_factor=2, mode="bilinear", align_corners=True)[..., :46, :64]
        ref = F.normalize(F.interpolate(ref, size=hw, mode="bilinear", align_corners=True), dim=1)[0]
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_batched_frames_equal_one_by_one(predictor: lseg.LSegPredictor) -> None:
    frames = [_image(48, 64, seed=s) for s in range(3)] + [_image(40, 40, seed=9)]
    batched = predictor.embed_images(frames)
    for f, e in zip(frames, batched):
        single = predictor.embed_image(f)
        assert e.input_size == single.input_size and e.image_size == single.image_size
        torch.testing.assert_close(e.pixels, single.pixels, atol=1e-5, rtol=0)
