"""The tiny training configuration (import as ``train.helpers``): the ``tiny_cfg`` fixture's, and the
two-process run's (``tests/process_group.py``)."""

from __future__ import annotations

from pathlib import Path

from lseg.train import TrainConfig


def tiny_train_config(data_root: Path, out_dir: Path) -> TrainConfig:
    """A CPU config for the tiny model on the toy data (64 px crops, no workers, no progress bar)."""
    return TrainConfig(
        model="lseg_tiny_test", dataset="folder", data_root=str(data_root), split=None,
        base_size=64, crop_size=64, scale_range=(0.75, 1.25), batch_size=2, max_steps=4,
        base_lr=0.01, lr_scaling="none", accelerator="cpu", num_workers=0, log_every_n_steps=1,
        checkpoint_every_n_steps=0, progress_bar=False, out_dir=str(out_dir),
    )
