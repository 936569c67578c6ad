"""Inference: the predictor, its results and loaders. Names are imported on first use, so that importing
this package imports no torch."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ADE20K_SCALES": "predictor", "LSegPredictor": "predictor", "MultiScaleConfig": "predictor",
    "images_per_forward": "predictor", "multiscale_logits": "predictor", "prepare_image": "predictor",
    "working_size": "predictor", "ImageEmbedding": "results", "PreparedImage": "results",
    "SegmentationResult": "results", "to_numpy": "results", "tune_allocator": "allocator",
}
__all__ = ['ADE20K_SCALES', 'ImageEmbedding', 'LSegPredictor', 'MultiScaleConfig', 'PreparedImage', 'SegmentationResult', 'images_per_forward', 'multiscale_logits', 'prepare_image', 'to_numpy', 'tune_allocator', 'working_size']


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lseg.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lseg.inference.{_EXPORTS[name]}"), name)
