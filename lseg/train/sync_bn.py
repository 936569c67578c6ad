"""Synchronised BatchNorm that also runs on CPU (gloo), where ``torch.nn.SyncBatchNorm`` does not.

The decoder's BatchNorms must see the **global** batch's statistics for N processes to compute what
one process with the whole batch computes: :class:`DistributedBatchNorm2d` all-reduces the
per-channel sums with an autograd-aware collective, so the backward also sums their gradients, as
``SyncBatchNorm`` (still used on CUDA) does.
"""

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
        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def _sum_all(t: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(t)


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
        stats = _sum_all(torch.cat([xf.sum(dims), count]))
        n = stats[-1]
        mean = stats[:-1] / n
        shape = (1, -1) + (1,) * (x.dim() - 2)
        centered = xf - mean.view(shape)
        var = _sum_all((centered * centered).sum(dims)) / n  # biased, used to normalise
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
    """Replace every ``BatchNorm2d`` in ``module`` by a synchronised one (in place where possible):
    ``torch.nn.SyncBatchNorm`` on CUDA/XPU/HPU, :class:`DistributedBatchNorm2d` elsewhere. Parameters,
    buffers and state-dict keys are kept."""
    if device_type in _TORCH_SYNC_BN_DEVICES:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, DistributedBatchNorm2d):
        new = DistributedBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            with torch.no_grad():
                new.weight = module.weight
                new.bias = module.bias
        new.running_mean = module.running_mean
        new.running_var = module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device_type))
    return module
