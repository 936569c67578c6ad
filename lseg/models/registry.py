"""Named LSeg configurations (``create_model("lseg_vitl16_384")``), timm-style.

The three main-network backbones of the reference (section 3.2 of the spec), under our names and
under the reference's ``--backbone`` names, plus tiny variants used by the tests.
"""

from __future__ import annotations

from collections.abc import Callable

from lseg.errors import ConfigError
from lseg.models.config import LSegConfig, ResNetConfig, TextEncoderConfig, ViTConfig

_REGISTRY: dict[str, Callable[[], LSegConfig]] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, *aliases: str) -> Callable[[Callable[[], LSegConfig]], Callable[[], LSegConfig]]:
    def deco(fn: Callable[[], LSegConfig]) -> Callable[[], LSegConfig]:
        _REGISTRY[name] = fn
        for a in aliases:
            _ALIASES[a] = name
        return fn

    return deco


_CLIP_VITB32_TEXT = TextEncoderConfig()
_CLIP_RN50X16_TEXT = TextEncoderConfig(clip_name="RN50x16", width=768, layers=12, heads=12, embed_dim=768)
_VITL16 = ViTConfig()
_VITB32 = ViTConfig(
    timm_name="vit_base_patch32_384", hooks=(2, 5, 8, 11), reassemble_channels=(96, 192, 384, 768)
)


@register("lseg_vitl16_384", "clip_vitl16_384")
def lseg_vitl16_384() -> LSegConfig:
    """ViT-L/16 image encoder + CLIP ViT-B/32 text encoder (512-d): the demo / ADE20K / FSS model."""
    return LSegConfig(name="lseg_vitl16_384", backbone=_VITL16, text=_CLIP_VITB32_TEXT)


@register("lseg_vitb32_384", "clip_vitb32_384")
def lseg_vitb32_384() -> LSegConfig:
    """ViT-B/32 image encoder + CLIP ViT-B/32 text encoder (512-d)."""
    return LSegConfig(name="lseg_vitb32_384", backbone=_VITB32, text=_CLIP_VITB32_TEXT)


@register("lseg_rn50x16_vitl16_384", "clipRN50x16_vitl16_384")
def lseg_rn50x16_vitl16_384() -> LSegConfig:
    """ViT-L/16 image encoder + CLIP RN50x16 text encoder (768-d)."""
    return LSegConfig(name="lseg_rn50x16_vitl16_384", backbone=_VITL16, text=_CLIP_RN50X16_TEXT)


#: torchvision's ImageNet statistics, which the reference's ResNet-101 zero-shot networks use.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@register("lseg_rn101_zs", "clip_resnet101")
def lseg_rn101_zs() -> LSegConfig:
    """ResNet-101 image encoder + CLIP ViT-B/32 text encoder (512-d), ImageNet normalisation: the
    reference's zero-shot ``LSegRNNetZS`` (``pascal_fold*``, ``coco_fold*``, ``fss_rn101``)."""
    return LSegConfig(
        name="lseg_rn101_zs", backbone=ResNetConfig(), text=_CLIP_VITB32_TEXT, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )


_TINY_TEXT = TextEncoderConfig(width=32, layers=2, heads=2, embed_dim=32)


@register("lseg_tiny_test")
def lseg_tiny_test() -> LSegConfig:
    """A few-MB random model with the ViT-L/16 layout (patch 16), for tests and CI."""
    return LSegConfig(
        name="lseg_tiny_test",
        backbone=ViTConfig(
            timm_name="vit_large_patch16_384", hooks=(0, 1, 2, 3), reassemble_channels=(8, 16, 32, 32),
            img_size=64, embed_dim=32, depth=4, num_heads=2,
        ),
        text=_TINY_TEXT,
        features=16,
    )


@register("lseg_tiny_test_p32")
def lseg_tiny_test_p32() -> LSegConfig:
    """Tiny random model with the ViT-B/32 layout (patch 32), for tests."""
    return LSegConfig(
        name="lseg_tiny_test_p32",
        backbone=ViTConfig(
            timm_name="vit_base_patch32_384", hooks=(0, 1, 2, 3), reassemble_channels=(8, 16, 32, 32),
            img_size=64, embed_dim=32, depth=4, num_heads=2,
        ),
        text=_TINY_TEXT,
        features=16,
    )


