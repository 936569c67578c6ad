"""The reference's multi-scale evaluator (lang-seg's ``MultiEvalModule``, spec section 7)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lseg.geometry import pad_to, pad_value, reference_windows, resize, scaled_size
from lseg.inference.options import ADE20K_SCALES, some_scales
from lseg.models.lseg import LSeg
from lseg.options import CheckedOptions, OptionError, option

__all__ = ["ADE20K_SCALES", "MultiScaleConfig", "evaluate_scales", "multiscale_logits", "window_average"]


@dataclass(frozen=True)
class MultiScaleConfig(CheckedOptions):
    """The reference's ``MultiEvalModule`` settings."""

    scales: tuple[float, ...] = option(ADE20K_SCALES, gt=0, check=some_scales)
    base_size: int = option(520, min=1)
    crop_size: int = option(480, min=1)
    stride_rate: float = option(2 / 3, gt=0, max=1)
    flip: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.crop_size * self.stride_rate) < 1:  # the window step multiscale_logits takes
            raise OptionError(f"a stride of `stride_rate` * `crop_size` = {self.stride_rate:g} * {self.crop_size} "
                              "is under one pixel; raise either")


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
