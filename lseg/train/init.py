"""The network a run starts from: a checkpoint to fine-tune, or a fresh model with the reference's
initialisation (timm ImageNet ViT + OpenAI CLIP text tower)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch

from lseg.errors import CheckpointError, LSegError
from lseg.models.lseg import LSeg
from lseg.pretrained.checkpoints import read_state_dict, strip_wrappers
from lseg.pretrained.load import create_model, load_model
from lseg.train.config import TrainConfig

__all__ = ["build_model", "load_clip_text_weights"]

_logger = logging.getLogger(__name__)


def build_model(cfg: TrainConfig) -> LSeg:
    """The model ``cfg`` describes, in train mode, on the CPU: ``init_checkpoint``, else
    ``create_model(cfg.model)`` with the CLIP text weights ``clip_text_weights``."""
    if cfg.init_checkpoint:
        model = load_model(cfg.init_checkpoint)
    else:
        model = create_model(cfg.model, pretrained_backbone=cfg.pretrained_backbone)
        if cfg.clip_text_weights:
            load_clip_text_weights(model, cfg.clip_text_weights)
        else:
            _logger.warning(
                "training %s with a randomly initialised (frozen) text encoder: label embeddings are "
                "arbitrary; set clip_text_weights=openai (or a file) for a real run", cfg.model
            )
    return model.train()


def load_clip_text_weights(model: LSeg, source: str | Path) -> None:
    """Copy CLIP text-tower weights into ``model.text_encoder`` from ``"openai"`` (through open_clip), a
    state-dict file under OpenAI's names (or with ``text_encoder.model.`` / ``clip_pretrained.``
    prefixes, e.g. an lseg model), or OpenAI's TorchScript ``.pt``."""
    target = model.text_encoder.model
    own = target.state_dict()
    state = _read_clip_state(source, model.config.text.clip_name)
    picked: dict[str, torch.Tensor] = {}
    missing = []
    for key, tensor in own.items():
        for candidate in (key, f"text_encoder.model.{key}", f"clip_pretrained.{key}"):
            if candidate in state:
                value = state[candidate]
                if tuple(value.shape) != tuple(tensor.shape):
                    raise CheckpointError(
                        f"CLIP text weights {source}: {candidate} has shape {tuple(value.shape)}, "
                        f"the model expects {tuple(tensor.shape)} ({model.config.text.clip_name})"
                    )
                picked[key] = value.to(tensor.dtype)
                break
        else:
            missing.append(key)
    if missing:
        raise CheckpointError(
            f"CLIP text weights {source}: {len(missing)} text-tower tensors missing, e.g. {', '.join(missing[:4])}"
        )
    target.load_state_dict(picked, strict=True)


def _read_clip_state(source: str | Path, clip_name: str) -> dict[str, torch.Tensor]:
    path = Path(source)
    if str(source) != "openai" and path.exists():  # a file, or an lseg model folder
        with contextlib.suppress(LSegError):  # e.g. OpenAI's TorchScript archive: open_clip reads it below
            return strip_wrappers(read_state_dict(path))
    elif str(source) != "openai":
        raise CheckpointError(f"CLIP text weights: {source} is neither 'openai' nor an existing file or folder")
    try:
        import open_clip

        clip = open_clip.create_model(clip_name, pretrained=str(source), device="cpu")
    except Exception as e:  # network errors, unknown files: one clear message
        raise CheckpointError(f"cannot load CLIP {clip_name} weights from {source!r}: {e}") from e
    return {k: v for k, v in clip.state_dict().items() if not k.startswith("visual.")}
