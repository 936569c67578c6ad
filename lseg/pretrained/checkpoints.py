"""How an official lang-seg checkpoint maps onto the model (:func:`convert_official_state_dict`, the
one key map), and our folder format: ``model.safetensors`` + ``config.json`` (+ a ``README.md`` card).
See ``docs/weights.md``. This module never imports the model class (it is handed in)."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from lseg.errors import CheckpointError, ConfigError, one_line
from lseg.io import atomic_write, check_writable
from lseg.models.config import LSegConfig, ResNetConfig, SpatialBlockConfig, TextEncoderConfig, ViTConfig
from lseg.models.registry import IMAGENET_MEAN, IMAGENET_STD, check_limits, get_config, list_models
from lseg.pretrained.files import WEIGHTS_NAME, read_checkpoint, read_state_dict  # noqa: F401 - re-exported

if TYPE_CHECKING:  # the model is handed in (load_local, build)
    from lseg.models.lseg import LSeg
    from lseg.pretrained.files import CheckpointFile

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
MODEL_CARD_NAME = "README.md"

# (reference key pattern, our key template); ``{i}`` = the reference's 1-based stage number minus one.
_KEY_MAP: list[tuple[str, str]] = [
    (r"pretrained\.model\.(?P<rest>.+)", "backbone.vit.{rest}"),
    # zero-shot ResNet-101 (LSegRNNetZS): layer1 = Sequential(conv1, bn1, relu, maxpool, layer1)
    (r"pretrained\.layer1\.0\.(?P<rest>.+)", "backbone.resnet.conv1.{rest}"),
    (r"pretrained\.layer1\.1\.(?P<rest>.+)", "backbone.resnet.bn1.{rest}"),
    (r"pretrained\.layer1\.4\.(?P<rest>.+)", "backbone.resnet.layer1.{rest}"),
    (r"pretrained\.layer(?P<s>[234])\.(?P<rest>.+)", "backbone.resnet.layer{s}.{rest}"),
    (r"pretrained\.act_postprocess(?P<n>\d)\.0\.project\.0\.(?P<rest>.+)", "decoder.reassemble.{i}.readout.proj.0.{rest}"),
    (r"pretrained\.act_postprocess(?P<n>\d)\.3\.(?P<rest>.+)", "decoder.reassemble.{i}.project.{rest}"),
    (r"pretrained\.act_postprocess(?P<n>\d)\.4\.(?P<rest>.+)", "decoder.reassemble.{i}.resample.{rest}"),
    (r"scratch\.layer(?P<n>\d)_rn\.(?P<rest>.+)", "decoder.layer_rn.{i}.{rest}"),
    (r"scratch\.refinenet(?P<n>\d)\.resConfUnit1\.(?P<rest>.+)", "decoder.fusion.{i}.rcu_skip.{rest}"),
    (r"scratch\.refinenet(?P<n>\d)\.resConfUnit2\.(?P<rest>.+)", "decoder.fusion.{i}.rcu.{rest}"),
    (r"scratch\.refinenet(?P<n>\d)\.out_conv\.(?P<rest>.+)", "decoder.fusion.{i}.out_conv.{rest}"),
    (r"scratch\.head1\.(?P<rest>.+)", "pixel_proj.{rest}"),
    (r"scratch\.head_block\.depthwise\.depthwise\.(?P<rest>.+)", "spatial_block.conv.{rest}"),
    (r"clip_pretrained\.(?P<rest>.+)", "text_encoder.model.{rest}"),
]
_KEY_MAP_RE = [(re.compile(p), t) for p, t in _KEY_MAP]

#: Reference keys that LSeg never uses and that conversion drops (spec section 11, bug 5).
UNUSED_OFFICIAL_KEYS: list[str] = [
    r"clip_pretrained\.visual\..+",  # CLIP image tower (87.8 M parameters)
    r"clip_pretrained\.logit_scale",  # CLIP's own temperature; LSeg's is fixed at 1/0.07
    r"pretrained\.model\.head\..+",  # timm ImageNet classifier
    r"pretrained\.model\.norm\..+",  # final ViT norm: computed and discarded by the reference
    r"scratch\.refinenet4\.resConfUnit1\..+",  # deepest fusion block has no skip input
]
_UNUSED_RE = re.compile("|".join(f"(?:{p})" for p in UNUSED_OFFICIAL_KEYS))


def is_official_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """True if the keys look like the reference's ``LSegNet`` (``scratch.``/``pretrained.`` prefixes)."""
    return any(k.startswith("scratch.") for k in state_dict) and any(k.startswith("pretrained.") for k in state_dict)


