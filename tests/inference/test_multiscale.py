"""MultiScaleConfig: settings the reference's window loop cannot take are refused when made."""

from __future__ import annotations

import pytest

from lseg.errors import ConfigError
from lseg.inference.multiscale import MultiScaleConfig


@pytest.mark.parametrize("settings", [
    {"scales": ()}, {"scales": (1.0, 0.0)}, {"scales": (-0.5,)}, {"scales": (float("nan"),)},
    {"base_size": 0}, {"crop_size": 0}, {"stride_rate": 0}, {"stride_rate": 2.0}, {"stride_rate": -0.5},
    {"crop_size": 1, "stride_rate": 0.5},
])
def test_multiscale_config_refuses_values_the_window_loop_cannot_take(settings):
    with pytest.raises(ConfigError, match="MultiScaleConfig: "):
        MultiScaleConfig(**settings)


def test_multiscale_config_keeps_valid_settings():
    assert MultiScaleConfig(scales=(0.5, 1), base_size=1, crop_size=2, stride_rate=0.5).scales == (0.5, 1)
