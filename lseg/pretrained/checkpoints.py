"""Reading, converting and writing LSeg weights: the one place that knows checkpoint formats.

Formats:

* **Official** lang-seg PyTorch-Lightning ``.ckpt`` (``demo_e200.ckpt``, ``lseg_ade20k_l16.ckpt``,
  ``fss_l16.ckpt``, ...): ``ckpt["state_dict"]`` with keys ``net.<reference key>``; CLIP weights in
  fp16. Read with ``torch.load(weights_only=True)``: a pickle that would run code is refused.
* **lseg folder** (ours, = huggingface_hub ``PyTorchModelHubMixin`` layout): ``model.safetensors``
  (fp32, our key names) + ``config.json`` (:class:`LSegConfig` + ``format_version``).

:func:`convert_official_state_dict` is the single documented key map between the two.

One module on purpose (it is over 500 lines): the key map, the config inference that reads the
same keys, the safe reading of every accepted file format (the ``torch.load`` allowlist and the zip
checks) and our folder format are one job, "what a checkpoint file holds and how it maps onto the
model", and each part is needed to change any other (a new released format touches the reader, the
key map and the inference together). Loading by name, path or Hub id is :func:`lseg.load_model`
(:mod:`lseg.pretrained.load`); this module never imports the model class (:func:`load_local` is given it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lseg.errors import CheckpointError, ConfigError
from lseg.io import atomic_write
from lseg.models.config import LSegConfig, ResNetConfig, SpatialBlockConfig, TextEncoderConfig, ViTConfig
from lseg.models.registry import IMAGENET_MEAN, IMAGENET_STD, check_limits, get_config, list_models

if TYPE_CHECKING:  # the model imports lseg.pretrained.hub, which imports this module: no run-time import back
    from lseg.models.lseg import LSeg

_logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

# --------------------------------------------------------------------------- official key map

# (reference key pattern, our key template). Stage numbers are 1-based in the reference and
# 0-based here; ``{i}`` is the reference number minus one, ``{rest}`` the remainder of the key.
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
_WRAPPER_PREFIXES = ("net.", "module.", "_orig_mod.", "model.")


def is_official_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """True if the keys look like the reference's ``LSegNet`` (``scratch.``/``pretrained.`` prefixes)."""
    return any(k.startswith("scratch.") for k in state_dict) and any(k.startswith("pretrained.") for k in state_dict)


