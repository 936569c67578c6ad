"""Segmentation metrics and the few-shot meter (:mod:`lseg.eval.metrics`), imported on first use so
that building the ``lseg`` command line stays cheap."""

from __future__ import annotations

from typing import Any

__all__ = [
    "FewShotMeter", "SegmentationMeter", "confusion_matrix", "iou_per_class", "mean_iou", "pixel_accuracy",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lseg.eval import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'lseg.eval' has no attribute {name!r}")
