"""Reading weights files safely: ``.safetensors`` and torch ``.ckpt``/``.pth``/``.pt`` (zip or legacy
pickle). Every torch file goes through :func:`load_torch_file`: a pickle that would run code is refused."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pickle
import pickletools
import re
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from lseg.errors import CheckpointError

#: The weights file of an lseg folder (with ``config.json``).
WEIGHTS_NAME = "model.safetensors"
#: ``format`` of an lseg training checkpoint (``lseg.train.state.CHECKPOINT_FORMAT``, a floor above).
TRAIN_CHECKPOINT_FORMAT = "lseg-train-checkpoint"
#: A torch zip's pickle holds structure only (~100 bytes per tensor); a larger one is not a checkpoint,
#: and unpickling it would cost memory before any error.
MAX_PICKLE_BYTES = 256 << 20


def _checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The weights file ``path`` names (a folder: its ``model.safetensors``), existing and not empty."""
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_NAME
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {p}")
    return p


#: Inert globals that released Lightning 1.x checkpoints carry (full name -> why); each resolves to a
#: stand-in that stores and runs nothing. Lightning 1.x keys ``ckpt["callbacks"]`` by the callback class.
ALLOWED_GLOBALS: dict[str, str] = {
    **{
        f"pytorch_lightning.callbacks.{name}": "Lightning 1.x callback class, used as the key of its saved state"
        for name in (
            "model_checkpoint.ModelCheckpoint", "early_stopping.EarlyStopping",
            "lr_monitor.LearningRateMonitor", "progress.ProgressBar", "progress.tqdm_progress.TQDMProgressBar",
            "gpu_stats_monitor.GPUStatsMonitor", "stochastic_weight_avg.StochasticWeightAveraging",
            "timer.Timer", "model_summary.ModelSummary", "finetuning.BackboneFinetuning",
        )
    },
    "argparse.Namespace": "hyper_parameters of fine-tuned checkpoints (plain attribute bag)",
    "pytorch_lightning.utilities.parsing.AttributeDict": "hyper_parameters saved by save_hyperparameters() (a dict)",
}


def _stand_ins() -> list[tuple[Any, str]]:
    """(stand-in, name) of each allowed global: a callback class becomes a class of that name whose
    instances take any arguments and state and do nothing."""
    special = {"argparse.Namespace": argparse.Namespace,  # inert already
               "pytorch_lightning.utilities.parsing.AttributeDict": dict}  # the unpickler fills only exact dicts
    out: list[tuple[Any, str]] = []
    for full in ALLOWED_GLOBALS:
        module, _, name = full.rpartition(".")
        inert = type(name, (), {"__init__": lambda self, *args, **kwargs: None, "__module__": module,
                                "__qualname__": name})
        out.append((special.get(full, inert), full))
    return out


@dataclasses.dataclass
class CheckpointFile:
    """What :func:`read_checkpoint` found in a weights file.

    Attributes:
        state_dict: the model tensors (wrappers such as Lightning's ``state_dict`` removed).
        format: ``safetensors``, ``lightning`` (a PyTorch-Lightning ``.ckpt``) or ``torch``.
        metadata: Lightning files: ``pytorch-lightning_version``, ``epoch``, ``global_step`` (as
            found), ``callbacks`` (class names) and ``contents`` (the top-level keys).
        config: the model config (``LSegConfig.to_dict()``) an lseg training checkpoint stores, else None.
    """

    state_dict: dict[str, torch.Tensor]
    format: str
    metadata: dict[str, Any]
    config: dict[str, Any] | None = None