def strip_wrappers(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Remove the prefixes every key carries (``net.``, ``module.``, ``_orig_mod.``, ``model.``)."""
    sd = dict(state_dict)
    prefixes = ("net.", "module.", "_orig_mod.", "model.")
    while sd and (prefix := next((p for p in prefixes if all(k.startswith(p) for k in sd)), None)):
        sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official (reference ``LSegNet``) state dict under our key names, tensors unchanged;
    :data:`UNUSED_OFFICIAL_KEYS` are dropped, any other unknown key is a :class:`CheckpointError`."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in strip_wrappers(state_dict).items():
        if _UNUSED_RE.fullmatch(key):
            continue
        for pattern, template in _KEY_MAP_RE:
            m = pattern.fullmatch(key)
            if m:
                groups = m.groupdict()
                i = int(groups["n"]) - 1 if "n" in groups else 0
                out[template.format(i=i, **groups)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"not an LSeg checkpoint: {len(unknown)} unknown key(s): {_short(unknown)}")
    return out


def to_lseg_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any accepted state dict (ours or official, wrapped or not) under our keys."""
    sd = strip_wrappers(state_dict)
    return convert_official_state_dict(sd) if is_official_state_dict(sd) else sd


def count_parameters(shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Number of parameters (BatchNorm statistics left out) in a state dict given as ``{key: shape}``."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in shapes.items() if not k.endswith(buffers))


def _short(keys: list[str], n: int = 6) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def infer_config(state_dict: Mapping[str, torch.Tensor],
                 spatial_block: SpatialBlockConfig | None = None) -> LSegConfig:
    """The :class:`LSegConfig` of a state dict (ours or official), read from tensor shapes (a
    registered config when the shapes agree). Shapes cannot tell ``arch_option`` 1 from 2 nor
    ``block_depth``: a checkpoint with a spatial block needs ``spatial_block``."""
    sd = to_lseg_keys(state_dict)
    try:
        features = sd["decoder.layer_rn.0.weight"].shape[0]
        t_pos = sd["text_encoder.model.positional_embedding"]
        t_proj = sd["text_encoder.model.text_projection"]
        t_layers = 1 + _max_index(sd, "text_encoder.model.transformer.resblocks.")
        backbone = _infer_resnet(sd) if "backbone.resnet.conv1.weight" in sd else _infer_vit(sd)
        vocab_size = sd["text_encoder.model.token_embedding.weight"].shape[0]
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"not an LSeg state dict (missing {e})") from None
    width = t_pos.shape[1]
    text = TextEncoderConfig(
        clip_name="ViT-B-32" if width == 512 else "RN50x16" if width == 768 else f"width{width}",
        width=width, layers=t_layers, heads=max(1, width // 64), embed_dim=t_proj.shape[1],
        context_length=t_pos.shape[0], vocab_size=vocab_size,
    )
    is_vit = isinstance(backbone, ViTConfig)
    readout = "project" if "decoder.reassemble.0.readout.proj.0.weight" in sd or not is_vit else "ignore"
    has_block = "spatial_block.conv.weight" in sd
    if has_block and (spatial_block is None or spatial_block.arch_option not in (1, 2)):
        raise CheckpointError(
            "this checkpoint has a spatial regularisation block: say which with "
            "arch_option=1|2 and block_depth=N (CLI: --arch-option, --block-depth; lseg train has neither: "
            "`lseg convert CKPT DIR` with them, then --init-checkpoint DIR); shapes cannot tell"
        )
    if not has_block and spatial_block is not None and spatial_block.arch_option:
        raise CheckpointError("this checkpoint has no spatial regularisation block: leave out arch_option and "
                              "block_depth (CLI: --arch-option, --block-depth)")
    # A registered config with the same shapes knows heads, hooks and normalisation.
    base = next((c for c in map(get_config, list_models(include_test=True))
                 if _same_shapes(c, backbone, text, features)), None)
    if base is None:
        norm = {} if is_vit else {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}  # the reference's ResNets
        base = LSegConfig(name="custom", backbone=backbone, text=text, features=features, **norm)  # type: ignore[arg-type]
    # no block: only the (unused) activation is kept, as given
    no_block = SpatialBlockConfig(activation=spatial_block.activation if spatial_block else base.activation)
    return base.replace(readout=readout).with_spatial_block(spatial_block if has_block else no_block)


def _max_index(sd: Mapping[str, Any], prefix: str) -> int:
    """Largest ``N`` of the keys ``prefix + "N." ...`` (ValueError if there are none)."""
    return max(int(k[len(prefix):].split(".", 1)[0]) for k in sd if k.startswith(prefix))


def _infer_vit(sd: Mapping[str, torch.Tensor]) -> ViTConfig:
    pos = sd["backbone.vit.pos_embed"]
    patch = sd["backbone.vit.patch_embed.proj.weight"].shape[-1]
    depth = 1 + _max_index(sd, "backbone.vit.blocks.")
    dim = pos.shape[-1]
    channels = tuple(sd[f"decoder.reassemble.{i}.project.weight"].shape[0] for i in range(4))
    grid = round((pos.shape[1] - 1) ** 0.5)
    step = depth // 4
    # timm_name, hooks and heads are not in the shapes: a matching registered config supplies them;
    # else hooks are spread evenly, as in the released networks.
    return ViTConfig(
        timm_name="vit_base_patch32_384" if patch == 32 else "vit_large_patch16_384",
        hooks=tuple(step * (k + 1) - 1 for k in range(4)),  # type: ignore[arg-type]
        reassemble_channels=channels, img_size=grid * patch, patch_size=patch,  # type: ignore[arg-type]
        embed_dim=dim, depth=depth, num_heads=max(1, dim // 64),
    )


def _infer_resnet(sd: Mapping[str, torch.Tensor]) -> ResNetConfig:
    layers = tuple(1 + _max_index(sd, f"backbone.resnet.layer{s}.") for s in range(1, 5))
    width = sd["backbone.resnet.layer1.0.conv1.weight"].shape[0]  # = width_per_group (planes 64)
    return ResNetConfig(layers=layers, width_per_group=width)  # type: ignore[arg-type]


def _same_shapes(c: LSegConfig, backbone: ViTConfig | ResNetConfig, text: TextEncoderConfig, features: int) -> bool:
    """Whether the registered ``c`` has the shapes ``backbone``/``text``/``features`` were read from."""
    # attention heads and the CLIP name are not in the shapes: take the registered values
    if c.text != dataclasses.replace(text, heads=c.text.heads, clip_name=c.text.clip_name) or c.features != features:
        return False
    b = c.backbone
    if isinstance(backbone, ResNetConfig) or isinstance(b, ResNetConfig):
        return b == backbone
    patch = backbone.patch_size
    return (
        b.reassemble_channels == backbone.reassemble_channels
        and (b.depth or backbone.depth) == backbone.depth
        and (b.embed_dim or backbone.embed_dim) == backbone.embed_dim
        and (b.patch_size or patch) == patch
        and (b.patch_size is not None or f"patch{patch}" in b.timm_name)
        and (b.img_size // patch) * patch == backbone.img_size  # type: ignore[operator]
    )


def load_weights(model: LSeg, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strictly load a state dict (ours or official) into ``model``, floating tensors cast to its
    precision; every key that does not fit is listed in one :class:`CheckpointError`. A model on the
    meta device takes the tensors over (``assign=True``): no second copy in memory."""
    sd = to_lseg_keys(state_dict)
    own = model.state_dict()
    problems = fit_problems(own, {k: tuple(v.shape) for k, v in sd.items()})
    bad_dtype = [f"{k} {sd[k].dtype} (expected {own[k].dtype})" for k in own
                 if k in sd and sd[k].is_floating_point() != own[k].is_floating_point()]
    if bad_dtype:
        problems.append(f"{len(bad_dtype)} with wrong dtype: {_short(bad_dtype, 3)}")
    if problems:
        raise CheckpointError(f"checkpoint does not fit {model.config.name}: " + "; ".join(problems))
    on_meta = model.pixel_mean.is_meta
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True, assign=on_meta)
    if on_meta:
        model.init_non_persistent_buffers("cpu")


def fit_problems(own: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """What keeps tensors of these ``shapes`` (lseg keys) from loading into a model whose state dict is
    ``own``, one phrase per kind (empty: they fit). Needs no data (a meta model, a safetensors header)."""
    missing = [k for k in own if k not in shapes]
    unexpected = [k for k in shapes if k not in own]
    bad_shape = [f"{k} {tuple(shapes[k])} != {tuple(own[k].shape)}"
                 for k in own if k in shapes and tuple(shapes[k]) != tuple(own[k].shape)]
    kinds = [("missing", missing, 6), ("unexpected", unexpected, 6), ("with wrong shape", bad_shape, 3)]
    return [f"{len(keys)} {kind}: {_short(keys, n)}" for kind, keys, n in kinds if keys]


def load_local(model_cls: type[LSeg], path: str | os.PathLike[str], *,
               spatial_block: SpatialBlockConfig | None = None) -> LSeg:
    """``model_cls`` (:class:`lseg.LSeg`) from a *local* lseg folder, ``.safetensors`` or official
    ``.ckpt``, on the CPU, in eval mode; without a ``config.json``, :func:`infer_config`."""
    p = Path(path)
    config = read_config(p) if p.is_dir() else None  # first: a folder without config.json says so
    ckpt = read_checkpoint(p)
    sd = to_lseg_keys(ckpt.state_dict)  # converted once, for both infer_config and build
    config = config or config_beside(p, ckpt)
    if config is not None and spatial_block is not None and _differ(spatial_block, config.spatial_block):
        raise CheckpointError(f"{p} holds an lseg model with its own spatial block ({_block(config.spatial_block)}): "
                              f"spatial_block ({_block(spatial_block)}; CLI: --arch-option, --block-depth) is for "
                              "official checkpoints; leave it out")
    return build(model_cls, config or infer_config(sd, spatial_block=spatial_block), sd)


def _differ(a: SpatialBlockConfig, b: SpatialBlockConfig) -> bool:
    """Whether two spatial blocks differ (the activation only counts with a block)."""
    same_activation = not a.arch_option or a.activation == b.activation
    return (a.arch_option, a.block_depth) != (b.arch_option, b.block_depth) or not same_activation


def _block(b: SpatialBlockConfig) -> str:
    return f"arch_option {b.arch_option}" + (f", block_depth {b.block_depth}, {b.activation}" if b.arch_option else "")


def config_beside(p: Path, checkpoint: CheckpointFile) -> LSegConfig | None:
    """The config of the weights file ``p`` (``checkpoint``: as read) if the weights are ours (not
    official): the model config an lseg training checkpoint stores, else the ``config.json`` beside it;
    else None."""
    if is_official_state_dict(strip_wrappers(checkpoint.state_dict)):
        return None
    if checkpoint.config is not None:
        return _checked_config(dict(checkpoint.config), p)
    return read_config(p.parent) if (p.parent / CONFIG_NAME).is_file() else None


def build(model_cls: type[LSeg], config: LSegConfig, state_dict: Mapping[str, torch.Tensor]) -> LSeg:
    """``model_cls(config)`` built on the meta device (no random init, no second copy of the weights),
    ``state_dict`` loaded strictly, in eval mode."""
    with torch.device("meta"):
        model = model_cls(config)
    load_weights(model, state_dict)
    return model.eval()


def save_pretrained(model: LSeg, directory: str | os.PathLike[str], *, model_card: bool = False,
                    repo_id: str | None = None, **card_fields: str) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (each atomically), and with ``model_card`` a
    ``README.md`` (:func:`render_model_card`). Returns the folder (:func:`lseg.load_model` reads it)."""
    from lseg.models.config import unwrapped

    model = unwrapped(model, "save_pretrained")
    if model.precision == "int8":
        raise ConfigError("an int8 model is not saved (int8 is a way of running): save the model before "
                          "set_precision('int8')")
    d = check_writable(directory)  # a file where a folder of the path should be: one line
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(d / WEIGHTS_NAME, lambda tmp: _save_safetensors(tensors, tmp))
    config = {"format_version": FORMAT_VERSION, **model.config.to_dict()}
    atomic_write(d / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    if model_card:
        text = render_model_card(model, repo_id=repo_id, **card_fields)
        atomic_write(d / MODEL_CARD_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return d


def _save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """``save_file`` to ``path``; a write error is the ``OSError`` it reports (``atomic_write`` names the
    file and the remedy, as for any other write)."""
    try:
        save_file(tensors, str(path), metadata={"format": "pt"})
    except SafetensorError as e:  # e.g. "I/O error: No space left on device (os error 28)"
        m = re.search(r"os error (\d+)|code: (\d+)", str(e))
        code = int(m.group(1) or m.group(2)) if m else errno.EIO
        raise OSError(code, os.strerror(code) if m else one_line(e), str(path)) from None


def render_model_card(model: LSeg, repo_id: str | None = None, **fields: str) -> str:
    """``model_card.md`` filled in for ``model``; ``fields`` override its values (``trained_on="ADE20K"``)."""
    cfg = model.config
    if isinstance(cfg.backbone, ResNetConfig):
        image_encoder = f"{cfg.backbone.torchvision_name} (torchvision; layers {list(cfg.backbone.layers)})"
    else:
        image_encoder = f"{cfg.backbone.timm_name} (timm; hooks {list(cfg.backbone.hooks)})"
    block = cfg.spatial_block
    block_text = f"arch_option {block.arch_option}, block_depth {block.block_depth}, {block.activation}"
    values = {
        "repo_id": repo_id or "<owner>/<repo>",
        "title": f"{repo_id}: LSeg ({cfg.name})" if repo_id else f"LSeg ({cfg.name})",
        "model_name": cfg.name,
        "image_encoder": image_encoder,
        "text_encoder": f"CLIP {cfg.text.clip_name} text tower (frozen)",
        "embed_dim": str(cfg.embed_dim),
        "parameters": f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M",
        "spatial_block": block_text if block.arch_option else "none",
        "trained_on": "unknown (fill in: which official checkpoint or which fine-tuning data)",
        "license": "other",
        **fields,
    }
    text = resources.files("lseg.pretrained").joinpath("model_card.md").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{ " + key + " }}", str(value))
    if "{{ " in text:
        start = text.index("{{ ")
        raise ValueError(f"model card template has an unfilled placeholder: {text[start:start + 30]!r}")
    return text


def read_config(directory: str | os.PathLike[str]) -> LSegConfig:
    """The checked :class:`LSegConfig` in ``config.json`` of an lseg folder."""
    p = Path(directory) / CONFIG_NAME
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{p.parent} has no {CONFIG_NAME}: not an lseg model folder") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{p}: an lseg config must be a JSON object, got {type(data).__name__}")
    version = data.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{p}: unsupported format_version {version!r} (this lseg reads {FORMAT_VERSION})")
    return _checked_config(data, p)


def _checked_config(data: dict[str, Any], p: Path) -> LSegConfig:
    """The :class:`LSegConfig` of ``data`` (``LSegConfig.to_dict()``, read from ``p``), within the limits."""
    try:
        config = LSegConfig.from_dict(data)
        check_limits(config)  # before anything is allocated
    except ConfigError as e:
        raise CheckpointError(f"{p}: {e}") from None
    return config
