"""The one way to get a model: :func:`load_model` (weights from anywhere) and :func:`create_model`
(a registered architecture).

>>> model = lseg.load_model("demo")             # a released name, a local path or a Hub id  # doctest: +SKIP
>>> model = lseg.create_model("lseg_tiny_test")  # random weights                            # doctest: +SKIP
"""

from __future__ import annotations

import os

import torch

from lseg.models.config import SpatialBlockConfig
from lseg.models.lseg import LSeg
from lseg.models.registry import get_config
from lseg.pretrained.checkpoints import build, load_local, read_state_dict
from lseg.pretrained.released import resolve


def load_model(source: str | os.PathLike[str], *, spatial_block: SpatialBlockConfig | None = None,
               map_location: str | torch.device = "cpu", revision: str | None = None,
               cache_dir: str | os.PathLike[str] | None = None, force_download: bool = False,
               token: str | bool | None = None, local_files_only: bool = False) -> LSeg:
    """An :class:`LSeg` from a released weights name (``"demo"``), a local lseg folder, ``.safetensors``
    or official ``.ckpt``, or a Hugging Face Hub repo id (``owner/name``), resolved by
    :func:`lseg.pretrained.released.resolve` (an existing path never touches the network). Without a
    ``config.json`` the architecture is inferred from the shapes. Returned in eval mode and ``plain``
    numerics (:mod:`lseg.models.numerics`).

    Args:
        source: released weights name, local path or Hub repo id.
        spatial_block: for official checkpoints with a spatial regularisation block, which one
            (shapes cannot tell arch_option 1 from 2, nor the depth).
        map_location: device for the weights.
        revision, cache_dir, token: as for ``huggingface_hub.snapshot_download`` (Hub repos).
        force_download, local_files_only: download again / never download (names and Hub repos).

    Raises:
        CheckpointError: not found locally and not obtainable (offline, unknown repo, no access),
            or not an LSeg checkpoint.
    """
    local = resolve(
        source, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
        local_files_only=local_files_only,
    )
    return load_local(LSeg, local, spatial_block=spatial_block).to(map_location)


def create_model(name: str = "lseg_vitl16_384", checkpoint: str | os.PathLike[str] | None = None, *,
                 pretrained_backbone: bool = False) -> LSeg:
    """A registered architecture, randomly initialised or loaded from ``checkpoint``, in eval mode
    and ``plain`` numerics.

    Args:
        name: registry name (``lseg.list_models()``) or a reference backbone name.
        checkpoint: weights to load strictly into it (anything :func:`load_model` takes).
        pretrained_backbone: start the ViT from timm's ImageNet weights (for training).
    """
    if checkpoint is None:
        return LSeg(get_config(name), pretrained_backbone=pretrained_backbone).eval()
    return build(LSeg, get_config(name), read_state_dict(resolve(checkpoint)))
