"""Segmentation metrics (definitions: ``docs/training.md``): a confusion matrix and its reductions, and
meters that accumulate over a whole split, so IoU is dataset-level (sum of intersections / sum of
unions), not a mean of per-image IoUs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch

__all__ = [
    "FewShotMeter", "SegmentationMeter", "confusion_matrix", "iou_per_class", "mean_iou", "pixel_accuracy",
]

IGNORE_INDEX = 255


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """int64 ``(C, C)`` counts ``cm[target, pred]`` (as torchmetrics) on ``target``'s device, pixels
    whose target is ``ignore_index`` skipped. ``pred``: class indices shaped as ``target``, or float
    scores ``(B, C, ...)``. A kept value outside ``0..C-1`` raises ``ValueError`` (a silent drop would
    hide label-mapping bugs)."""
    if pred.is_floating_point():
        if pred.dim() != target.dim() + 1:
            raise ValueError(
                f"float pred must be scores (B, C, ...) for target {tuple(target.shape)}, got {tuple(pred.shape)}"
            )
        pred = pred.argmax(dim=1)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    pred = pred.reshape(-1).to(target.device, torch.int64)
    target = target.reshape(-1).to(torch.int64)
    keep = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    # One host sync per call (the range check): no boolean indexing or bincount, which each wait for a
    # GPU. Ignored pixels are counted in an extra bin that is dropped.
    bad = keep & ((target < 0) | (target >= num_classes) | (pred < 0) | (pred >= num_classes))
    if bool(bad.any()):
        for name, t in (("target", target), ("pred", pred)):
            wrong = t[keep & ((t < 0) | (t >= num_classes))]
            if wrong.numel():  # the most negative value, else the largest
                value = int(wrong.min()) if int(wrong.min()) < 0 else int(wrong.max())
                raise ValueError(f"{name} holds {value}, outside 0..{num_classes - 1} (ignore_index={ignore_index})")
    n = num_classes * num_classes
    index = torch.where(keep, target * num_classes + pred, n)
    counts = torch.zeros(n + 1, dtype=torch.int64, device=target.device)
    counts.scatter_add_(0, index, index.new_ones(()).expand_as(index))
    return counts[:n].reshape(num_classes, num_classes)


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """Per-class IoU of a confusion matrix ``(C, C)``: float64 ``(C,)``, ``nan`` (0 / 0) where union == 0."""
    cm = cm.to(torch.float64)
    inter = cm.diagonal()
    return inter / (cm.sum(0) + cm.sum(1) - inter)


def mean_iou(cm: torch.Tensor, absent: Literal["zero", "exclude"] = "zero") -> float:
    """Mean IoU over classes, in [0, 1]. ``absent``: classes with union 0 count as IoU 0 in a mean over
    all C (``"zero"``: the reference, PyTorch-Encoding) or are left out (``"exclude"``: torchmetrics
    macro Jaccard, mmseg; ``nan`` when no class is present)."""
    iou = iou_per_class(cm)
    if absent == "zero":
        return float(torch.nan_to_num(iou, nan=0.0).mean())
    if absent == "exclude":
        present = ~torch.isnan(iou)
        return float(iou[present].mean()) if bool(present.any()) else math.nan
    raise ValueError(f"absent must be 'zero' or 'exclude', not {absent!r}")


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Correct / labelled pixels (ignored pixels are not in ``cm``); ``nan`` if nothing was counted
    (the reference reports 0)."""
    total = int(cm.sum())
    return int(cm.diagonal().sum()) / total if total else math.nan


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        tc = t.cuda() if dist.get_backend() == "nccl" else t  # NCCL only reduces CUDA tensors
        dist.all_reduce(tc, op=dist.ReduceOp.SUM)
        t = tc.to(t.device)
    return t


