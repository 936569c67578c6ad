"""Dense pixel features for 3D and robotics pipelines (docs/features-3d.md); names are imported on
first use."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DTYPES": "export", "FRAMES_INDEX": "export", "MANIFEST": "export", "combine_shards": "export",
    "export_features": "export", "iter_resized_embeddings": "export", "resize_embeddings": "export",
    "torchrun_rank": "export", "parse_resolution": "options", "parse_shard": "options", "PRESETS": "presets",
    "FeatureExtractor": "presets", "Preset": "presets", "get_preset": "presets",
    "PCAFit": "reduce", "Reduction": "reduce", "fit_reduction": "reduce", "FeatureStore": "reader",
    "export_layout": "derived", "export_store": "store", "reduce_store": "derived",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lseg.features' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lseg.features.{_EXPORTS[name]}"), name)
