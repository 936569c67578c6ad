"""Build tiny reference networks matching our tiny registry configs (helpers, not tests)."""

from __future__ import annotations

from open_clip.model import CLIPTextCfg, CLIPVisionCfg

import lseg

from .lseg_reference import RefLSegNet

__test__ = False


def tiny_reference(name: str, **overrides) -> RefLSegNet:
    """A :class:`RefLSegNet` whose state dict fits ``lseg.get_config(name)`` (+ overrides)."""
    cfg = lseg.get_config(name).replace(**{k: v for k, v in overrides.items() if k in ("readout", "arch_option", "block_depth", "activation")})
    b, t = cfg.backbone, cfg.text
    backbone = "clip_vitb32_384" if "patch32" in b.timm_name else "clip_vitl16_384"
    text = CLIPTextCfg(context_length=t.context_length, vocab_size=t.vocab_size, width=t.width, heads=t.heads, layers=t.layers)
    vision = CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=32, image_size=64)
    return RefLSegNet(
        backbone=backbone, features=cfg.features, readout=cfg.readout, arch_option=cfg.arch_option,
        block_depth=cfg.block_depth, activation=cfg.activation,
        vit_overrides={"embed_dim": b.embed_dim, "depth": b.depth, "num_heads": b.num_heads, "img_size": b.img_size},
        hooks=list(b.hooks), vit_features=list(b.reassemble_channels), clip_cfg=(t.embed_dim, vision, text),
    ).eval()
