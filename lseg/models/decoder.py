"""DPT decoder: readout, reassemble, and RefineNet fusion (reference ``lseg_vit.py``/``lseg_blocks.py``).

ViT-L/16 at 480x480: tokens (B, 901, 1024) -> reassembled 256@120², 512@60², 1024@30², 1024@15² ->
``layer_rn`` 256 channels -> fused top-down to 256@240² (1/2 resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lseg.models.config import Readout
from lseg.models.numerics import Numerics

_STAGE_STRIDES = (4, 8, 16, 32)


class ReadoutProject(nn.Module):
    """Concatenate each patch token with the cls token, then Linear(2C -> C) + GELU."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cls = tokens[:, :1].expand_as(tokens[:, 1:])
        return self.proj(torch.cat([tokens[:, 1:], cls], dim=-1))


class ReadoutIgnore(nn.Module):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 1:]


class ReadoutAdd(nn.Module):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 1:] + tokens[:, :1]


def _make_readout(kind: Readout, dim: int) -> nn.Module:
    if kind == "project":
        return ReadoutProject(dim)
    return ReadoutAdd() if kind == "add" else ReadoutIgnore()


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

    def __init__(self, readout: Readout, dim: int, out_channels: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.readout = _make_readout(readout, dim)
        self.project = nn.Conv2d(dim, out_channels, kernel_size=1)
        self.resample = _make_resample(out_channels, patch_size, stride)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self.readout(tokens)  # (B, h*w, C)
        x = x.transpose(1, 2).unflatten(2, grid)  # (B, C, h, w)
        return self.resample(self.project(x))


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit with BatchNorm: ``x + BN2(conv2(relu(BN1(conv1(relu(x))))))``.

    ``fold_bn`` (eval mode only) folds each BatchNorm into its conv on the fly: same numbers up to
    rounding, one pass over the activations instead of two; parameters and state dict untouched.
    """

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


@dataclass(frozen=True)
class TokenLayout:
    """How a ViT's tokens become feature maps: token width, patch size, cls-token readout."""

    dim: int
    patch_size: int
    readout: Readout


class DPTDecoder(nn.Module):
    """Four reassemble stages (reference ``act_postprocess{i+1}``; none for a ResNet trunk,
    ``tokens=None``), four 3x3 ``layer_rn`` convs (``scratch.layer{i+1}_rn``) and four fusion blocks
    (``scratch.refinenet{i+1}``)."""

    def __init__(self, channels: tuple[int, ...], features: int, tokens: TokenLayout | None) -> None:
        super().__init__()
        self.reassemble = None if tokens is None else nn.ModuleList(
            Reassemble(tokens.readout, tokens.dim, c, tokens.patch_size, s)
            for c, s in zip(channels, _STAGE_STRIDES))
        self.layer_rn = nn.ModuleList(nn.Conv2d(c, features, 3, padding=1, bias=False) for c in channels)
        self.fusion = nn.ModuleList(FusionBlock(features, has_skip=i < 3) for i in range(4))

    def forward(self, taps: list[torch.Tensor], grid: tuple[int, int] | None, refine_only: bool = False,
                numerics: Numerics = "plain") -> torch.Tensor:
        """Tokens of four ViT blocks on a ``grid`` (or four ResNet feature maps) -> (B, features, H/2, W/2),
        or (B, features, H/4, W/4) before the last upsampling and ``out_conv`` with ``refine_only``.
        ``numerics`` (the model's mode): BatchNorm folding but in ``reference``, channels-last in ``fast``.
        """
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
