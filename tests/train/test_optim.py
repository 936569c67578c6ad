"""The optimizer's two parameter groups and the poly schedule (:mod:`lseg.train.optim`)."""

from __future__ import annotations

import pytest
import torch

import lseg
from lseg.train import TrainConfig
from lseg.train.optim import PolyLR, build_optimizer, optimizer_step


def test_optimizer_groups_and_poly_schedule():
    torch.manual_seed(0)
    model = lseg.create_model("lseg_tiny_test")
    cfg = TrainConfig(base_lr=0.016, lr_scaling="global", batch_size=2, accumulate_grad_batches=2, devices=2)
    opt = build_optimizer(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.008, 0.08])  # 0.016/16*8, decoder x10
    in_groups = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in in_groups for p in model.text_encoder.parameters())  # frozen, not optimised
    assert len(in_groups) == sum(1 for p in model.parameters() if p.requires_grad)
    sched = PolyLR(opt, total=10, power=0.9)
    for t in range(12):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.008 * max(0.0, 1 - t / 10) ** 0.9)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.0  # and it stays 0 past the end


def test_optimizer_step_reports_a_skipped_fp16_step():
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=0.1)
    p.grad = torch.ones(2)
    assert optimizer_step(opt, None) and torch.equal(p.detach(), torch.full((2,), 0.9))
