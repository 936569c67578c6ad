"""Typed configuration of an LSeg network: one frozen dataclass tree, stored as ``config.json``. Field
names follow the reference's constructor arguments where one exists."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from lseg.errors import ConfigError

Readout = Literal["ignore", "add", "project"]
Activation = Literal["relu", "lrelu", "tanh"]
#: How an :class:`lseg.LSeg` computes at inference, ``model.numerics`` (docs/python-api.md#numerics).
Numerics = Literal["reference", "plain", "fast"]
NUMERICS: tuple[str, ...] = typing.get_args(Numerics)


@dataclass(frozen=True)
class ViTConfig:
    """Image encoder: a timm ViT tapped at four blocks.

    Attributes:
        timm_name: timm architecture (``vit_large_patch16_384``, ``vit_base_patch32_384``).
        hooks: indices of the four blocks whose outputs feed the decoder.
        reassemble_channels: output channels of the four reassemble stages (1/4 ... 1/32).
        img_size: side of the square image the stored position embedding was trained for.
        patch_size, embed_dim, depth, num_heads: overrides of timm's values (``None``: timm's).
    """

    timm_name: str = "vit_large_patch16_384"
    hooks: tuple[int, int, int, int] = (5, 11, 17, 23)
    reassemble_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    img_size: int = 384
    patch_size: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None


@dataclass(frozen=True)
class ResNetConfig:
    """Image encoder of the zero-shot ``LSegRNNetZS``: a torchvision ResNet trunk whose four stages
    feed the decoder directly.

    Attributes:
        torchvision_name: the torchvision builder the layout follows (``resnet101``).
        layers: Bottleneck blocks per stage (ResNet-101: 3, 4, 23, 3).
        width_per_group: inner width of the first stage's blocks (64; smaller in tiny test models).
    """

    torchvision_name: str = "resnet101"
    layers: tuple[int, int, int, int] = (3, 4, 23, 3)
    width_per_group: int = 64


@dataclass(frozen=True)
class TextEncoderConfig:
    """Frozen CLIP text tower (OpenAI layout), built with open_clip.

    Attributes:
        clip_name: the OpenAI CLIP model the weights come from (``ViT-B-32``, ``RN50x16``).
        width, layers, heads: transformer size.
        embed_dim: output (= pixel embedding) dimension.
    """

    clip_name: str = "ViT-B-32"
    width: int = 512
    layers: int = 12
    heads: int = 8
    embed_dim: int = 512
    context_length: int = 77
    vocab_size: int = 49408


@dataclass(frozen=True)
class SpatialBlockConfig:
    """The optional spatial regularisation block after the logits (reference ``head_block``); flat
    fields of the same names in :class:`LSegConfig`.

    Attributes:
        arch_option: 0 plain logits, 1 bottleneck blocks, 2 depthwise blocks.
        block_depth: repetitions (arch_option 1/2 only).
        activation: activation between the repetitions.
    """

    arch_option: int = 0
    block_depth: int = 0
    activation: Activation = "lrelu"

    def __post_init__(self) -> None:
        if self.arch_option not in (0, 1, 2):
            raise ConfigError(f"arch_option must be 0, 1 or 2, got {self.arch_option!r}")
        if self.activation not in ("relu", "lrelu", "tanh"):
            raise ConfigError(f"activation must be relu|lrelu|tanh, got {self.activation!r}")
        if self.block_depth < 0:
            raise ConfigError(f"block_depth must be >= 0, got {self.block_depth}")


@dataclass(frozen=True)
class LSegConfig:
    """Complete LSeg architecture.

    Attributes:
        name: registry name this config was made from (informational).
        backbone: image encoder config (:class:`ViTConfig` or :class:`ResNetConfig`).
        text: text encoder config; ``text.embed_dim`` is the pixel embedding size.
        features: decoder width (reference ``num_features``).
        readout: how the ViT cls token is used.
        arch_option, block_depth, activation: the spatial block (:attr:`spatial_block`).
        logit_scale: fixed temperature (the reference's 1/0.07, never learned).
        mean, std: input normalisation (ImageNet's for the ResNet networks).
    """

    name: str = "lseg_vitl16_384"
    backbone: ViTConfig | ResNetConfig = field(default_factory=ViTConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    features: int = 256
    readout: Readout = "project"
    arch_option: int = 0
    block_depth: int = 0
    activation: Activation = "lrelu"
    logit_scale: float = 1 / 0.07
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.readout not in ("ignore", "add", "project"):
            raise ConfigError(f"readout must be ignore|add|project, got {self.readout!r}")
        self.spatial_block  # noqa: B018 - validates the three spatial-block fields in one place
        b = self.backbone
        if isinstance(b, ViTConfig) and (len(b.hooks) != 4 or len(b.reassemble_channels) != 4):
            raise ConfigError("backbone.hooks and backbone.reassemble_channels need exactly 4 entries")
        if isinstance(b, ResNetConfig) and len(b.layers) != 4:
            raise ConfigError("backbone.layers needs exactly 4 entries")
        # NaN/inf or a zero std would give NaN probabilities without an error
        if not (math.isfinite(self.logit_scale) and self.logit_scale > 0):
            raise ConfigError(f"logit_scale must be a positive finite number, got {self.logit_scale!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("mean and std need exactly 3 entries (RGB)")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)) or min(self.std) <= 0:
            raise ConfigError(
                f"mean must be finite and std finite and > 0, got mean {self.mean}, std {self.std}")

    @property
    def spatial_block(self) -> SpatialBlockConfig:
        """``arch_option``, ``block_depth`` and ``activation`` as one typed value."""
        return SpatialBlockConfig(self.arch_option, self.block_depth, self.activation)

    def with_spatial_block(self, block: SpatialBlockConfig) -> LSegConfig:
        return self.replace(**dataclasses.asdict(block))

    @property
    def embed_dim(self) -> int:
        """Pixel / text embedding dimension."""
        return self.text.embed_dim

    def replace(self, **changes: Any) -> LSegConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LSegConfig:
        """Inverse of :meth:`to_dict`; unknown keys and wrong types raise :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"an LSeg config must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        try:
            b = data.pop("backbone", {})
            # a ResNet config is told apart by its own field (older configs have no kind)
            kind = ResNetConfig if isinstance(b, dict) and "torchvision_name" in b else ViTConfig
            text = _build(TextEncoderConfig, data.pop("text", {}))
            return _build(cls, data, backbone=_build(kind, b), text=text)
        except TypeError as e:  # missing/unknown fields
            raise ConfigError(f"invalid LSeg config: {e}") from None


def _build(cls: type, data: Any, **extra: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _checked(f"{cls.__name__}.{k}", v, hints[k]) for k, v in data.items()}
    return cls(**kwargs, **extra)


def _checked(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the field's type, or :class:`ConfigError` (a config file is untrusted input)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{name} must be a list of {len(args)} numbers, got {value!r}")
        return tuple(_checked(name, v, args[0]) for v in value)
    kinds = _KINDS.get(hint)
    if kinds is None:
        return value
    if not isinstance(value, kinds) or (hint is not bool and isinstance(value, bool)):
        raise ConfigError(f"{name} must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return float(value) if hint is float else value


#: The Python types a JSON value of a primitive field may have (a bool is no number here).
_KINDS: dict[Any, tuple[type, ...]] = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}


def unwrapped(model: Any, who: str) -> Any:
    """The LSeg network ``model`` is (compiled too) or that a ``DataParallel`` / ``DistributedDataParallel``
    holds (as training code has it), told by its :class:`LSegConfig`; a one-line ``TypeError`` naming ``who``."""
    from torch import nn  # here: importing a config imports no torch

    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    if not isinstance(getattr(model, "config", None), LSegConfig):
        hint = repr(model) if isinstance(model, (str, os.PathLike)) else "..."
        raise TypeError(f"{who} takes an lseg model, not a {type(model).__name__}: use {who}(lseg.load_model({hint}))")
    return model