def read_checkpoint(path: str | os.PathLike[str]) -> CheckpointFile:
    """Tensors and metadata of a ``.safetensors`` or torch file, read safely (a zip's tensors are
    memory-mapped, so unused ones such as optimizer state are never read)."""
    p = _checkpoint_file(path)
    if _is_safetensors(p):
        try:
            return CheckpointFile(load_file(str(p)), "safetensors", {})
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"cannot read safetensors file {p} (truncated or corrupt?): {e}") from None
    obj = load_torch_file(p)
    state_dict = _unwrap(obj, p)
    if zipfile.is_zipfile(p):
        _check_crcs(p, state_dict)
    if not (isinstance(obj, dict) and "pytorch-lightning_version" in obj):
        trained = isinstance(obj, dict) and obj.get("format") == TRAIN_CHECKPOINT_FORMAT
        stored = obj.get("model_config") if trained else None
        return CheckpointFile(state_dict, "torch", {}, stored if isinstance(stored, dict) else None)
    metadata = {k: obj[k] for k in ("pytorch-lightning_version", "epoch", "global_step") if k in obj}
    if isinstance(obj.get("callbacks"), dict):
        metadata["callbacks"] = sorted(getattr(k, "__name__", str(k)) for k in obj["callbacks"])
    metadata["contents"] = sorted(str(k) for k in obj)
    return CheckpointFile(state_dict, "lightning", metadata)


def _check_crcs(p: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse a tensor whose bytes match no data record's CRC-32 in the zip ``p`` (torch.load checks none);
    only these tensors are read, not the optimizer state."""
    with zipfile.ZipFile(p) as zf:
        crcs = {(i.file_size, i.CRC) for i in zf.infolist() if i.filename.rsplit("/", 2)[-2:-1] == ["data"]}
    seen: set[int] = set()
    for key, tensor in state_dict.items():
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen:
            continue
        seen.add(storage.data_ptr())
        data = torch.empty(0, dtype=torch.uint8).set_(storage).numpy()  # the bytes, not a copy
        if (storage.nbytes(), zlib.crc32(data)) not in crcs:
            raise CheckpointError(f"cannot read checkpoint {p} (truncated or corrupt?): the data of {key} does not "
                                  "match the CRC-32 its zip record holds; download or copy it again")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model tensors of a weights file (see :func:`read_checkpoint`)."""
    return read_checkpoint(path).state_dict


def load_torch_file(path: str | os.PathLike[str], *, kind: str = "checkpoint", mmap: bool = True) -> Any:
    """lseg's one ``torch.load``: ``weights_only=True`` plus the inert :data:`ALLOWED_GLOBALS`, a zip
    checked first, to the CPU (``mmap``: a zip's tensors memory-mapped). ``kind`` names the file in
    errors; any failure, or a pickle that would run code, is one :class:`CheckpointError`."""
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


def _check_torch_zip(p: Path, kind: str) -> None:
    """Refuse a zip that could inflate on reading: torch stores records uncompressed, so a compressed
    record, one reaching past the end of the file, or an oversized pickle is corrupt or hostile."""
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


def _torch_load_error(p: Path, e: Exception, kind: str) -> CheckpointError:
    """One clear line for a failed ``torch.load``: not a checkpoint / unsafe pickle / corrupt."""
    with open(p, "rb") as f:
        head = f.read(8)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch zip, or a pickle (protocol >= 2)
        return CheckpointError(f"{p} is not a {kind}: neither safetensors nor a PyTorch zip/pickle file "
                               f"(first bytes {head.hex()}); check the path")
    text = str(e)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not (isinstance(e, pickle.UnpicklingError) and "weights only" in text.lower()):
        first = lines[0] if lines else type(e).__name__
        return CheckpointError(f"cannot read {kind} {p} (truncated or corrupt?): {first}")
    m = re.search(r"GLOBAL (\S+?)[ ,.]* was not an allowed global|GLOBAL (\S+)", text)
    if m:
        detail = f"Unsupported global: GLOBAL {m.group(1) or m.group(2)}"
    elif "Unsupported operand" in text:
        # An opcode the safe unpickler lacks (protocol 4/5 framing, or garbage): the stream's globals
        # say whether it names code to run.
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
    return CheckpointError(f"refusing to load {p}: it contains Python objects that are not plain tensors "
                           f"(loading it would run code): {detail}")


def _foreign_global(p: Path) -> str | None:
    """The first global a torch file's pickles name that ``weights_only`` does not allow, found by
    reading the opcodes (nothing is unpickled); None if none before the streams end or break."""
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
    """Tensor names and shapes of a ``.safetensors`` file (or an lseg folder's weights), from its header."""
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