class SegmentationMeter:
    """Accumulates the ``C x C`` confusion matrix ``cm`` over batches and reduces it to pixAcc / mIoU.
    ``device``: where ``cm`` lives (default: the first ``update``'s target device). Distributed: call
    :meth:`reduce` once on every process after the last ``update`` (an exact int64 sum)."""

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX,
                 device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._device = torch.device(device) if device is not None else None
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=self._device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` indices ``(B, H, W)`` (or scores ``(B, C, H, W)``), ``target`` ``(B, H, W)``."""
        if self._device is None and self.cm.device != target.device:
            self.cm = self.cm.to(target.device)
        self.cm += confusion_matrix(pred, target.to(self.cm.device), self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, float | torch.Tensor]:
        """Fractions in [0, 1]: ``pixAcc``, ``mIoU`` (absent classes count 0), ``mIoU_excl_absent``,
        ``mIoU_gt_present`` (classes in the ground truth, as detectron2) and ``iou_per_class``
        (float64 ``(C,)`` on the CPU, ``nan`` if absent)."""
        cm = self.cm.cpu()
        iou = iou_per_class(cm)
        present = cm.sum(1) > 0
        return {
            "pixAcc": pixel_accuracy(cm),
            "mIoU": mean_iou(cm, absent="zero"),
            "mIoU_excl_absent": mean_iou(cm, absent="exclude"),
            "mIoU_gt_present": float(iou[present].mean()) if bool(present.any()) else math.nan,
            "iou_per_class": iou,
        }

    def reduce(self, fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Sum ``cm`` across processes: with ``fn`` (e.g. Fabric's ``all_reduce(..., reduce_op="sum")``) or
        ``torch.distributed.all_reduce`` when a process group is initialised."""
        self.cm = (fn or _all_reduce_sum)(self.cm)


class FewShotMeter:
    """HSNet's ``AverageMeter`` for the zero-shot protocol: per episode, background (0) and foreground (1)
    intersection and union areas (``inter``, ``union``: ``(2, num_classes)``) added to its class.

    ``miou`` = mean over ``class_ids`` of ``Σinter_fg / max(Σunion_fg, 1)`` x 100 (a class without
    episodes counts 0, as HSNet); ``fb_iou`` = mean over {bg, fg} of ``Σ_c inter / Σ_c union`` x 100."""

    def __init__(self, class_ids: Sequence[int], num_classes: int | None = None,
                 ignore_index: int | None = IGNORE_INDEX) -> None:
        self.class_ids = torch.as_tensor(list(class_ids), dtype=torch.int64)
        self.num_classes = num_classes if num_classes is not None else int(self.class_ids.max()) + 1
        self.ignore_index = ignore_index
        # On the device of the first update's target (counting there needs no host sync).
        self.inter = torch.zeros(2, self.num_classes, dtype=torch.int64)
        self.union = torch.zeros(2, self.num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor,
               class_id: int | Sequence[int] | torch.Tensor) -> None:
        """Add episodes: ``pred`` binary ``(H, W)`` / ``(B, H, W)`` (1 = class) or 2-way scores
        ``(B, 2, H, W)``, ``target`` the same shape, ``class_id`` one per batch element."""
        if pred.is_floating_point():
            pred = pred.argmax(dim=1)
        if pred.dim() == 2:
            pred, target = pred[None], target[None]
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        if self.inter.device != target.device:
            self.inter, self.union = self.inter.to(target.device), self.union.to(target.device)
        ids = torch.as_tensor(class_id, dtype=torch.int64).reshape(-1).to(target.device)
        if ids.numel() != pred.shape[0]:
            raise ValueError(f"{ids.numel()} class ids for a batch of {pred.shape[0]}")
        pred = pred.to(target.device).long()
        target = target.long()
        valid = (target != self.ignore_index if self.ignore_index is not None
                 else torch.ones_like(target, dtype=torch.bool))
        for k in (0, 1):
            p, t = (pred == k) & valid, (target == k) & valid
            inter = (p & t).flatten(1).sum(1)
            union = p.flatten(1).sum(1) + t.flatten(1).sum(1) - inter
            self.inter[k].index_add_(0, ids, inter)
            self.union[k].index_add_(0, ids, union)

    def compute(self) -> dict[str, float | dict[int, float]]:
        """Returns ``miou`` and ``fb_iou`` (percent, as HSNet logs them) and ``iou_per_class`` (fg IoU x 100)."""
        inter = self.inter.cpu()[:, self.class_ids].double()
        union = self.union.cpu()[:, self.class_ids].double()
        fg_iou = inter[1] / union[1].clamp(min=1)
        fb = inter.sum(1) / union.sum(1)
        return {
            "miou": float(fg_iou.mean() * 100),
            "fb_iou": float(fb.mean() * 100),
            "iou_per_class": {int(c): float(v * 100) for c, v in zip(self.class_ids, fg_iou)},
        }

    def reduce(self, fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Sum the buffers across processes (see :meth:`SegmentationMeter.reduce`). Call once."""
        self.inter, self.union = (fn or _all_reduce_sum)(torch.stack([self.inter, self.union])).unbind()
