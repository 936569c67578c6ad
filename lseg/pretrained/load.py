"""The one way to get a model: :func:`load_model` (weights from anywhere), :func:`create_model` (by name)."""

from __future__ import annotations

import os

import torch

from lseg.models.config import SpatialBlockConfig
from lseg.models.devices import check_device
from lseg.models.lseg import LSeg
from lseg.models.registry import get_config
from lseg.pretrained.checkpoints import build, load_local, read_state_dict
from lseg.pretrained.released import resolve


def load_model(source: str | os.PathLike[str], *, spatial_block: SpatialBlockConfig | None = None,
               map_location: str | torch.device = "cpu", revision: str | None = None,
               cache_dir: str | os.PathLike[str] | None = None, force_download: bool = False,
               token: str | bool | None = None, local_files_only: bool = False) -> LSeg:
    """An :class:`LSeg` in eval mode from a released weights name, a local lseg folder, ``.safetensors``
    or official ``.ckpt``, or a Hub repo id (:func:`resolve`; the Hub arguments are
    ``snapshot_download``'s). ``spatial_block``: an official checkpoint's block (shapes cannot tell)."""
    check_device(map_location, "map_location")  # before any download
    local = resolve(
        source, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
        local_files_only=local_files_only,
    )
    return load_local(LSeg, local, spatial_block=spatial_block).to(map_location)


def create_model(name: str = "lseg_vitl16_384", checkpoint: str | os.PathLike[str] | None = None, *,
                 pretrained_backbone: bool = False) -> LSeg:
    """The registered architecture ``name`` in eval mode, randomly initialised (the ViT from timm's
    ImageNet weights with ``pretrained_backbone``) or loaded strictly from ``checkpoint``."""
    if checkpoint is None:
        return LSeg(get_config(name), pretrained_backbone=pretrained_backbone).eval()
    return build(LSeg, get_config(name), read_state_dict(resolve(checkpoint)))
