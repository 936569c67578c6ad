"""Segmentation metrics (confusion-matrix based) and the few-shot meter; see :mod:`lseg.eval.metrics`."""

from lseg.eval.metrics import (
    FewShotMeter,
    SegmentationMeter,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)

__all__ = [
    "FewShotMeter",
    "SegmentationMeter",
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "pixel_accuracy",
]
