"""LSeg network components and the registry of named configurations."""

from lseg.models.config import LSegConfig, TextEncoderConfig, ViTConfig
from lseg.models.lseg import LSeg
from lseg.models.registry import get_config, list_models

__all__ = ["LSeg", "LSegConfig", "TextEncoderConfig", "ViTConfig", "get_config", "list_models"]
