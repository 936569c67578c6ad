"""The reference's multi-scale evaluator (lang-seg's ``MultiEvalModule``, spec section 7)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lseg.errors import ConfigError
from lseg.geometry import pad_to, pad_value, reference_windows, resize, scaled_size
from lseg.inference.options import ADE20K_SCALES
from lseg.models.lseg import LSeg

__all__ = ["ADE20K_SCALES", "MultiScaleConfig", "evaluate_scales", "multiscale_logits", "window_average"]


@dataclass(frozen=True)
class MultiScaleConfig:
    """The reference's ``MultiEvalModule`` settings."""

    scales: tuple[float, ...] = ADE20K_SCALES
    base_size: int = 520
    crop_size: int = 480
    stride_rate: float = 2 / 3
    flip: bool = True

    def __post_init__(self) -> None:
        # the bounds of EvalConfig's same options; past them the window loop fails without saying why
        if not self.scales or not all(_positive(s) for s in self.scales):
            raise ConfigError(f"MultiScaleConfig: scales must be one or more positive numbers, "
                              f"got {self.scales!r}")
        for name in ("base_size", "crop_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MultiScaleConfig: {name} must be a positive int, got {value!r}")
        if not (_positive(self.stride_rate) and self.stride_rate <= 1):
            raise ConfigError(f"MultiScaleConfig: stride_rate must be in (0, 1] (a fraction of crop_size), "
                              f"got {self.stride_rate!r}")
        if int(self.crop_size * self.stride_rate) < 1:  # the window step multiscale_logits takes
            raise ConfigError(f"MultiScaleConfig: a stride of stride_rate * crop_size = "
                              f"{self.stride_rate:g} * {self.crop_size} is under one pixel; raise either")


def _positive(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


def multiscale_logits(model: LSeg, x: torch.Tensor, text: torch.Tensor,
                      cfg: MultiScaleConfig = MultiScaleConfig()) -> torch.Tensor:
    """(1, 3, H, W) normalised image -> (1, K, H, W) logits summed over ``cfg.scales`` (and the mirrored
    image with ``flip``): :func:`evaluate_scales`."""

    def infer(img: torch.Tensor) -> torch.Tensor:
        out = model(img, text)
        if cfg.flip:
            out = out + model(img.flip(-1), text).flip(-1)
        return out

    black = pad_value(model.pixel_mean, model.pixel_std)  # -1 everywhere for the 0.5/0.5 normalisation
    stride = int(cfg.crop_size * cfg.stride_rate)
    return evaluate_scales(x, cfg.scales, cfg.base_size, cfg.crop_size, stride, black, infer, tuple(x.shape[-2:]))


def evaluate_scales(x: torch.Tensor, scales: tuple[float, ...], base_size: int, crop: int, stride: int,
                    black: torch.Tensor, window_map: Callable[[torch.Tensor], torch.Tensor],
                    out_size: tuple[int, int], f: int = 1) -> torch.Tensor:
    """The reference's evaluator: per scale ``s``, ``x`` resized (bilinear, align_corners=True) to long
    side ``ceil(base_size * s)``, padded with ``black`` to at least a crop, its window maps averaged
    (:func:`window_average`), cut back to the image and resized to ``out_size``; summed."""
    h, w = x.shape[-2:]
    total: torch.Tensor | None = None
    for scale in scales:
        height, width = scaled_size(h, w, math.ceil(base_size * scale))
        cur = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=True)
        m = window_average(pad_to(cur, (crop, crop), black), crop, stride, black, window_map, f)
        m = resize(m[..., : math.ceil(height / f), : math.ceil(width / f)], out_size)  # un-pad first
        total = m if total is None else total.add_(m)
        del m
    assert total is not None
    return total


def window_average(padded: torch.Tensor, crop: int, stride: int, black: torch.Tensor,
                   window_map: Callable[[torch.Tensor], torch.Tensor], f: int = 1) -> torch.Tensor:
    """The reference's window loop: ``window_map`` of each ``crop`` window of ``padded`` (at least
    ``crop`` square; steps of ``stride``, the last windows partial and padded with ``black``, not
    shifted back), averaged per pixel on a grid ``f`` times coarser than ``padded``."""
    ph, pw = padded.shape[-2:]
    canvas: torch.Tensor | None = None
    count = torch.zeros(1, 1, math.ceil(ph / f), math.ceil(pw / f), device=padded.device)
    for y0, y1, x0, x1 in reference_windows(ph, pw, crop, stride):
        e = window_map(pad_to(padded[..., y0:y1, x0:x1], (crop, crop), black))
        if canvas is None:
            canvas = torch.zeros(1, e.shape[1], *count.shape[-2:], device=padded.device)
        ys, xs = slice(y0 // f, math.ceil(y1 / f)), slice(x0 // f, math.ceil(x1 / f))
        canvas[..., ys, xs] += e[..., : ys.stop - ys.start, : xs.stop - xs.start]
        count[..., ys, xs] += 1
    assert canvas is not None
    return canvas.div_(count)
