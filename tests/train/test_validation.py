"""Validation during training, best-k checkpoints (resumable), the loss reduction and the device-count
warning (issue 15)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lseg.train import TrainConfig, train
from lseg.train.loop import _pixel_cross_entropy


def test_validation_every_epoch_keeps_best_k_and_resumes(toy_val_root: Path, tiny_cfg: TrainConfig, tmp_path: Path):
    # 8 images, batch 2 -> 4 steps per epoch; 4 epochs, validated after each on the 4 val images.
    cfg = tiny_cfg.replace(
        data_root=str(toy_val_root), val_split="val", val_every_n_epochs=1, save_top_k=2, monitor="mIoU",
        max_steps=None, epochs=4, optimizer="adam", base_lr=1e-3,
    )
    full = train(cfg.replace(out_dir=str(tmp_path / "full")), resume="never")
    assert full.finished and full.val_metrics is not None and set(full.val_metrics) == {"pixAcc", "mIoU"}
    files = sorted(p.name for p in (tmp_path / "full" / "checkpoints").glob("best-*.ckpt"))
    assert len(files) == 2 and [p.name for p in full.best] != []
    assert sorted(p.name for p in full.best) == files
    ckpt = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    scores = [b["score"] for b in ckpt["best"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 2
    best_state = torch.load(full.best[0], map_location="cpu", weights_only=True)
    assert best_state["step"] == ckpt["best"][0]["step"] and best_state["step"] % 4 == 0

    # Interrupted mid-epoch 3 and resumed: the same validations, the same kept files.
    part = train(cfg.replace(out_dir=str(tmp_path / "split"), stop_after_steps=10), resume="never")
    assert not part.finished and len(part.best) == 2
    rest = train(cfg.replace(out_dir=str(tmp_path / "split")))
    assert rest.resumed_from is not None and rest.finished
    assert [p.name for p in rest.best] == [p.name for p in full.best]
    assert sorted(p.name for p in (tmp_path / "split" / "checkpoints").glob("best-*.ckpt")) == files
    assert rest.val_metrics == full.val_metrics

    # every 2 epochs, top 1: validations after epochs 2 and 4 only
    two = train(cfg.replace(out_dir=str(tmp_path / "two"), val_every_n_epochs=2, save_top_k=1), resume="never")
    (kept,) = two.best
    assert kept.name.startswith(("best-epoch002", "best-epoch004"))


def test_reference_device_count_is_recorded_and_checked(tiny_cfg: TrainConfig, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="lseg.train.loop"):
        train(tiny_cfg.replace(reference_devices=8, max_steps=1, lr_scaling="reference"), resume="never")
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "8 GPUs" in message and "1 process" in message and "global batch is 2 instead of 16" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lseg.train.loop"):
        train(tiny_cfg.replace(reference_devices=1, max_steps=1), resume="never")
    assert "GPUs" not in " ".join(r.getMessage() for r in caplog.records)


class _FakeFabric:
    """Two processes as seen from rank 0: all_reduce(sum) adds the other rank's value."""

    def __init__(self, other: torch.Tensor) -> None:
        self.world_size = 2
        self.other = other

    def all_reduce(self, t: torch.Tensor, reduce_op: str) -> torch.Tensor:
        assert reduce_op == "sum"
        return t + self.other


def test_loss_reduction_global_vs_reference():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    target[0, :2] = 255  # half the crop is padding
    per_pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="sum")
    # the other process has a full crop: 16 labelled pixels; this one 8
    fabric = _FakeFabric(torch.tensor(16.0))
    glob = _pixel_cross_entropy(logits, target, 255, fabric, "global")  # type: ignore[arg-type]
    ref = _pixel_cross_entropy(logits, target, 255, fabric, "reference")  # type: ignore[arg-type]
    torch.testing.assert_close(glob, per_pixel * 2 / 24)  # DDP's mean over 2 ranks -> sum / 24 pixels
    torch.testing.assert_close(ref, per_pixel / 8)  # this crop's own mean (lang-seg)
    one = SimpleNamespace(world_size=1)
    for mode in ("global", "reference"):  # identical on one process
        torch.testing.assert_close(_pixel_cross_entropy(logits, target, 255, one, mode), per_pixel / 8)  # type: ignore[arg-type]
