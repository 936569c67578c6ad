"""The optimizer and its schedule: the reference's two parameter groups and poly decay."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler

from lseg.models.lseg import LSeg
from lseg.train.config import TrainConfig

__all__ = ["PolyLR", "build_optimizer", "optimizer_step"]


class PolyLR(LRScheduler):
    """Polynomial decay ``lr_t = lr_0 * (1 - t / total) ** power`` (0 once ``t >= total``), t = ``step()``
    calls (per optimizer step, or per epoch as the reference); its state dict holds plain numbers only."""

    def __init__(self, optimizer: torch.optim.Optimizer, total: int, power: float, last_epoch: int = -1) -> None:
        self.total = total
        self.power = power
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        f = max(0.0, 1.0 - self.last_epoch / self.total) ** self.power if self.total > 0 else 0.0
        return [base * f for base in self.base_lrs]


def build_optimizer(model: LSeg, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD / Adam over the reference's two groups: encoder at ``lr``, decoder at ``lr * decoder_lr_mult``
    (the frozen text encoder is in neither)."""
    lr = cfg.lr
    groups = model.param_groups()
    params = [
        {"params": groups["encoder"], "lr": lr, "name": "encoder"},
        {"params": groups["decoder"], "lr": lr * cfg.decoder_lr_mult, "name": "decoder"},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> bool:
    """``optimizer.step()``; False if the fp16 GradScaler skipped it (inf/NaN gradients), which it
    signals by lowering its scale (one host sync per step, fp16 only)."""
    if scaler is None or not scaler.is_enabled():
        optimizer.step()
        return True
    before = scaler.get_scale()
    optimizer.step()
    return scaler.get_scale() >= before
