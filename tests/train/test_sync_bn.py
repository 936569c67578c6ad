"""The CPU-capable synchronised BatchNorm (its multi-process behaviour is covered by the DDP test)."""

from __future__ import annotations

import torch
from torch import nn

from lseg.train.sync_bn import DistributedBatchNorm2d, convert_sync_batchnorm


def test_conversion_keeps_parameters_buffers_and_keys():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    weight = net[1].weight
    keys = list(net.state_dict())
    converted = convert_sync_batchnorm(net, "cpu")
    assert isinstance(converted[1], DistributedBatchNorm2d) and isinstance(converted[2][0], DistributedBatchNorm2d)
    assert converted[1].weight is weight  # same Parameter: an optimizer built earlier still owns it
    assert list(converted.state_dict()) == keys
    assert isinstance(convert_sync_batchnorm(nn.BatchNorm2d(2), "cuda"), nn.SyncBatchNorm)


def test_without_process_group_it_is_plain_batchnorm():
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(4)
    ours = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(4)), "cpu")[0]
    x = torch.randn(2, 4, 5, 5)
    for mode in (True, False):
        ref.train(mode)
        ours.train(mode)
        torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
