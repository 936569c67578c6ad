"""LSeg network components and the registry of named configurations. The network,
:class:`lseg.models.lseg.LSeg`, is not imported here: importing a config must not import the model."""

from lseg.models.config import LSegConfig, SpatialBlockConfig, TextEncoderConfig, ViTConfig
from lseg.models.registry import get_config, list_models

__all__ = ["LSegConfig", "SpatialBlockConfig", "TextEncoderConfig", "ViTConfig", "get_config", "list_models"]
