"""LSeg network components and the registry of named configurations.

The network itself is :class:`lseg.models.lseg.LSeg` (``lseg.LSeg``). It is not imported here: the
model class inherits :class:`lseg.pretrained.hub.HubMixin`, and the checkpoint layer under the hub imports the
configs of this package, so importing a config must not import the model.
"""

from lseg.models.config import LSegConfig, SpatialBlockConfig, TextEncoderConfig, ViTConfig
from lseg.models.registry import get_config, list_models

__all__ = ["LSegConfig", "SpatialBlockConfig", "TextEncoderConfig", "ViTConfig", "get_config", "list_models"]
