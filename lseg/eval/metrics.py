"""Segmentation metrics: a confusion matrix (rows = ground truth, columns = prediction, as
torchmetrics; pixels whose target is ``ignore_index`` skipped) and pure reductions of it, plus
accumulating meters. Accumulating over a whole split and reducing once gives dataset-level IoU (sum of
intersections / sum of unions), not a mean of per-image IoUs. Definitions: ``docs/training.md``.
"""

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
    """Count (target, prediction) pairs.

    Args:
        pred: predicted class indices of any shape (e.g. ``(B, H, W)``), or float scores
            ``(B, C, H, W)`` (one more dim than ``target``), arg-maxed over dim 1.
        target: ground-truth indices, ``0..C-1`` or ``ignore_index`` (``None``: skip nothing).
        num_classes: ``C``.

    Returns:
        int64 ``(C, C)`` on ``target``'s device; ``cm[t, p]`` = number of pixels.

    Raises:
        ValueError: shape mismatch, or a kept target / prediction outside ``0..C-1`` (a silent drop
            would hide label-mapping bugs).
    """
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
        for name, t in (("target", target[keep]), ("pred", pred[keep])):
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= num_classes:
                value = lo if lo < 0 else hi
                raise ValueError(
                    f"{name} holds {value}, outside 0..{num_classes - 1} (ignore_index={ignore_index})"
                )
    n = num_classes * num_classes
    index = torch.where(keep, target * num_classes + pred, n)
    counts = torch.zeros(n + 1, dtype=torch.int64, device=target.device)
    counts.scatter_add_(0, index, index.new_ones(()).expand_as(index))
    return counts[:n].reshape(num_classes, num_classes)


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """Per-class IoU from a confusion matrix ``(C, C)``: float64 ``(C,)``, ``nan`` where union == 0."""
    cm = cm.to(torch.float64)
    inter = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - inter
    iou = inter / union
    return torch.where(union > 0, iou, torch.full_like(iou, math.nan))


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

    if not (dist.is_available() and dist.is_initialized()):
        return t
    if dist.get_backend() == "nccl" and not t.is_cuda:
        # NCCL only reduces CUDA tensors
        tc = t.cuda()
        dist.all_reduce(tc, op=dist.ReduceOp.SUM)
        return tc.to(t.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


class SegmentationMeter:
    """Accumulates a ``C x C`` confusion matrix over batches and reduces it to pixAcc / mIoU.

    Distributed: call :meth:`reduce` once on every process after the last ``update`` (an exact int64
    sum), or move :meth:`state` around yourself and :meth:`merge` / :meth:`load_state` it.

    Args:
        num_classes: ``C``.
        ignore_index: target value to skip.
        device: where the matrix lives (default: the first ``update``'s target device; NCCL needs a GPU).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX,
                 device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._device = torch.device(device) if device is not None else None
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=self._device)

    def reset(self) -> None:
        """Zero the matrix."""
        self.cm = torch.zeros_like(self.cm)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` indices ``(B, H, W)`` (or scores ``(B, C, H, W)``), ``target`` ``(B, H, W)``."""
        if self._device is None and self.cm.device != target.device:
            self.cm = self.cm.to(target.device)
        self.cm += confusion_matrix(pred, target.to(self.cm.device), self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, float | torch.Tensor]:
        """Fractions in [0, 1] of everything accumulated so far: ``pixAcc``, ``mIoU`` (absent classes
    count 0), ``mIoU_excl_absent`` and ``iou_per_class`` (float64 ``(C,)`` on the CPU, ``nan`` if absent)."""
        cm = self.cm.cpu()
        return {
            "pixAcc": pixel_accuracy(cm),
            "mIoU": mean_iou(cm, absent="zero"),
            "mIoU_excl_absent": mean_iou(cm, absent="exclude"),
            "iou_per_class": iou_per_class(cm),
        }

    def state(self) -> torch.Tensor:
        """A copy of the accumulated matrix (int64 ``(C, C)``)."""
        return self.cm.clone()

    def load_state(self, cm: torch.Tensor) -> None:
        """Replace the accumulated matrix by ``cm``."""
        if cm.shape != self.cm.shape:
            raise ValueError(f"state shape {tuple(cm.shape)} != {tuple(self.cm.shape)}")
        self.cm = cm.to(self.cm.device, torch.int64).clone()

    def merge(self, other: SegmentationMeter | torch.Tensor) -> None:
        """Add another meter's (or a raw matrix's) counts to this one."""
        cm = other.cm if isinstance(other, SegmentationMeter) else other
        if cm.shape != self.cm.shape:
            raise ValueError(f"cannot merge shape {tuple(cm.shape)} into {tuple(self.cm.shape)}")
        self.cm += cm.to(self.cm.device, torch.int64)

    def reduce(self, fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Sum the matrix across processes, in place, once after the last ``update``: with ``fn`` (e.g.
    Fabric's ``all_reduce(..., reduce_op="sum")``) or ``torch.distributed.all_reduce`` when a process
    group is initialised."""
        self.cm = (fn or _all_reduce_sum)(self.cm)


class FewShotMeter:
    """HSNet's ``AverageMeter`` for the few-shot / zero-shot protocol: per episode, background (0) and
    foreground (1) intersection and union areas (target ``ignore_index`` skipped) added to its class.

    ``miou`` = mean over the fold's classes of ``Σinter_fg / max(Σunion_fg, 1)`` x 100 (a class without
    episodes counts 0, as HSNet); ``fb_iou`` = mean over {bg, fg} of ``Σ_c inter / Σ_c union`` x 100.

    Args:
        class_ids: the classes the score averages over (the dataset's ``class_ids``).
        num_classes: size of the per-class buffers (20 / 80 / 1000); default ``max(class_ids) + 1``.
        ignore_index: target value to skip (255).
    """

    def __init__(self, class_ids: Sequence[int], num_classes: int | None = None,
                 ignore_index: int | None = IGNORE_INDEX) -> None:
        self.class_ids = torch.as_tensor(list(class_ids), dtype=torch.int64)
        self.num_classes = num_classes if num_classes is not None else int(self.class_ids.max()) + 1
        self.ignore_index = ignore_index
        # On the device of the first update's target (counting there needs no host sync).
        self.inter = torch.zeros(2, self.num_classes, dtype=torch.int64)
        self.union = torch.zeros(2, self.num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Zero the buffers."""
        self.inter.zero_()
        self.union.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor,
               class_id: int | Sequence[int] | torch.Tensor) -> None:
        """Add episodes: ``pred`` binary ``(H, W)`` / ``(B, H, W)`` (1 = class) or 2-way scores
    ``(B, 2, H, W)``, ``target`` the same shape (``ignore_index`` at ignored pixels), ``class_id`` one
    per batch element."""
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
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.ignore_index is not None:
            valid = target != self.ignore_index
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

    def state(self) -> torch.Tensor:
        """The buffers as one int64 tensor ``(2, 2, N)``: [inter, union] x [bg, fg] x class."""
        return torch.stack([self.inter, self.union]).clone()

    def load_state(self, state: torch.Tensor) -> None:
        """Replace the buffers by a :meth:`state` tensor."""
        self.inter, self.union = (s.to(self.inter.device, torch.int64).clone() for s in state)

    def reduce(self, fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Sum the buffers across processes (see :meth:`SegmentationMeter.reduce`). Call once."""
        self.load_state((fn or _all_reduce_sum)(self.state()))
