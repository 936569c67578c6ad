"""fp16 mixed-precision training: the GradScaler's state is resumed and skipped steps are not counted.

CPU Fabric turns ``precision="16-mixed"`` into bf16 (no scaler), so these runs inject Fabric's fp16
plugin with a CPU GradScaler: the same code path a GPU run takes, scaler included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lseg.train import TrainConfig, loop, train


@pytest.fixture
def fp16_fabric(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fabric with fp16 autocast and a GradScaler whose huge initial scale overflows the fp16
    gradients: the first steps are skipped until the scale has backed off (as on a GPU, faster)."""
    from lightning.fabric import Fabric
    from lightning.fabric.plugins.precision import MixedPrecision

    def make(cfg: TrainConfig) -> Fabric:
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40, backoff_factor=2.0**-14, growth_interval=2)
        return Fabric(accelerator="cpu", devices=1, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
                      loggers=[])

    monkeypatch.setattr(loop, "_make_fabric", make)


def _ckpt(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_fp16_resume_restores_the_scaler_and_skipped_steps_do_not_count(
    tiny_cfg: TrainConfig, tmp_path: Path, fp16_fabric: None
) -> None:
    cfg = tiny_cfg.replace(batch_size=1, accumulate_grad_batches=2, max_steps=6, checkpoint_every_n_steps=2,
                           optimizer="sgd", logger="none")
    full = train(cfg.replace(out_dir=str(tmp_path / "full")), resume="never")
    a = _ckpt(tmp_path / "full")
    assert full.finished and a["step"] == 6
    assert a["position"] > a["step"], "the huge initial scale must make the scaler skip steps"
    # The LR schedule counts applied steps only; the data position counts every batch group.
    assert a["scheduler"]["last_epoch"] == 6
    assert a["precision"]["scale"] < 2.0**40

    part = train(cfg.replace(out_dir=str(tmp_path / "split"), stop_after_steps=3), resume="never")
    assert part.step == 3 and not part.finished
    mid = _ckpt(tmp_path / "split")
    assert mid["precision"]["scale"] < 2.0**40  # the scaler state is in the checkpoint
    rest = train(cfg.replace(out_dir=str(tmp_path / "split")))
    assert rest.step == 6 and rest.finished
    b = _ckpt(tmp_path / "split")
    assert (b["position"], b["precision"]) == (a["position"], a["precision"])
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6, msg=k)
