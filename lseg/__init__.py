"""lseg: language-driven semantic segmentation (LSeg, Li et al., ICLR 2022); README.md shows the API.
The names below are imported on first use (PEP 562): ``import lseg`` and ``lseg --help`` import no torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: module -> the public names it defines
_MODULES = {
    "lseg.errors": ("CheckpointError", "ConfigError", "ImageLoadError", "LabelError", "LSegError", "OutputWriteError",
                    "WeightsDownloadError"),
    "lseg.inference.folder": ("segment_folder",),
    "lseg.inference.options": ("PredictorOptions", "SegmentOptions"),
    "lseg.inference.predictor": ("ImageEmbedding", "LSegPredictor", "MultiScaleConfig", "SegmentationResult"),
    "lseg.models": ("LSegConfig", "SpatialBlockConfig", "TextEncoderConfig", "ViTConfig", "get_config", "list_models"),
    "lseg.models.lseg": ("LSeg",),
    "lseg.pretrained.checkpoints": ("convert_official_state_dict", "read_state_dict"),
    "lseg.pretrained.hub": ("push_to_hub", "save_pretrained"),
    "lseg.pretrained.load": ("create_model", "load_model"),
    "lseg.pretrained.released": ("list_pretrained",),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = [
    "CheckpointError",
    "ConfigError",
    "ImageEmbedding",
    "ImageLoadError",
    "LSeg",
    "LSegConfig",
    "LSegError",
    "LSegPredictor",
    "LabelError",
    "MultiScaleConfig",
    "OutputWriteError",
    "PredictorOptions",
    "SegmentOptions",
    "SegmentationResult",
    "SpatialBlockConfig",
    "TextEncoderConfig",
    "ViTConfig",
    "WeightsDownloadError",
    "convert_official_state_dict",
    "create_model",
    "get_config",
    "list_models",
    "list_pretrained",
    "load_model",
    "push_to_hub",
    "read_state_dict",
    "save_pretrained",
    "segment_folder",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports them
    from lseg.errors import (
        CheckpointError,
        ConfigError,
        ImageLoadError,
        LabelError,
        LSegError,
        OutputWriteError,
        WeightsDownloadError,
    )
    from lseg.inference.folder import segment_folder
    from lseg.inference.options import PredictorOptions, SegmentOptions
    from lseg.inference.predictor import ImageEmbedding, LSegPredictor, MultiScaleConfig, SegmentationResult
    from lseg.models import (
        LSegConfig,
        SpatialBlockConfig,
        TextEncoderConfig,
        ViTConfig,
        get_config,
        list_models,
    )
    from lseg.models.lseg import LSeg
    from lseg.pretrained.checkpoints import convert_official_state_dict, read_state_dict
    from lseg.pretrained.hub import push_to_hub, save_pretrained
    from lseg.pretrained.load import create_model, load_model
    from lseg.pretrained.released import list_pretrained