@register("lseg_tiny_test_rn")
def lseg_tiny_test_rn() -> LSegConfig:
    """Tiny random model with the ResNet zero-shot layout (one Bottleneck per stage), for tests."""
    return LSegConfig(
        name="lseg_tiny_test_rn",
        backbone=ResNetConfig(layers=(1, 1, 1, 1), width_per_group=8),
        text=_TINY_TEXT,
        features=16,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


#: (depth, embed_dim, num_heads, patch_size) of the timm ViTs the registered networks use: a config
#: may only name these (any other timm name could build an arbitrarily large model).
TIMM_VIT_DIMS = {"vit_large_patch16_384": (24, 1024, 16, 16), "vit_base_patch32_384": (12, 768, 12, 32)}
#: How far beyond the largest registered network a config may go in any dimension.
LIMIT_FACTOR = 2


def check_limits(config: LSegConfig) -> None:
    """Refuse a config (from an untrusted ``config.json``) that would build a network more than
    :data:`LIMIT_FACTOR` times the largest registered one in any dimension, before anything is
    allocated (``depth=1e9`` would otherwise grow without bound)."""
    regs = [get_config(n) for n in _REGISTRY]
    vits = [r.backbone for r in regs if isinstance(r.backbone, ViTConfig)]
    rns = [r.backbone for r in regs if isinstance(r.backbone, ResNetConfig)]

    def cap(values: list[int]) -> int:
        return LIMIT_FACTOR * max(values)

    checks: list[tuple[str, int, int]] = [
        ("features", config.features, cap([r.features for r in regs])),
        ("block_depth", config.block_depth, 16),
        ("text.width", config.text.width, cap([r.text.width for r in regs])),
        ("text.layers", config.text.layers, cap([r.text.layers for r in regs])),
        ("text.heads", config.text.heads, cap([r.text.heads for r in regs])),
        ("text.embed_dim", config.text.embed_dim, cap([r.text.embed_dim for r in regs])),
        ("text.context_length", config.text.context_length, cap([r.text.context_length for r in regs])),
        ("text.vocab_size", config.text.vocab_size, cap([r.text.vocab_size for r in regs])),
    ]
    b = config.backbone
    if isinstance(b, ViTConfig):
        if b.timm_name not in TIMM_VIT_DIMS:
            raise ConfigError(f"backbone.timm_name must be one of {', '.join(TIMM_VIT_DIMS)}, got {b.timm_name!r}")

        def dims(v: ViTConfig) -> tuple[int, int, int, int]:
            d, e, h, p = TIMM_VIT_DIMS[v.timm_name]
            return (v.depth or d, v.embed_dim or e, v.num_heads or h, v.patch_size or p)

        depth, dim, heads, patch = dims(b)
        checks += [
            ("backbone.depth", depth, cap([dims(v)[0] for v in vits])),
            ("backbone.embed_dim", dim, cap([dims(v)[1] for v in vits])),
            ("backbone.num_heads", heads, cap([dims(v)[2] for v in vits])),
            ("backbone.patch_size", patch, cap([dims(v)[3] for v in vits])),
            ("backbone.img_size", b.img_size, cap([v.img_size for v in vits])),
            *((f"backbone.reassemble_channels[{i}]", c, cap([max(v.reassemble_channels) for v in vits]))
              for i, c in enumerate(b.reassemble_channels)),
            *((f"backbone.hooks[{i}]", h + 1, depth) for i, h in enumerate(b.hooks)),
        ]
        if min(b.hooks) < 0:
            raise ConfigError(f"backbone.hooks must be >= 0, got {b.hooks}")
    else:
        if b.torchvision_name != "resnet101":
            raise ConfigError(f"backbone.torchvision_name must be resnet101, got {b.torchvision_name!r}")
        checks += [(f"backbone.layers[{i}]", n, cap([r.layers[i] for r in rns])) for i, n in enumerate(b.layers)]
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
        raise ConfigError(
            f"unknown model {name!r}; available: {', '.join(list_models(include_test=True))}"
        )
    return _REGISTRY[key]()
