"""What one training step computes: the batch, each image's labels, the loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from lightning.fabric import Fabric

    from lseg.models.lseg import LSeg

__all__ = ["PerImageLabels"]


class PerImageLabels(nn.Module):
    """The model's forward with labels shared by the batch, ``(K, D)``, or one label set per image,
    ``(B, K, D)`` (zero-shot training); a module so that DDP wraps the whole computation."""

    def __init__(self, model: LSeg) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if text.dim() == 2:
            return self.model(x, text)
        pixels = self.model.encode_image(x)
        size = (x.shape[-2], x.shape[-1])
        return torch.cat([self.model.score(pixels[i : i + 1], text[i], size=size) for i in range(len(x))])


def _zero_shot_batch(batch: dict[str, Any], text: torch.Tensor, row_of: torch.Tensor, ignore_index: int,
                     boundary: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Supports then queries in one batch (the reference's ``cat(support, query)``), their binary masks,
    and each image's ``["others", class]`` embeddings ``(N, 2, D)``. ``batch``: ``default_collate``'s,
    whose ``support_images`` are S tensors ``(B, ...)``."""
    images, target, cls = batch["image"], batch["mask"], batch["class_id"]
    if "support_images" in batch:
        s = len(batch["support_images"])
        images = torch.cat([torch.stack(batch["support_images"], 1).flatten(0, 1), images])
        target = torch.cat([torch.stack(batch["support_masks"], 1).flatten(0, 1), target])
        cls = torch.cat([cls.repeat_interleave(s), cls])
    if boundary == "others":  # the reference's 2-way loss has no ignore index: boundaries are background
        target = target.masked_fill(target == ignore_index, 0)
    rows = torch.stack([torch.zeros_like(cls), row_of[cls]], dim=1)
    return images, target, text[rows]


def _pixel_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, fabric: Fabric,
                         reduction: str = "global") -> torch.Tensor:
    """Per-pixel cross-entropy over the labelled pixels; 0 if nothing is labelled.

    ``global``: this process's pixel-loss sum x world size / labelled pixels of all processes, so the
    gradient mean DDP takes is that of the mean over the global batch. ``reference``: each process's
    own pixel mean, averaged by DDP as lang-seg.
    """
    total = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().float()
    if reduction == "reference" or fabric.world_size == 1:
        return total / count.clamp_min(1)
    count = fabric.all_reduce(count, reduce_op="sum")
    return total * fabric.world_size / count.clamp_min(1)
