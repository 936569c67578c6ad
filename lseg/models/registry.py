"""Named LSeg configurations (``create_model("lseg_vitl16_384")``): the reference's networks, under our
names and the reference's ``--backbone`` names, plus tiny variants for the tests."""

from __future__ import annotations

from lseg.errors import ConfigError
from lseg.models.config import LSegConfig, ResNetConfig, TextEncoderConfig, ViTConfig

_REGISTRY: dict[str, LSegConfig] = {}
_ALIASES: dict[str, str] = {}


def _register(config: LSegConfig, *aliases: str) -> None:
    _REGISTRY[config.name] = config
    _ALIASES.update(dict.fromkeys(aliases, config.name))


_CLIP_VITB32_TEXT = TextEncoderConfig()
_CLIP_RN50X16_TEXT = TextEncoderConfig(clip_name="RN50x16", width=768, layers=12, heads=12, embed_dim=768)
_VITL16 = ViTConfig()
_VITB32 = ViTConfig("vit_base_patch32_384", hooks=(2, 5, 8, 11), reassemble_channels=(96, 192, 384, 768))
#: torchvision's ImageNet statistics, which the reference's ResNet-101 zero-shot networks use.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ViT-L/16 + CLIP ViT-B/32 text: the demo / ADE20K / FSS model
_register(LSegConfig("lseg_vitl16_384", _VITL16, _CLIP_VITB32_TEXT), "clip_vitl16_384")
_register(LSegConfig("lseg_vitb32_384", _VITB32, _CLIP_VITB32_TEXT), "clip_vitb32_384")
# ViT-L/16 + CLIP RN50x16 text (768-d)
_register(LSegConfig("lseg_rn50x16_vitl16_384", _VITL16, _CLIP_RN50X16_TEXT), "clipRN50x16_vitl16_384")
# ResNet-101 + CLIP ViT-B/32 text: the zero-shot LSegRNNetZS (pascal_fold*, coco_fold*, fss_rn101)
_register(LSegConfig("lseg_rn101_zs", ResNetConfig(), _CLIP_VITB32_TEXT, mean=IMAGENET_MEAN,
                     std=IMAGENET_STD), "clip_resnet101")

# Tiny random models for tests: the ViT-L/16 (patch 16), ViT-B/32 (patch 32) and ResNet layouts.
_TINY_TEXT = TextEncoderConfig(width=32, layers=2, heads=2, embed_dim=32)


def _tiny_vit(timm_name: str) -> ViTConfig:
    return ViTConfig(timm_name, hooks=(0, 1, 2, 3), reassemble_channels=(8, 16, 32, 32), img_size=64,
                     embed_dim=32, depth=4, num_heads=2)


_register(LSegConfig("lseg_tiny_test", _tiny_vit("vit_large_patch16_384"), _TINY_TEXT, features=16))
_register(LSegConfig("lseg_tiny_test_p32", _tiny_vit("vit_base_patch32_384"), _TINY_TEXT, features=16))
_register(LSegConfig("lseg_tiny_test_rn", ResNetConfig(layers=(1, 1, 1, 1), width_per_group=8), _TINY_TEXT,
                     features=16, mean=IMAGENET_MEAN, std=IMAGENET_STD))


#: (depth, embed_dim, num_heads, patch_size) of the timm ViTs a config may name (any other timm name
#: could build an arbitrarily large model).
TIMM_VIT_DIMS = {"vit_large_patch16_384": (24, 1024, 16, 16), "vit_base_patch32_384": (12, 768, 12, 32)}
#: How far beyond the largest registered network a config may go in any dimension.
LIMIT_FACTOR = 2


def check_limits(config: LSegConfig) -> None:
    """Refuse a config (from an untrusted ``config.json``) that would build a network more than
    :data:`LIMIT_FACTOR` times the largest registered one in any dimension, before any allocation."""
    regs = list(_REGISTRY.values())
    vits = [r.backbone for r in regs if isinstance(r.backbone, ViTConfig)]
    rns = [r.backbone for r in regs if isinstance(r.backbone, ResNetConfig)]

    def cap(values: list[int]) -> int:
        return LIMIT_FACTOR * max(values)

    checks: list[tuple[str, int, int]] = [
        ("features", config.features, cap([r.features for r in regs])),
        ("block_depth", config.block_depth, 16),
        *((f"text.{f}", getattr(config.text, f), cap([getattr(r.text, f) for r in regs]))
          for f in ("width", "layers", "heads", "embed_dim", "context_length", "vocab_size")),
    ]
    b = config.backbone
    if isinstance(b, ViTConfig):
        if b.timm_name not in TIMM_VIT_DIMS:
            raise ConfigError(
                f"backbone.timm_name must be one of {', '.join(TIMM_VIT_DIMS)}, got {b.timm_name!r}")

        def dims(v: ViTConfig) -> tuple[int, int, int, int]:
            d, e, h, p = TIMM_VIT_DIMS[v.timm_name]
            return (v.depth or d, v.embed_dim or e, v.num_heads or h, v.patch_size or p)

        own = dims(b)
        checks += [
            *((f"backbone.{f}", own[i], cap([dims(v)[i] for v in vits]))
              for i, f in enumerate(("depth", "embed_dim", "num_heads", "patch_size"))),
            ("backbone.img_size", b.img_size, cap([v.img_size for v in vits])),
            *((f"backbone.reassemble_channels[{i}]", c, cap([max(v.reassemble_channels) for v in vits]))
              for i, c in enumerate(b.reassemble_channels)),
            *((f"backbone.hooks[{i}]", h + 1, own[0]) for i, h in enumerate(b.hooks)),
        ]
        if min(b.hooks) < 0:
            raise ConfigError(f"backbone.hooks must be >= 0, got {b.hooks}")
    else:
        if b.torchvision_name != "resnet101":
            raise ConfigError(f"backbone.torchvision_name must be resnet101, got {b.torchvision_name!r}")
        checks += [(f"backbone.layers[{i}]", n, cap([r.layers[i] for r in rns]))
                   for i, n in enumerate(b.layers)]
        checks.append(("backbone.width_per_group", b.width_per_group, cap([r.width_per_group for r in rns])))
    for name, value, limit in checks:
        if name.startswith("backbone.hooks") and value > limit:
            raise ConfigError(f"{name} = {value - 1} must be below the backbone depth {limit}")
        if not 1 <= value <= limit and not (name == "block_depth" and value == 0):
            raise ConfigError(f"{name} = {value} is outside 1..{limit} (at most {LIMIT_FACTOR}x the largest "
                              "registered network)")


def list_models(include_test: bool = False) -> list[str]:
    """Registered model names (tiny test models only with ``include_test``)."""
    return sorted(n for n in _REGISTRY if include_test or "test" not in n)


def get_config(name: str) -> LSegConfig:
    """The config registered under ``name`` (or a reference backbone alias)."""
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(list_models(include_test=True))}")
    return _REGISTRY[key]