def strip_wrappers(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Remove ``net.`` (Lightning module attribute), ``module.`` (DDP) and ``_orig_mod.``
    (torch.compile) prefixes when every key carries them."""
    sd = dict(state_dict)
    changed = True
    while changed and sd:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an official (reference ``LSegNet``) state dict to this package's key names.

    Accepts keys with or without the Lightning ``net.`` prefix. Unused reference weights
    (:data:`UNUSED_OFFICIAL_KEYS`) are dropped; tensors keep their dtype (the official CLIP
    tower is stored in fp16). A key that matches neither the map nor the unused list raises
    :class:`CheckpointError` listing it: nothing is silently ignored.
    """
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


_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm statistics


def count_parameters(shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Number of parameters (not BatchNorm buffers) in a state dict given as ``{key: shape}``:
    what ``sum(p.numel() for p in net.parameters())`` of the network that saved it says."""
    return sum(math.prod(s) for k, s in shapes.items() if not k.endswith(_BUFFER_SUFFIXES))


def _short(keys: list[str], n: int = 6) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# --------------------------------------------------------------------------- config inference

def infer_config(
    state_dict: Mapping[str, torch.Tensor], spatial_block: SpatialBlockConfig | None = None
) -> LSegConfig:
    """Reconstruct the :class:`LSegConfig` of a state dict (ours or official) from tensor shapes.

    Matches a registered model when the shapes agree. What shapes cannot tell: ``arch_option``
    1 vs 2 and ``block_depth`` (the spatial block's weights are the same for both); pass
    ``spatial_block`` for a checkpoint with a spatial block, else :class:`CheckpointError` says so.
    It is ignored for a checkpoint without one.
    """
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
            "arch_option=1|2 and block_depth=N (CLI: --arch-option, --block-depth); shapes cannot tell"
        )
    # Prefer a registered config with the same shapes (it knows heads, hooks and normalisation).
    base = next((c for c in map(get_config, list_models(include_test=True))
                 if _same_shapes(c, backbone, text, features)), None)
    if base is None:
        norm = {} if is_vit else {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}  # the reference's ResNets
        base = LSegConfig(name="custom", backbone=backbone, text=text, features=features, **norm)  # type: ignore[arg-type]
    if has_block and spatial_block is not None:
        block = spatial_block
    else:  # no block: only the (unused) activation is kept, as given
        block = SpatialBlockConfig(activation=spatial_block.activation if spatial_block else base.activation)
    return base.replace(readout=readout).with_spatial_block(block)


def to_lseg_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any accepted state dict (ours or official, with or without wrapper prefixes) under our keys."""
    sd = strip_wrappers(state_dict)
    return convert_official_state_dict(sd) if is_official_state_dict(sd) else sd


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
    # timm_name/hooks/heads are not visible in shapes: a registered config with these shapes supplies
    # them (see _same_shapes); otherwise hooks are spread evenly as in the released networks.
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
    """Whether the registered ``c`` has the weight shapes that ``backbone``/``text``/``features``
    were read from (fields that shapes cannot show are taken from ``c``)."""
    # attention heads are not visible in weight shapes: take the registered value
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


# --------------------------------------------------------------------------- file reading

def _checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The weights file ``path`` names (an lseg folder means its ``model.safetensors``); it must
    exist and not be empty."""
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_NAME
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {p}")
    return p


#: Globals that released LSeg-family PyTorch-Lightning 1.x checkpoints carry and that are inert
#: (full name -> why it is there). Each resolves to a stand-in that stores nothing and runs nothing;
#: any other global is refused. Lightning 1.x keys ``ckpt["callbacks"]`` by the callback *class*
#: (``callback_states[type(callback)]``), so the class itself is pickled as a dict key.
ALLOWED_GLOBALS: dict[str, str] = {
    **{
        f"pytorch_lightning.callbacks.{name}": "Lightning 1.x callback class, used as the key of its saved state"
        for name in (
            "model_checkpoint.ModelCheckpoint",
            "early_stopping.EarlyStopping",
            "lr_monitor.LearningRateMonitor",
            "progress.ProgressBar",
            "progress.tqdm_progress.TQDMProgressBar",
            "gpu_stats_monitor.GPUStatsMonitor",
            "stochastic_weight_avg.StochasticWeightAveraging",
            "timer.Timer",
            "model_summary.ModelSummary",
            "finetuning.BackboneFinetuning",
        )
    },
    "argparse.Namespace": "hyper_parameters of fine-tuned checkpoints (plain attribute bag)",
    "pytorch_lightning.utilities.parsing.AttributeDict": "hyper_parameters saved by save_hyperparameters() (a dict)",
}


class _InertStandIn:
    """What an allowlisted class resolves to: accepts any arguments and state, does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} (not loaded)>"


class _AttributeDictStandIn:
    """Lightning's ``AttributeDict`` is a dict subclass: rebuild it as a plain dict (the unpickler
    fills only exact dicts)."""

    def __new__(cls, *args: Any) -> dict[str, Any]:  # type: ignore[misc]
        return {}


def _stand_ins() -> list[tuple[Any, str]]:
    out: list[tuple[Any, str]] = []
    for full in ALLOWED_GLOBALS:
        module, _, name = full.rpartition(".")
        if full == "argparse.Namespace":
            out.append((argparse.Namespace, full))  # inert already: a bag of attributes
        elif full.endswith("AttributeDict"):
            out.append((_AttributeDictStandIn, full))
        else:
            out.append((type(name, (_InertStandIn,), {"__module__": module, "__qualname__": name}), full))
    return out


@dataclasses.dataclass
class CheckpointFile:
    """What :func:`read_checkpoint` found in a weights file.

    Attributes:
        state_dict: the model tensors (wrappers such as Lightning's ``state_dict`` removed).
        format: ``safetensors``, ``lightning`` (a PyTorch-Lightning ``.ckpt``) or ``torch``.
        metadata: for Lightning files ``pytorch-lightning_version``, ``epoch``, ``global_step`` (as
            found), ``callbacks`` (class names) and ``contents`` (the top-level keys).
    """

    state_dict: dict[str, torch.Tensor]
    format: str
    metadata: dict[str, Any]


def read_checkpoint(path: str | os.PathLike[str]) -> CheckpointFile:
    """Read tensors and metadata from ``.safetensors`` or a torch file (``.ckpt``/``.pth``/``.pt``), safely.

    Torch files are opened with ``torch.load(weights_only=True)``: only tensors, plain containers and
    the inert names of :data:`ALLOWED_GLOBALS` are accepted, so a checkpoint that embeds code is
    refused, never executed. Zip files (every torch >= 1.6 file, the released LSeg checkpoints
    included) are memory-mapped: only the tensors that are used are ever read, so optimizer state
    (about the size of the weights again) costs no memory. Legacy (non-zip) files are read whole.
    Tensors saved on a GPU are mapped to the CPU.
    """
    p = _checkpoint_file(path)
    if _is_safetensors(p):
        try:
            return CheckpointFile(load_file(str(p)), "safetensors", {})
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"cannot read safetensors file {p} (truncated or corrupt?): {e}") from None
    obj = load_torch_file(p)
    metadata: dict[str, Any] = {}
    fmt = "torch"
    if isinstance(obj, dict) and "pytorch-lightning_version" in obj:
        fmt = "lightning"
        metadata = {k: obj[k] for k in ("pytorch-lightning_version", "epoch", "global_step") if k in obj}
        callbacks = obj.get("callbacks")
        if isinstance(callbacks, dict):
            metadata["callbacks"] = sorted(getattr(k, "__name__", str(k)) for k in callbacks)
        metadata["contents"] = sorted(str(k) for k in obj)
    return CheckpointFile(_unwrap(obj, p), fmt, metadata)


def load_torch_file(path: str | os.PathLike[str], *, kind: str = "checkpoint", mmap: bool = True) -> Any:
    """lseg's one ``torch.load``: ``weights_only=True`` (plus the inert :data:`ALLOWED_GLOBALS`), a zip
    checked before it is read (:func:`_check_torch_zip`), every failure one line naming ``path`` as a
    ``kind`` ("checkpoint", "training checkpoint"). ``mmap``: map a zip's tensors instead of reading
    them (only those used are ever read); a legacy non-zip file is read whole. Loaded to the CPU.

    Raises:
        CheckpointError: unreadable, not a torch file, or it would run code.
    """
    p = Path(os.fspath(path))
    is_zip = zipfile.is_zipfile(p)
    if is_zip:
        _check_torch_zip(p, kind)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_stand_ins()):
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # the refusal below says it
            return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except Exception as e:  # noqa: BLE001 - torch.load fails in many ways (KeyError for text files, ...)
        raise _torch_load_error(p, e, kind) from None


