"""Metric functions against hand-computed matrices, torchmetrics, and the reference formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

from lseg.eval import (
    FewShotMeter,
    SegmentationMeter,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)

# 4 classes; class 3 never appears (absent), class 2 only predicted (false positive).
TARGET = torch.tensor([[0, 0, 1, 1], [0, 255, 1, 255]])
PRED = torch.tensor([[0, 1, 1, 2], [0, 3, 1, 7]])  # predictions at ignored pixels (3, 7) must not count
CM = torch.tensor([
    [2, 1, 0, 0],  # target 0: 2 correct, 1 -> class 1
    [0, 2, 1, 0],  # target 1: 2 correct, 1 -> class 2
    [0, 0, 0, 0],
    [0, 0, 0, 0],
])  # fmt: skip


def test_confusion_matrix_hand_computed():
    cm = confusion_matrix(PRED, TARGET, num_classes=4)
    assert cm.dtype == torch.int64 and torch.equal(cm, CM)
    batched = confusion_matrix(PRED[None].repeat(3, 1, 1), TARGET[None].repeat(3, 1, 1), 4)
    assert torch.equal(batched, 3 * CM)
    scores = torch.nn.functional.one_hot(PRED.clamp(max=3), 4).permute(2, 0, 1)[None].float()  # (1, C, H, W)
    assert torch.equal(confusion_matrix(scores, TARGET[None], 4), CM)


def test_confusion_matrix_rejects_bad_values():
    with pytest.raises(ValueError, match="target holds 4"):
        confusion_matrix(PRED, torch.where(TARGET == 255, 4, TARGET), 4)
    with pytest.raises(ValueError, match="pred holds 5"):
        confusion_matrix(torch.where(TARGET == 1, 5, PRED), TARGET, 4)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(PRED[:1], TARGET, 4)
    # several bad values: the most negative is named, else the largest
    with pytest.raises(ValueError, match="target holds -1,"):
        confusion_matrix(torch.tensor([0, 0, 0]), torch.tensor([5, -1, 7]), 4)
    with pytest.raises(ValueError, match="target holds 7,"):
        confusion_matrix(torch.tensor([0, 0, 0]), torch.tensor([5, 1, 7]), 4)
    # ignore_index=None counts every pixel (so the 255 targets are now out of range)
    with pytest.raises(ValueError, match="target holds 255"):
        confusion_matrix(PRED, TARGET, 4, ignore_index=None)


def test_iou_mean_iou_and_pixel_accuracy_by_hand():
    iou = iou_per_class(CM)
    # class 0: 2 / (3 + 2 - 2) = 2/3; class 1: 2 / (3 + 3 - 2) = 1/2; class 2: 0 / 1 = 0; class 3: absent
    torch.testing.assert_close(iou[:3], torch.tensor([2 / 3, 1 / 2, 0.0], dtype=torch.float64))
    assert math.isnan(iou[3])
    assert mean_iou(CM, absent="zero") == pytest.approx((2 / 3 + 1 / 2 + 0 + 0) / 4)
    assert mean_iou(CM, absent="exclude") == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert pixel_accuracy(CM) == pytest.approx(4 / 6)
    empty = torch.zeros(3, 3, dtype=torch.int64)
    assert (
        mean_iou(empty, "zero") == 0.0
        and math.isnan(mean_iou(empty, "exclude"))
        and math.isnan(pixel_accuracy(empty))
    )
    with pytest.raises(ValueError):
        mean_iou(CM, absent="skip")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torchmetrics(seed):
    g = torch.Generator().manual_seed(seed)
    c = 7
    # classes 5 and 6 never occur in target; 6 is also never predicted -> absent
    target = torch.randint(0, 5, (3, 17, 13), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.2] = 255
    pred = torch.randint(0, 6, (3, 17, 13), generator=g)
    jac = MulticlassJaccardIndex(num_classes=c, average="macro", ignore_index=255)
    cmat = MulticlassConfusionMatrix(num_classes=c, ignore_index=255)
    meter = SegmentationMeter(c)
    for b in range(3):  # accumulate batch by batch on both sides
        jac.update(pred[b : b + 1], target[b : b + 1])
        cmat.update(pred[b : b + 1], target[b : b + 1])
        meter.update(pred[b : b + 1], target[b : b + 1])
    assert torch.equal(meter.cm, cmat.compute())
    assert meter.compute()["mIoU_excl_absent"] == pytest.approx(float(jac.compute()), abs=1e-6)


def _encoding_metrics(pred, target, nclass):
    """PyTorch-Encoding batch_pix_accuracy / batch_intersection_union (target -1 = ignore), summed."""
    predict, tgt = pred.long() + 1, target.long() + 1
    labeled = int((tgt > 0).sum())
    correct = int(((predict == tgt) & (tgt > 0)).sum())
    predict = predict * (tgt > 0).long()
    inter = predict * (predict == tgt).long()
    area = [torch.histc(x.float(), bins=nclass, min=1, max=nclass) for x in (inter, predict, tgt)]
    union = area[1] + area[2] - area[0]
    eps = 2.220446049250313e-16
    return correct / (eps + labeled), float((area[0].double() / (eps + union.double())).mean())


def test_reference_miou_definition():
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 6, (2, 20, 20), generator=g)
    target[:, :3] = 255
    pred = torch.randint(0, 8, (2, 20, 20), generator=g)  # classes 6, 7 only predicted, 8, 9 absent
    meter = SegmentationMeter(10)
    meter.update(pred, target)
    out = meter.compute()
    pix, miou = _encoding_metrics(pred, torch.where(target == 255, -1, target), 10)
    assert out["pixAcc"] == pytest.approx(pix) and out["mIoU"] == pytest.approx(miou)
    assert out["mIoU"] < out["mIoU_excl_absent"]
    assert out["iou_per_class"].shape == (10,) and torch.isnan(out["iou_per_class"][8:]).all()


def test_meter_reduce():
    g = torch.Generator().manual_seed(4)
    preds = torch.randint(0, 5, (4, 8, 8), generator=g)
    targets = torch.randint(0, 5, (4, 8, 8), generator=g)
    full = SegmentationMeter(5)
    full.update(preds, targets)
    a, b = SegmentationMeter(5), SegmentationMeter(5)  # two "ranks", each with half of the data
    a.update(preds[:2], targets[:2])
    b.update(preds[2:], targets[2:])
    other = b.cm.clone()
    a.reduce(lambda cm: cm + other)  # custom all-reduce hook (e.g. Fabric.all_reduce)
    assert torch.equal(a.cm, full.cm)
    b.reduce()  # no process group: a no-op
    assert torch.equal(b.cm, other)
    f, whole = FewShotMeter([0, 1]), FewShotMeter([0, 1])
    f.update(preds[:2].clamp(max=1), targets[:2].clamp(max=1), [0, 1])
    whole.update(preds[:2].clamp(max=1), targets[:2].clamp(max=1), [0, 1])
    f.reduce(lambda t: 2 * t)
    assert torch.equal(f.inter, 2 * whole.inter) and torch.equal(f.union, 2 * whole.union)
    assert f.compute()["miou"] == pytest.approx(whole.compute()["miou"])


def test_meter_distributed_gloo_single_process(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        m = SegmentationMeter(3)
        m.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
        before = m.cm.clone()
        m.reduce()  # all_reduce(SUM) over a world of one: unchanged
        assert torch.equal(m.cm, before)
        f = FewShotMeter([0, 1])
        f.update(torch.tensor([[1, 0]]), torch.tensor([[1, 1]]), 1)
        s = torch.stack([f.inter, f.union])
        f.reduce()
        assert torch.equal(torch.stack([f.inter, f.union]), s)
    finally:
        dist.destroy_process_group()


def test_fewshot_meter_by_hand():
    meter = FewShotMeter(class_ids=[0, 1, 2], num_classes=20)
    # episode 1, class 0: 4 pixels, one boundary (255) whose prediction must not count
    meter.update(torch.tensor([[1, 1], [0, 1]]), torch.tensor([[1, 0], [0, 255]]), 0)
    # fg: inter 1 (pixel 0), union 2 (pixels 0, 1); bg: inter 1 (pixel 2), union 2 (pixels 1, 2)
    # episode 2, class 0 again, batched with episode 3 of class 1
    meter.update(
        torch.tensor([[[1, 1], [1, 1]], [[0, 0], [0, 0]]]),
        torch.tensor([[[1, 1], [0, 0]], [[1, 0], [0, 0]]]),
        torch.tensor([0, 1]),
    )
    # ep2 (class 0): fg inter 2 union 4; bg inter 0 union 2.  ep3 (class 1): fg inter 0 union 1; bg inter 3 union 4
    out = meter.compute()
    fg0, fg1, fg2 = (1 + 2) / (2 + 4), 0 / 1, 0.0  # class 2 has no episode: counts 0, as in HSNet
    assert out["miou"] == pytest.approx(100 * (fg0 + fg1 + fg2) / 3)
    bg = (1 + 0 + 3) / (2 + 2 + 4)
    fg = (1 + 2 + 0) / (2 + 4 + 1)
    assert out["fb_iou"] == pytest.approx(100 * (bg + fg) / 2)
    assert out["iou_per_class"] == pytest.approx({0: 100 * fg0, 1: 0.0, 2: 0.0})


def _hsnet_reference(preds, gts, class_ids, nclass, ignore=None):
    """HSNet Evaluator.classify_prediction + AverageMeter.compute_iou, transcribed."""
    inter_buf = torch.zeros(2, nclass)
    union_buf = torch.zeros(2, nclass)
    for pred, gt, cid in zip(preds, gts, class_ids):
        pred, gt = pred.clone().float(), gt.clone().float()
        if ignore is not None:
            pred[gt == 255] = 255
        _inter = pred[pred == gt]
        area_inter = torch.histc(_inter, bins=2, min=0, max=1)
        area_pred = torch.histc(pred, bins=2, min=0, max=1)
        area_gt = torch.histc(gt, bins=2, min=0, max=1)
        inter_buf[:, cid] += area_inter
        union_buf[:, cid] += area_pred + area_gt - area_inter
    unique = sorted(set(class_ids))
    ids = torch.tensor(unique)
    iou = inter_buf / torch.max(union_buf, torch.ones_like(union_buf))
    miou = iou.index_select(1, ids)[1].mean() * 100
    fb = (inter_buf.index_select(1, ids).sum(1) / union_buf.index_select(1, ids).sum(1)).mean() * 100
    return float(miou), float(fb), unique


def test_fewshot_meter_matches_hsnet_on_random_episodes():
    g = torch.Generator().manual_seed(5)
    n = 30
    cls = torch.randint(15, 20, (n,), generator=g).tolist()
    gts = torch.randint(0, 2, (n, 9, 7), generator=g)
    gts[torch.rand(gts.shape, generator=g) < 0.1] = 255
    preds = torch.randint(0, 2, (n, 9, 7), generator=g)
    miou, fb, ids = _hsnet_reference(preds, gts, cls, 20, ignore=True)
    meter = FewShotMeter(ids, num_classes=20)
    for i in range(0, n, 4):
        meter.update(preds[i : i + 4], gts[i : i + 4], cls[i : i + 4])
    out = meter.compute()
    assert out["miou"] == pytest.approx(miou, abs=1e-4) and out["fb_iou"] == pytest.approx(fb, abs=1e-4)
    scores = torch.nn.functional.one_hot(preds, 2).permute(0, 3, 1, 2).float()  # 2-way logits path
    meter2 = FewShotMeter(ids)
    meter2.update(scores, gts, cls)
    assert meter2.compute()["miou"] == pytest.approx(miou, abs=1e-4)


def _ddp_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    g = torch.Generator().manual_seed(7)
    preds = torch.randint(0, 6, (4, 10, 10), generator=g)
    targets = torch.randint(0, 5, (4, 10, 10), generator=g)
    m = SegmentationMeter(6)
    m.update(preds[rank::world], targets[rank::world])  # each rank sees its shard only
    m.reduce()
    torch.save(m.cm, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_meter_two_process_all_reduce_equals_single_process(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "cm")
    # fork: the children reuse the imported torch (spawn would re-import it, ~10 s on a busy CPU)
    mp.start_processes(_ddp_worker, args=(2, f"file://{tmp_path / 'pg'}", out), nprocs=2, start_method="fork")
    g = torch.Generator().manual_seed(7)
    preds = torch.randint(0, 6, (4, 10, 10), generator=g)
    targets = torch.randint(0, 5, (4, 10, 10), generator=g)
    single = SegmentationMeter(6)
    single.update(preds, targets)
    for rank in range(2):
        assert torch.equal(torch.load(f"{out}.{rank}"), single.cm)
