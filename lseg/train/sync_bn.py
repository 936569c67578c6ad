"""Synchronised BatchNorm that also runs on CPU (gloo), where ``torch.nn.SyncBatchNorm`` does not: the
decoder's BatchNorms see the **global** batch's statistics, as one process with the whole batch would."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistributedBatchNorm2d", "convert_sync_batchnorm"]

_TORCH_SYNC_BN_DEVICES = ("cuda", "xpu", "hpu")


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum seen by every process is the sum of the gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.forward(ctx, grad.contiguous())


class DistributedBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training-mode statistics are computed over all processes (same parameters,
    buffers and keys; plain ``BatchNorm2d`` without a process group, in eval mode or alone). The
    two-pass variance matches ``F.batch_norm`` of the concatenated batch to float rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return super().forward(x)
        self._check_input_dim(x)
        xf = x.float()
        dims = [0, *range(2, x.dim())]
        count = torch.tensor([float(x.numel() // x.shape[1])], device=x.device)
        stats = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
        n = stats[-1]
        mean = stats[:-1] / n
        shape = (1, -1) + (1,) * (x.dim() - 2)
        centered = xf - mean.view(shape)
        var = _AllReduceSum.apply((centered * centered).sum(dims)) / n  # biased, used to normalise
        if self.track_running_stats:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)  # type: ignore[union-attr]
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)  # type: ignore[union-attr]
        y = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Make every ``BatchNorm2d`` in ``module`` synchronised, keeping parameters, buffers and state-dict
    keys: ``torch.nn.SyncBatchNorm`` on CUDA/XPU/HPU, :class:`DistributedBatchNorm2d` (in place) elsewhere."""
    if device_type in _TORCH_SYNC_BN_DEVICES:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.__class__ = DistributedBatchNorm2d  # a subclass that only overrides forward: same state
    return module
