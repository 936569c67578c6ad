"""Image encoders: a timm VisionTransformer tapped at four blocks, or a torchvision ResNet trunk.

The reference monkey-patches ``forward_flex`` into the timm model and collects block outputs with
forward hooks in a module-global dict (reference bug 6: replicas overwrite each other). Here the
same computation is an explicit loop over ``vit.blocks`` that returns the tapped tokens, stops at the
last hook (the reference's final ``norm`` output is discarded anyway) and keeps no global state.

timm's own ``forward_intermediates``/``dynamic_img_size`` resample the position embedding bicubically
with antialiasing; the LSeg checkpoints were trained with the reference's plain bilinear
(``align_corners=False``) resize, which :func:`resize_pos_embed` reproduces exactly.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.layers import Attention, use_fused_attn
from torch import nn
from torchvision.models import resnet

from lseg.models.config import ResNetConfig, ViTConfig


def resize_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int, num_prefix: int = 1) -> torch.Tensor:
    """Bilinearly resize a square ViT position embedding to a ``grid_h x grid_w`` grid.

    Args:
        pos_embed: (1, num_prefix + S*S, C) position embedding.
        grid_h, grid_w: target patch grid.
        num_prefix: leading tokens (cls) that are kept as they are.

    Returns:
        (1, num_prefix + grid_h*grid_w, C).
    """
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[0, num_prefix:]
    side = round(grid.shape[0] ** 0.5)
    grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    # Same call as the reference's _resize_pos_embed (align_corners left at its default, False).
    grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bilinear")
    grid = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
    return torch.cat([prefix, grid], dim=1)


class OfficialAttention(Attention):
    """timm's ViT attention computed in the op order of timm 0.4.12 (the official code's pin).

    ``qkv(x)`` viewed as (B, N, 3, heads, C/heads) and permuted to (3, B, heads, N, C/heads); q, k and
    v are strided views of it (indexed, not copied); the scores are ``(q @ k^T) * scale``, scaled
    *after* the product; softmax over the last dim; ``(attn @ v)`` back to (B, N, C); ``proj``.
    timm 1.x's explicit path instead scales a dense copy of q before the product: the same bits only
    while the scale is a power of two (head width 64, as the released models) and the matmul kernel
    does not care about q's layout; this class does not rely on either. The parameters are timm's
    own (same module, same state dict); :meth:`ViTBackbone.set_explicit_attention` switches a block's
    attention to this class and back. Only used for ``reference`` numerics at inference.
    """

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
    """timm ViT returning the token sequences of four blocks.

    The timm model lives at ``self.vit`` with timm's own parameter names, so timm/augreg weights load
    into it directly. Its classifier head and final norm are removed: LSeg never uses them.
    """

    def __init__(self, cfg: ViTConfig, pretrained: bool = False) -> None:
        super().__init__()
        overrides = {
            k: v
            for k, v in (
                ("patch_size", cfg.patch_size),
                ("embed_dim", cfg.embed_dim),
                ("depth", cfg.depth),
                ("num_heads", cfg.num_heads),
            )
            if v is not None
        }
        self.vit = timm.create_model(
            cfg.timm_name, pretrained=pretrained, num_classes=0, img_size=cfg.img_size, **overrides
        )
        self.vit.norm = nn.Identity()  # computed and discarded by the reference (bug 5)
        self.hooks = tuple(cfg.hooks)
        depth = len(self.vit.blocks)
        if sorted(self.hooks) != list(self.hooks) or self.hooks[-1] >= depth or self.hooks[0] < 0:
            raise ValueError(f"hooks {self.hooks} must be increasing block indices < depth {depth}")
        # Blocks after the last hook never influence the output; drop them (saves memory and time).
        self.vit.blocks = self.vit.blocks[: self.hooks[-1] + 1]
        self.patch_size: int = self.vit.patch_embed.proj.kernel_size[0]
        self.embed_dim: int = self.vit.embed_dim

    def set_explicit_attention(self, explicit: bool) -> None:
        """Compute attention as the official code's timm 0.4.12 does (:class:`OfficialAttention`:
        explicit ``softmax((q @ k^T) * scale) @ v`` in 0.4.12's op order; ``explicit=True``, for
        ``reference`` numerics) or with timm's own module and default (fused
        ``scaled_dot_product_attention`` where timm uses it: ~1.25x faster on a CPU)."""
        fused = not explicit and use_fused_attn()
        for block in self.vit.blocks:
            attn = block.attn
            if type(attn) not in (Attention, OfficialAttention):
                raise TypeError(f"unexpected ViT attention module {type(attn).__name__}")
            extras = (getattr(attn, name, None) for name in ("q_norm", "k_norm", "norm"))
            if explicit and (any(m is not None and not isinstance(m, nn.Identity) for m in extras)
                             or getattr(attn, "gate", None) is not None):
                raise ValueError("the official ViT attention has no q/k norm, output norm or gate")
            attn.__class__ = OfficialAttention if explicit else Attention  # same parameters, other forward
            attn.fused_attn = fused

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Run the ViT.

        Args:
            x: (B, 3, H, W) normalised images.

        Returns:
            The tokens of the four hooked blocks, each (B, 1 + h*w, C), and the patch grid (h, w)
            with h = H // patch, w = W // patch (the patch conv floors, as in the reference).
        """
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
    """torchvision ResNet (Bottleneck) returning the outputs of ``layer1..layer4`` (strides 4-32).

    The reference's ``_make_resnet_backbone`` wraps torchvision's ``resnet101`` as
    ``layer1 = Sequential(conv1, bn1, relu, maxpool, layer1)``, ``layer2..4``; the model lives at
    ``self.resnet`` with torchvision's own names (``lseg.pretrained.checkpoints`` maps the reference keys), so
    torchvision's ImageNet weights load into it directly. The classifier (``fc``) is not built.
    """

    def __init__(self, cfg: ResNetConfig, pretrained: bool = False) -> None:
        super().__init__()
        if pretrained:  # the reference's `models.resnet101(pretrained=True)`: ImageNet V1 weights
            if cfg.torchvision_name != "resnet101" or cfg.layers != (3, 4, 23, 3) or cfg.width_per_group != 64:
                raise ValueError("ImageNet weights exist only for the full ResNet-101 layout")
            self.resnet = resnet.resnet101(weights=resnet.ResNet101_Weights.IMAGENET1K_V1)
        else:
            self.resnet = resnet.ResNet(resnet.Bottleneck, list(cfg.layers), width_per_group=cfg.width_per_group)
        self.resnet.fc = nn.Identity()  # type: ignore[assignment]  # no parameters: not in the state dict

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], None]:
        """Normalised images (B, 3, H, W) -> four feature maps (strides 4, 8, 16, 32) and no grid."""
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        feats = []
        for layer in (r.layer1, r.layer2, r.layer3, r.layer4):
            x = layer(x)
            feats.append(x)
        return feats, None
