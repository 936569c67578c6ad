"""Image encoders: a timm VisionTransformer tapped at four blocks, or a torchvision ResNet trunk."""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.layers import Attention, use_fused_attn
from torch import nn
from torchvision.models import resnet

from lseg.models.config import ResNetConfig, ViTConfig


def resize_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """(1, 1 + S*S, C) square ViT position embedding -> (1, 1 + grid_h*grid_w, C), the cls token's kept.
    The reference's plain bilinear resize, as the checkpoints were trained (not timm's antialiased
    bicubic one)."""
    prefix, grid = pos_embed[:, :1], pos_embed[0, 1:]
    side = round(grid.shape[0] ** 0.5)
    grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bilinear")  # align_corners=False, as the reference
    grid = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
    return torch.cat([prefix, grid], dim=1)


class OfficialAttention(Attention):
    """timm's ViT attention in the op order of timm 0.4.12 (the official code's pin), for ``reference``
    numerics: q, k, v strided views of ``qkv(x)``, scores ``(q @ k^T) * scale`` (timm 1.x scales a
    dense copy of q first: other bits). Same parameters as timm's module."""

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("the official ViT attention takes no mask")
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        attn = self.attn_drop(attn)
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)))


class ViTBackbone(nn.Module):
    """timm ViT (at ``self.vit``, timm's parameter names) returning the tokens of four blocks, run as a
    loop that stops at the last hook; its classifier head and final norm are removed."""

    def __init__(self, cfg: ViTConfig, pretrained: bool = False) -> None:
        super().__init__()
        sizes = ("patch_size", "embed_dim", "depth", "num_heads")
        overrides = {k: getattr(cfg, k) for k in sizes if getattr(cfg, k) is not None}
        self.vit = timm.create_model(cfg.timm_name, pretrained=pretrained, num_classes=0,
                                     img_size=cfg.img_size, **overrides)
        self.vit.norm = nn.Identity()  # computed and discarded by the reference (bug 5)
        self.hooks = tuple(cfg.hooks)
        depth = len(self.vit.blocks)
        if sorted(self.hooks) != list(self.hooks) or self.hooks[-1] >= depth or self.hooks[0] < 0:
            raise ValueError(f"hooks {self.hooks} must be increasing block indices < depth {depth}")
        self.vit.blocks = self.vit.blocks[: self.hooks[-1] + 1]
        self.patch_size: int = self.vit.patch_embed.proj.kernel_size[0]
        self.embed_dim: int = self.vit.embed_dim

    def set_explicit_attention(self, explicit: bool) -> None:
        """Attention as the official code computes it (:class:`OfficialAttention`) or timm's own (fused
        where timm uses it: ~1.25x faster on a CPU)."""
        fused = not explicit and use_fused_attn()
        for block in self.vit.blocks:
            attn = block.attn
            if type(attn) not in (Attention, OfficialAttention):
                raise TypeError(f"unexpected ViT attention module {type(attn).__name__}")
            extras = (getattr(attn, name, None) for name in ("q_norm", "k_norm", "norm"))
            has_extras = any(m is not None and not isinstance(m, nn.Identity) for m in extras)
            if explicit and (has_extras or getattr(attn, "gate", None) is not None):
                raise ValueError("the official ViT attention has no q/k norm, output norm or gate")
            attn.__class__ = OfficialAttention if explicit else Attention  # same parameters
            attn.fused_attn = fused

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Normalised images (B, 3, H, W) -> the tokens of the four hooked blocks, each (B, 1 + h*w, C),
        and the patch grid (h, w)."""
        vit = self.vit
        x = vit.patch_embed.proj(x)  # (B, C, h, w)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + resize_pos_embed(vit.pos_embed, *grid)
        x = vit.pos_drop(x)
        taps: list[torch.Tensor] = []
        for i, block in enumerate(vit.blocks):
            x = block(x)
            if i in self.hooks:
                taps.append(x)
        return taps, grid


class ResNetBackbone(nn.Module):
    """torchvision ResNet (at ``self.resnet``, torchvision's names) returning the outputs of
    ``layer1..layer4`` (strides 4-32), as the reference's ``_make_resnet_backbone``."""

    def __init__(self, cfg: ResNetConfig, pretrained: bool = False) -> None:
        super().__init__()
        if pretrained:  # the reference's `models.resnet101(pretrained=True)`: ImageNet V1 weights
            if (cfg.torchvision_name, cfg.layers, cfg.width_per_group) != ("resnet101", (3, 4, 23, 3), 64):
                raise ValueError("ImageNet weights exist only for the full ResNet-101 layout")
            self.resnet = resnet.resnet101(weights=resnet.ResNet101_Weights.IMAGENET1K_V1)
        else:
            self.resnet = resnet.ResNet(resnet.Bottleneck, list(cfg.layers),
                                        width_per_group=cfg.width_per_group)
        self.resnet.fc = nn.Identity()  # type: ignore[assignment]  # no parameters: not in the state dict

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], None]:
        """Normalised images (B, 3, H, W) -> four feature maps and no grid."""
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        feats = []
        for layer in (r.layer1, r.layer2, r.layer3, r.layer4):
            x = layer(x)
            feats.append(x)
        return feats, None
