"""The reference's multi-scale evaluator (lang-seg's ``MultiEvalModule``): scales 0.5-1.75 of base
520, 480 crops with stride 320, flip, logits summed (spec section 7)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lseg.geometry import pad_to, pad_value, reference_windows, resize, scaled_size
from lseg.inference.options import ADE20K_SCALES
from lseg.models.lseg import LSeg

__all__ = ["ADE20K_SCALES", "MultiScaleConfig", "multiscale_logits", "window_average"]


@dataclass(frozen=True)
class MultiScaleConfig:
    """The reference's ``MultiEvalModule`` settings."""

    scales: tuple[float, ...] = ADE20K_SCALES
    base_size: int = 520
    crop_size: int = 480
    stride_rate: float = 2 / 3
    flip: bool = True


def multiscale_logits(model: LSeg, x: torch.Tensor, text: torch.Tensor,
                      cfg: MultiScaleConfig = MultiScaleConfig()) -> torch.Tensor:
    """(1, 3, H, W) normalised image -> (1, K, H, W) summed logits. Per scale: long side
    ``ceil(base_size * scale)`` (bilinear, align_corners=True); padded to a crop with normalised
    black and run once if it fits, else ``crop_size`` windows with stride ``int(crop_size *
    stride_rate)`` (edge windows padded), overlaps averaged; ``flip`` adds the mirrored prediction."""
    _, _, h, w = x.shape
    crop = cfg.crop_size
    stride = int(crop * cfg.stride_rate)
    black = pad_value(model.pixel_mean, model.pixel_std)  # -1 everywhere for the 0.5/0.5 normalisation
    total = torch.zeros(1, text.shape[0], h, w, device=x.device)

    def infer(img: torch.Tensor) -> torch.Tensor:
        out = model(img, text)
        if cfg.flip:
            out = out + model(img.flip(-1), text).flip(-1)
        return out

    for scale in cfg.scales:
        height, width = scaled_size(h, w, math.ceil(cfg.base_size * scale))
        cur = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=True)
        out = window_average(pad_to(cur, (crop, crop), black), crop, stride, black, infer)
        total += resize(out[..., :height, :width], (h, w))
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
