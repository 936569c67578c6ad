"""A training run's state on disk (``last.ckpt`` / ``best-*.ckpt``): tensors and plain numbers only,
so they load with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lseg.errors import CheckpointError
from lseg.io import atomic_write
from lseg.pretrained.files import load_torch_file

if TYPE_CHECKING:
    from lightning.fabric import Fabric

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "kept_best", "load_checkpoint", "remove_previous_run",
           "resolve_resume", "rng_state", "save_checkpoint", "set_rng_state"]

_logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "lseg-train-checkpoint"
CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """torch / NumPy / Python (and CUDA) RNG states as tensors and numbers (``weights_only``-safe)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(fabric: Fabric, path: Path, state: dict[str, Any]) -> None:
    """Rank 0 writes ``state``, stamped with the format and version, atomically; every process waits."""
    if fabric.is_global_zero:
        state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
        atomic_write(path, lambda p: torch.save(state, p))
    fabric.barrier()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, read safely (:func:`lseg.pretrained.files.load_torch_file`) and checked."""
    # read whole, not mapped: resuming uses every tensor in it
    ckpt = load_torch_file(path, kind="training checkpoint", mmap=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an lseg training checkpoint (made by `lseg train`)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: unsupported training checkpoint version {ckpt.get('version')!r}")
    return ckpt


def resolve_resume(resume: str | Path | bool | None, ckpt_path: Path) -> Path | None:
    if resume in (None, False, "never"):
        return None
    if resume in (True, "auto"):
        return ckpt_path if ckpt_path.is_file() else None
    path = Path(str(resume)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"--resume: checkpoint not found: {path}")
    return path


def kept_best(ckpt: dict[str, Any], checkpoints: Path, monitor: str) -> list[dict[str, Any]]:
    """``ckpt``'s best-k ranking as the run in ``checkpoints`` continues it: its files there (named as they
    were; the folder may have moved); another run's (resumed into a new ``out_dir``) are left alone."""
    ranked_by = ckpt.get("config", {}).get("monitor", monitor)
    if ranked_by != monitor:  # scores of another metric: not comparable
        _logger.warning("the kept best-*.ckpt were ranked by %s; ranking by %s from now on (they stay)",
                        ranked_by, monitor)
        return []
    entries = [{**b, "path": str(checkpoints / Path(b["path"]).name)} for b in ckpt.get("best", [])]
    return [b for b in entries if Path(b["path"]).is_file()]


def remove_previous_run(out_dir: Path) -> None:
    """Delete what an earlier run wrote in ``out_dir`` that a new one replaces: ``checkpoints/last.ckpt``,
    ``checkpoints/best-*.ckpt`` and ``model/`` (its ``config.yaml`` is rewritten, its logs stay)."""
    old = [p for p in [out_dir / "checkpoints" / "last.ckpt", *(out_dir / "checkpoints").glob("best-*.ckpt")]
           if p.is_file()]
    for path in old:
        path.unlink(missing_ok=True)
    if (out_dir / "model" / "model.safetensors").is_file():  # the model it finished with
        old.append(out_dir / "model")
        shutil.rmtree(out_dir / "model")
    if old:
        _logger.info("starting afresh in %s: removed the previous run's %s", out_dir,
                     ", ".join(p.name for p in old))
