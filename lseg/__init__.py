"""lseg: language-driven semantic segmentation (LSeg, Li et al., ICLR 2022).

Public API::

    import lseg
    model = lseg.load_model("demo")   # released weights by name, or a path / Hub repo id
    predictor = lseg.LSegPredictor(model)
    result = predictor.segment("photo.jpg", "dog, grass, sky, other")
    result.label_map, result.probs
"""

from lseg.checkpoints import (
    convert_official_state_dict,
    create_model,
    load_model,
    read_state_dict,
    save_pretrained,
)
from lseg.errors import (
    CheckpointError,
    ConfigError,
    ImageLoadError,
    LabelError,
    LSegError,
    OutputWriteError,
    WeightsDownloadError,
)
from lseg.inference import ImageEmbedding, LSegPredictor, MultiScaleConfig, SegmentationResult
from lseg.models import LSeg, LSegConfig, TextEncoderConfig, ViTConfig, get_config, list_models
from lseg.weights import list_pretrained

__version__ = "0.1.0"

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
    "SegmentationResult",
    "TextEncoderConfig",
    "ViTConfig",
    "WeightsDownloadError",
    "convert_official_state_dict",
    "create_model",
    "get_config",
    "list_models",
    "list_pretrained",
    "load_model",
    "read_state_dict",
    "save_pretrained",
]
