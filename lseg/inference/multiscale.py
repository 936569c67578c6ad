"""The reference's multi-scale evaluator (lang-seg's ``MultiEvalModule``): scales 0.5-1.75 of base
520, 480 crops with stride 320, flip, logits summed (spec section 7)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lseg.geometry import pad_to, pad_value, reference_windows, resize, scaled_size
from lseg.inference.options import ADE20K_SCALES
from lseg.models.lseg import LSeg

__all__ = ["ADE20K_SCALES", "MultiScaleConfig", "multiscale_logits"]


@dataclass(frozen=True)
class MultiScaleConfig:
    """The reference's ``MultiEvalModule`` settings."""

    scales: tuple[float, ...] = ADE20K_SCALES
    base_size: int = 520
    crop_size: int = 480
    stride_rate: float = 2 / 3
    flip: bool = True


def multiscale_logits(
    model: LSeg, x: torch.Tensor, text: torch.Tensor, cfg: MultiScaleConfig = MultiScaleConfig()
) -> torch.Tensor:
    """The reference's ``MultiEvalModule``: (1, 3, H, W) normalised image -> (1, K, H, W) summed logits.

    For each scale: resize the long side to ``ceil(base_size * scale)`` (bilinear, align_corners=True);
    if it fits in ``crop_size`` pad to a square crop with the normalised black value and run once,
    else slide ``crop_size`` windows with stride ``int(crop_size * stride_rate)`` (edge windows padded),
    averaging overlaps;
    with ``flip`` add the flipped prediction; resize back and add to the running sum.
    """
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
        long_size = math.ceil(cfg.base_size * scale)
        height, width = scaled_size(h, w, long_size)
        cur = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=True)
        if long_size <= crop:
            out = infer(pad_to(cur, (crop, crop), black))[..., :height, :width]
        else:
            pad = pad_to(cur, (crop, crop), black)
            ph, pw = pad.shape[-2:]
            out = torch.zeros(1, text.shape[0], ph, pw, device=x.device)
            count = torch.zeros(1, 1, ph, pw, device=x.device)
            # As the reference: the last windows are partial and padded, not shifted back.
            for y0, y1, x0, x1 in reference_windows(ph, pw, crop, stride):
                o = infer(pad_to(pad[..., y0:y1, x0:x1], (crop, crop), black))
                out[..., y0:y1, x0:x1] += o[..., : y1 - y0, : x1 - x0]
                count[..., y0:y1, x0:x1] += 1
            out = (out / count)[..., :height, :width]
        total += resize(out, (h, w))
    return total
