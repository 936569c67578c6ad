"""DPT decoder: readout, reassemble, and RefineNet fusion (reference ``lseg_vit.py``/``lseg_blocks.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lseg.models.config import Numerics, Readout

_STAGE_STRIDES = (4, 8, 16, 32)


class TokenReadout(nn.Module):
    """What becomes of the cls token: ``ignore``, ``add`` it to each patch token, or ``project``
    (concatenate it to each patch token, then Linear(2C -> C) + GELU)."""

    def __init__(self, kind: Readout, dim: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "project":
            self.proj = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.kind == "project":
            cls = tokens[:, :1].expand_as(tokens[:, 1:])
            return self.proj(torch.cat([tokens[:, 1:], cls], dim=-1))
        return tokens[:, 1:] + tokens[:, :1] if self.kind == "add" else tokens[:, 1:]


def _make_resample(channels: int, patch_size: int, stride: int) -> nn.Module:
    """Resample a 1/patch grid to 1/stride: transposed conv up, identity, or 3x3 stride-2 conv down."""
    if patch_size > stride:
        f = patch_size // stride
        return nn.ConvTranspose2d(channels, channels, kernel_size=f, stride=f)
    if patch_size == stride:
        return nn.Identity()
    if stride != 2 * patch_size:
        raise ValueError(f"cannot resample patch {patch_size} to stride {stride}")
    return nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)


class Reassemble(nn.Module):
    """Tokens -> image-like feature map at one pyramid level (reference ``act_postprocessN``)."""

    def __init__(self, readout: Readout, dim: int, patch_size: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.readout = TokenReadout(readout, dim)
        self.project = nn.Conv2d(dim, out_channels, kernel_size=1)
        self.resample = _make_resample(out_channels, patch_size, stride)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self.readout(tokens)  # (B, h*w, C)
        x = x.transpose(1, 2).unflatten(2, grid)  # (B, C, h, w)
        return self.resample(self.project(x))


class ResidualConvUnit(nn.Module):
    """``x + BN2(conv2(relu(BN1(conv1(relu(x))))))``; ``fold_bn`` (eval mode only) folds each BatchNorm
    into its conv on the fly: same numbers up to rounding, one pass over the activations instead of two."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(features)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(features)

    def _conv_bn(self, x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, fold_bn: bool) -> torch.Tensor:
        if self.training or not fold_bn:
            return bn(conv(x))
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        return F.conv2d(x, weight, bias, padding=1)

    def forward(self, x: torch.Tensor, fold_bn: bool = False) -> torch.Tensor:
        out = self._conv_bn(F.relu(x), self.conv1, self.bn1, fold_bn)
        out = self._conv_bn(F.relu(out), self.conv2, self.bn2, fold_bn)
        return x + out


class FusionBlock(nn.Module):
    """RefineNet fusion (reference ``FeatureFusionBlock_custom``): add skip, refine, upsample x2, 1x1."""

    def __init__(self, features: int, has_skip: bool) -> None:
        super().__init__()
        # the reference's deepest block also owns an unused skip unit
        self.rcu_skip = ResidualConvUnit(features) if has_skip else None
        self.rcu = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, refine_only: bool = False,
                fold_bn: bool = False) -> torch.Tensor:
        """Fuse ``skip`` into ``x``; ``refine_only`` stops before the x2 upsampling and ``out_conv``."""
        if skip is not None:
            assert self.rcu_skip is not None
            x = x + self.rcu_skip(skip, fold_bn)
        x = self.rcu(x, fold_bn)
        if refine_only:
            return x
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTDecoder(nn.Module):
    """Four reassemble stages (reference ``act_postprocess{i+1}``), four 3x3 ``layer_rn`` convs
    (``scratch.layer{i+1}_rn``) and four fusion blocks (``scratch.refinenet{i+1}``). ``tokens``: a
    ViT's (readout, token width, patch size); ``None`` for a ResNet trunk (no reassemble stages)."""

    def __init__(self, channels: tuple[int, ...], features: int, tokens: tuple[Readout, int, int] | None) -> None:
        super().__init__()
        self.reassemble = None if tokens is None else nn.ModuleList(
            Reassemble(*tokens, c, s) for c, s in zip(channels, _STAGE_STRIDES))
        self.layer_rn = nn.ModuleList(nn.Conv2d(c, features, 3, padding=1, bias=False) for c in channels)
        self.fusion = nn.ModuleList(FusionBlock(features, has_skip=i < 3) for i in range(4))

    def forward(self, taps: list[torch.Tensor], grid: tuple[int, int] | None, refine_only: bool = False,
                numerics: Numerics = "plain") -> torch.Tensor:
        """Tokens of four ViT blocks on a ``grid`` (or four ResNet feature maps) -> (B, features, H/2, W/2)
        (with ``refine_only``: H/4, W/4, before the last upsampling and ``out_conv``). ``numerics``: the
        model's mode (BatchNorm folded but in ``reference``, channels-last in ``fast``)."""
        fold_bn = numerics != "reference"
        feats = []
        for i, (t, rn) in enumerate(zip(taps, self.layer_rn)):
            x = t if self.reassemble is None or grid is None else self.reassemble[i](t, grid)
            if numerics == "fast":
                x = x.contiguous(memory_format=torch.channels_last)
            # else the layout the token transpose produced, as the reference: the conv kernel (hence
            # the last bits) depends on it
            feats.append(rn(x))
        path = self.fusion[3](feats[3], fold_bn=fold_bn)  # 1/32 -> 1/16
        path = self.fusion[2](path, feats[2], fold_bn=fold_bn)  # -> 1/8
        path = self.fusion[1](path, feats[1], fold_bn=fold_bn)  # -> 1/4
        return self.fusion[0](path, feats[0], refine_only=refine_only, fold_bn=fold_bn)  # -> 1/2