#: The pickle of a torch zip holds structure only (about 100 bytes per tensor); a larger one is not a
#: checkpoint, and unpickling it would cost memory before any error.
MAX_PICKLE_BYTES = 256 << 20


def _check_torch_zip(p: Path, kind: str) -> None:
    """Refuse a zip that could inflate on reading, before ``torch.load`` touches it: torch stores its
    records uncompressed, so a compressed record, a record reaching past the end of the file, or an
    oversized pickle means a corrupt or hostile file."""
    size = p.stat().st_size
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"cannot read {kind} {p} (truncated or corrupt?): {e}") from None
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{p}: record {info.filename} is compressed; PyTorch never compresses its "
                                  f"records, so this is not a {kind}")
        if info.header_offset + info.file_size > size:
            raise CheckpointError(f"cannot read {kind} {p} (truncated or corrupt?): record {info.filename} "
                                  f"claims {info.file_size} bytes past the end of the file")
        if info.filename.endswith("data.pkl") and info.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"{p}: its pickle is {info.file_size / 2**20:.0f} MiB (at most "
                                  f"{MAX_PICKLE_BYTES >> 20} MiB for a {kind}): refusing to unpickle it")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model tensors of a weights file (see :func:`read_checkpoint`)."""
    return read_checkpoint(path).state_dict


def _torch_load_error(p: Path, e: Exception, kind: str) -> CheckpointError:
    """One clear line for a failed ``torch.load``: not a checkpoint / unsafe pickle / corrupt."""
    with open(p, "rb") as f:
        head = f.read(8)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch zip, or a pickle (protocol >= 2)
        return CheckpointError(
            f"{p} is not a {kind}: neither safetensors nor a PyTorch zip/pickle file (first bytes "
            f"{head.hex()}); check the path"
        )
    text = str(e)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(e, pickle.UnpicklingError) and "weights only" in text.lower():
        m = re.search(r"GLOBAL (\S+?)[ ,.]* was not an allowed global|GLOBAL (\S+)", text)
        if m:
            detail = f"Unsupported global: GLOBAL {m.group(1) or m.group(2)}"
        elif "Unsupported operand" in text:
            # An opcode the safe unpickler lacks (protocol 4/5 framing, or garbage): the stream's
            # globals say whether it names code to run.
            foreign = _foreign_global(p)
            if foreign is None:
                op = next(line for line in lines if "Unsupported operand" in line)
                return CheckpointError(f"cannot read {kind} {p}: torch's safe loader does not support its pickle "
                                       f"({op}: a damaged file, or saved with a pickle protocol above 2; re-save it "
                                       "with torch.save's default protocol)")
            detail = f"Unsupported global: GLOBAL {foreign}"
        else:
            detail = next((line for line in lines if "Unsupported" in line or "Trying" in line or "Can only" in line),
                          "weights_only=True")
        return CheckpointError(
            f"refusing to load {p}: it contains Python objects that are not plain tensors "
            f"(loading it would run code): {detail}"
        )
    first = lines[0] if lines else type(e).__name__
    return CheckpointError(f"cannot read {kind} {p} (truncated or corrupt?): {first}")


def _foreign_global(p: Path) -> str | None:
    """The first global that a torch file's pickles name and ``weights_only`` does not allow, found by
    reading the opcodes (:mod:`pickletools`: nothing is unpickled); None if there is none before the
    streams end or break."""
    from torch._weights_only_unpickler import _get_allowed_globals

    allowed = {*_get_allowed_globals(), *ALLOWED_GLOBALS}
    with contextlib.ExitStack() as stack:
        if zipfile.is_zipfile(p):
            zf = stack.enter_context(zipfile.ZipFile(p))
            pkl = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
            if pkl is None:
                return None
            f = stack.enter_context(zf.open(pkl))
        else:
            f = stack.enter_context(open(p, "rb"))  # a legacy file: several pickles in a row
        strings: list[str] = []
        try:
            while f.read(1):
                f.seek(-1, os.SEEK_CUR)
                for op, arg, _ in pickletools.genops(f):
                    name = None
                    if op.name in ("GLOBAL", "INST"):
                        name = str(arg).replace(" ", ".")
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        name = ".".join(strings[-2:])
                    elif isinstance(arg, str):
                        strings = [*strings[-1:], arg]  # STACK_GLOBAL takes the last two
                    if name is not None and name not in allowed:
                        return name
        except Exception:  # noqa: BLE001 - a broken stream: what was read named nothing foreign
            return None
    return None


def safetensors_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a ``.safetensors`` file (or an lseg folder's weights), read from
    its header without loading data; a truncated or corrupt file raises :class:`CheckpointError`."""
    from safetensors import safe_open

    p = _checkpoint_file(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read safetensors file {p} (truncated or corrupt?): {e}") from None


def _is_safetensors(p: Path) -> bool:
    if p.suffix == ".safetensors":
        return True
    with open(p, "rb") as f:  # safetensors = 8-byte little-endian header length + JSON header
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _unwrap(obj: Any, p: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
    return obj


# --------------------------------------------------------------------------- loading into a model

def load_weights(model: LSeg, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strictly load a state dict (ours or official) into ``model``.

    Every missing, unexpected or mis-shaped key is reported in one :class:`CheckpointError`;
    floating tensors of another precision are cast, other dtype mismatches are errors. A model
    built on the meta device takes the tensors over (``assign=True``): no second copy in memory.
    """
    sd = to_lseg_keys(state_dict)
    own = model.state_dict()
    problems = fit_problems(own, {k: tuple(v.shape) for k, v in sd.items()})
    bad_dtype = [
        f"{k} {sd[k].dtype} (expected {own[k].dtype})"
        for k in own
        if k in sd and sd[k].is_floating_point() != own[k].is_floating_point()
    ]
    if bad_dtype:
        problems.append(f"{len(bad_dtype)} with wrong dtype: {_short(bad_dtype, 3)}")
    if problems:
        raise CheckpointError(
            f"checkpoint does not fit {model.config.name}: " + "; ".join(problems)
        )
    on_meta = model.pixel_mean.is_meta
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True, assign=on_meta)
    if on_meta:
        model.init_non_persistent_buffers("cpu")


def fit_problems(own: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """What keeps tensors of these ``shapes`` (lseg keys) from loading into a model whose state dict is
    ``own``: missing, unexpected and mis-shaped keys, one phrase each (empty: they fit). Shapes are
    enough, so a model on the meta device and a safetensors header check a file without loading it."""
    missing = [k for k in own if k not in shapes]
    unexpected = [k for k in shapes if k not in own]
    bad_shape = [f"{k} {tuple(shapes[k])} != {tuple(own[k].shape)}"
                 for k in own if k in shapes and tuple(shapes[k]) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_short(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_short(unexpected)}")
    if bad_shape:
        problems.append(f"{len(bad_shape)} with wrong shape: {_short(bad_shape, 3)}")
    return problems


# --------------------------------------------------------------------------- our folder format

def save_pretrained(model: LSeg, directory: str | os.PathLike[str]) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``directory`` (each written atomically)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(d / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    config = {"format_version": FORMAT_VERSION, **model.config.to_dict()}
    atomic_write(d / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    return d


def read_config(directory: str | os.PathLike[str]) -> LSegConfig:
    """Read ``config.json`` of an lseg folder."""
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
    try:
        config = LSegConfig.from_dict(data)
        check_limits(config)  # before anything is allocated
    except ConfigError as e:
        raise CheckpointError(f"{p}: {e}") from None
    return config


def load_local(
    model_cls: type[LSeg],
    path: str | os.PathLike[str],
    *,
    spatial_block: SpatialBlockConfig | None = None,
) -> LSeg:
    """Build ``model_cls`` (:class:`lseg.LSeg`) from a *local* lseg folder, ``.safetensors`` file or
    official ``.ckpt``, on the CPU, in eval mode. Users call :func:`lseg.load_model`, which also takes
    released names and Hub repo ids; this is its local half (and the converter's, in
    :mod:`lseg.pretrained.released`). The class is passed in so that this module never imports the model (the
    model imports :mod:`lseg.pretrained.hub`, which imports this module).

    For files without a ``config.json`` the architecture is inferred from the tensor shapes
    (:func:`infer_config`; ``spatial_block`` says what shapes cannot). The state dict is converted
    to our keys once, here.
    """
    p = Path(path)
    if p.is_dir():
        config = read_config(p)
        sd = read_state_dict(p / WEIGHTS_NAME)
    else:
        raw = strip_wrappers(read_state_dict(p))
        sd = to_lseg_keys(raw)  # converted once, here
        if (p.parent / CONFIG_NAME).is_file() and not is_official_state_dict(raw):
            config = read_config(p.parent)
        else:
            config = infer_config(sd, spatial_block=spatial_block)
    return build(model_cls, config, sd)


def build(model_cls: type[LSeg], config: LSegConfig, state_dict: Mapping[str, torch.Tensor]) -> LSeg:
    """``model_cls(config)`` with ``state_dict`` loaded strictly (:func:`load_weights`), built on the
    meta device (no random init: saves the time and a second copy of the weights), in eval mode."""
    with torch.device("meta"):
        model = model_cls(config)
    load_weights(model, state_dict)
    return model.eval()
