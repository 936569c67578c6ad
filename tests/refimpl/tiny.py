"""Build tiny reference networks matching our tiny registry configs (helpers, not tests)."""

from __future__ import annotations

import lseg
from lseg.models.config import ResNetConfig

from .lseg_reference import RefLSegNet, RefLSegRNNetZS

__test__ = False


def tiny_reference(name: str, **overrides) -> RefLSegNet | RefLSegRNNetZS:
    """A reference network whose state dict fits ``lseg.get_config(name)`` (+ overrides)."""
    cfg = lseg.get_config(name).replace(**{k: v for k, v in overrides.items() if k in ("readout", "arch_option", "block_depth", "activation")})
    b, t = cfg.backbone, cfg.text
    # OpenAI's CLIP derives the image tower's heads as width // 64: a 64-wide, 1-layer ViT
    clip_dims = {
        "embed_dim": t.embed_dim, "image_resolution": 64, "vision_layers": 1, "vision_width": 64, "vision_patch_size": 32,
        "context_length": t.context_length, "vocab_size": t.vocab_size, "transformer_width": t.width,
        "transformer_heads": t.heads, "transformer_layers": t.layers,
    }
    if isinstance(b, ResNetConfig):
        return RefLSegRNNetZS(
            features=cfg.features, layers=b.layers, width_per_group=b.width_per_group, clip_dims=clip_dims
        ).eval()
    backbone = "clip_vitb32_384" if "patch32" in b.timm_name else "clip_vitl16_384"
    return RefLSegNet(
        backbone=backbone, features=cfg.features, readout=cfg.readout, arch_option=cfg.arch_option,
        block_depth=cfg.block_depth, activation=cfg.activation,
        vit_overrides={"embed_dim": b.embed_dim, "depth": b.depth, "num_heads": b.num_heads, "img_size": b.img_size},
        hooks=list(b.hooks), vit_features=list(b.reassemble_channels), clip_dims=clip_dims,
    ).eval()
