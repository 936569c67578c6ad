"""MultiScaleConfig: settings the reference's window loop cannot take are refused when made; odd shapes."""

from __future__ import annotations

import pytest
import torch

from lseg.errors import ConfigError
from lseg.eval.config import EvalConfig
from lseg.inference.multiscale import MultiScaleConfig, multiscale_logits


@pytest.mark.parametrize(("settings", "message"), [
    ({"scales": ()}, "scales must name at least one"), ({"scales": (1.0, 0.0)}, "scales must be positive"),
    ({"scales": (-0.5,)}, "scales must be positive"), ({"scales": (float("nan"),)}, "scales must be a finite"),
    ({"scales": (float("inf"),)}, "scales must be a finite"), ({"base_size": 0}, "base_size must be at least 1"),
    ({"crop_size": 0}, "crop_size must be at least 1"), ({"crop_size": "big"}, "crop_size must be an integer"),
    ({"stride_rate": 0}, "stride_rate must be in"), ({"stride_rate": 2.0}, "stride_rate must be in"),
    ({"stride_rate": -0.5}, "stride_rate must be in"), ({"crop_size": 1, "stride_rate": 0.5}, "under one pixel"),
])
def test_multiscale_config_refuses_values_the_window_loop_cannot_take(settings, message):
    with pytest.raises(ConfigError, match=message):
        MultiScaleConfig(**settings)


def test_multiscale_config_keeps_valid_settings():
    cfg = MultiScaleConfig(scales=[0.5, 1], base_size=1, crop_size=2, stride_rate=0.5)
    assert cfg.scales == (0.5, 1.0) and cfg.crop_size == 2


def test_eval_config_refuses_no_scales_when_made():
    with pytest.raises(ConfigError, match="scales must name at least one"):
        EvalConfig(dataset="ade20k", data_root="x", scales=())


def test_a_thin_image_keeps_at_least_one_row_at_every_scale(tiny_model):
    """2 x 200 at scale 0.5 of base 64: the reference's rounding gives a 0-row image (a RuntimeError from
    F.interpolate, and `lseg segment --multiscale` stopped its whole folder); one row is kept instead."""
    cfg = MultiScaleConfig(scales=(0.5, 1.0), base_size=64, crop_size=64, flip=True)
    with torch.no_grad():
        got = multiscale_logits(tiny_model, torch.randn(1, 3, 2, 200), tiny_model.encode_text(["a", "b"]), cfg)
    assert got.shape == (1, 2, 2, 200) and bool(torch.isfinite(got).all())
