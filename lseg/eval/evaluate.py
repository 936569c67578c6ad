"""Dataset-level evaluation of an LSeg model under the ``semantic``, ``open-vocab`` and ``fewshot``
protocols (``docs/training.md``). When ``torch.distributed`` is initialised, process ``r`` of ``W``
evaluates images ``r, r + W, ...`` and the integer counts are summed: the numbers equal a
single-process run."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Subset

from lseg.console import progress_bar
from lseg.data.label_sets import clean_fewshot_name
from lseg.data.registry import build_dataset, build_fewshot_dataset, canonical_name, ignore_index_of
from lseg.data.transforms import fewshot_transform
from lseg.errors import LSegError
from lseg.eval.config import EvalConfig
from lseg.eval.metrics import FewShotMeter, SegmentationMeter
from lseg.inference.predictor import MultiScaleConfig, multiscale_logits
from lseg.labels import NO_TEMPLATE, fill_template
from lseg.models.lseg import LSeg

__all__ = [
    "EvalConfig", "encode_labels", "evaluate", "evaluate_fewshot", "evaluate_segmentation", "format_report",
]


@torch.no_grad()
def encode_labels(model: LSeg, labels: Sequence[str], templates: Sequence[str] = (), chunk: int = 256) -> torch.Tensor:
    """Class strings -> (K, D) fp32 L2-normalised text embeddings; with templates, each class's is the
    normalised mean over its prompts. Duplicated strings are allowed (the reference ADE list has two)."""
    prompts = list(templates) or list(NO_TEMPLATE)
    per_template = []
    for t in prompts:
        texts = [fill_template(t, lb) for lb in labels]
        parts = [model.encode_text(texts[i : i + chunk]).float() for i in range(0, len(texts), chunk)]
        per_template.append(torch.cat(parts))
    emb = torch.stack(per_template).mean(0)
    return emb / emb.norm(dim=-1, keepdim=True)


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _SafeDataset(Dataset):
    """A failing sample becomes ``{"error": message, "path": ...}``: one bad file does not end the run."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self.dataset[index]
        except (LSegError, OSError, ValueError) as e:
            items = getattr(self.dataset, "records", None) or getattr(self.dataset, "episodes", None)
            path = str(items[index].image) if items is not None else f"#{index}"
            return {"error": str(e).splitlines()[0] if str(e) else type(e).__name__, "path": path}


def _batches(dataset: Dataset, cfg: EvalConfig, batch_size: int,
             failed: list[dict[str, str]]) -> Iterator[list[dict[str, Any]]]:
    """This process's shard (``rank::world``; no padding, so nothing is counted twice), in batches of
    the samples that were read; the others are added to ``failed``."""
    rank, world = _dist_info()
    n = min(len(dataset), cfg.max_samples or len(dataset))  # type: ignore[arg-type]
    shard = Subset(_SafeDataset(dataset), list(range(rank, n, world)))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=cfg.num_workers, collate_fn=list)
    disable = not cfg.progress or rank != 0
    for batch in progress_bar(loader, desc=f"eval {cfg.dataset}", unit="batch", disable=disable):
        failed += [{"path": s["path"], "error": s["error"]} for s in batch if "error" in s]
        yield [s for s in batch if "error" not in s]


def _gather(failed: list[dict[str, str]], n_done: int) -> tuple[list[dict[str, str]], int]:
    """Every process's unreadable samples and its count of evaluated ones."""
    _, world = _dist_info()
    if world == 1:
        return failed, n_done
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, (failed, n_done))
    return [f for part, _ in parts for f in part], sum(n for _, n in parts)


def _pct(x: float, scale: float = 100.0) -> float | None:
    return None if math.isnan(x) else round(scale * x, 4)


@torch.inference_mode()
def evaluate_segmentation(model: LSeg, dataset: Dataset, labels: Sequence[str],
                          cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate ``model`` (on its device) on every image of ``dataset`` (samples ``{"image", "mask"}``
    at the original resolution) with the class strings ``labels`` (index i = mask value i); the report
    of :func:`evaluate`. Shards over processes when ``torch.distributed`` is initialised."""
    model.eval()
    device = model.device
    text = encode_labels(model, labels, cfg.templates).to(device)
    ignore_index = ignore_index_of(dataset)
    meter = SegmentationMeter(len(labels), ignore_index=ignore_index, device=device)
    failed: list[dict[str, str]] = []
    n_done = 0
    t0 = time.perf_counter()
    for batch in _batches(dataset, cfg, 1, failed):
        for sample in batch:
            x = model.normalize(sample["image"].to(device)[None])
            h, w = x.shape[-2:]
            # Single scale = the same evaluator with one scale whose long side is `size` (or the image's).
            ms = MultiScaleConfig(
                scales=cfg.scales if cfg.multiscale else (1.0,),
                base_size=cfg.base_size if cfg.multiscale else cfg.size or max(h, w),
                crop_size=cfg.crop_size, stride_rate=cfg.stride_rate, flip=cfg.use_flip,
            )
            logits = multiscale_logits(model, x, text, ms)
            meter.update(logits.argmax(1), sample["mask"].to(device)[None])
            n_done += 1
    meter.reduce()
    failed, num_images = _gather(failed, n_done)
    cm = meter.cm.cpu()
    metrics = meter.compute()
    iou = metrics.pop("iou_per_class")
    assert isinstance(iou, torch.Tensor)
    if not num_images:  # nothing was evaluated: no figure, not 0 (the other metrics are n/a already)
        metrics["mIoU"] = math.nan
    return {
        "protocol": cfg.protocol,
        "dataset": canonical_name(cfg.dataset),
        "split": cfg.split or ("all" if canonical_name(cfg.dataset) == "folder" else "val"),
        "num_classes": len(labels),
        "num_images": num_images,
        "num_failed": len(failed),
        "failed": failed,
        "metrics": {k: _pct(float(v)) for k, v in metrics.items()},  # type: ignore[arg-type]
        "per_class": [
            {"label": lb, "iou": _pct(float(v)), "gt_pixels": int(cm[i].sum())}
            for i, (lb, v) in enumerate(zip(labels, iou.tolist()))
        ],
        "seconds": round(time.perf_counter() - t0, 3),
    }


@torch.inference_mode()
def evaluate_fewshot(model: LSeg, dataset: Any, cfg: EvalConfig) -> dict[str, Any]:
    """The zero-shot protocol on one fold: 2-way ``["others", class name]`` per episode, ``dataset`` a
    :class:`lseg.data.FewShotDataset` resized to ``fewshot_size``. Returns ``miou``, ``fb_iou``
    (percent) and per-class IoU."""
    model.eval()
    device = model.device
    class_ids = list(dataset.class_ids)
    text = encode_labels(model, ["others", *(dataset.labels[c] for c in class_ids)], cfg.templates).to(device)
    row = {c: i + 1 for i, c in enumerate(class_ids)}
    meter = FewShotMeter(class_ids, num_classes=len(dataset.labels), ignore_index=ignore_index_of(dataset))
    failed: list[dict[str, str]] = []
    n_done = 0
    t0 = time.perf_counter()
    for good in _batches(dataset, cfg, cfg.batch_size, failed):
        if not good:
            continue
        images = torch.stack([s["image"] for s in good]).to(device)
        x = model.normalize(images)
        pixels = model.encode_image(x)
        for s, pix in zip(good, pixels):
            pair = text[[0, row[int(s["class_id"])]]]
            logits = model.score(pix[None], pair, size=(x.shape[-2], x.shape[-1]))
            meter.update(logits.argmax(1), s["mask"].to(device)[None], int(s["class_id"]))
        n_done += len(good)
    meter.reduce()
    failed, n_done = _gather(failed, n_done)
    result = meter.compute()
    per_class = result["iou_per_class"]
    assert isinstance(per_class, dict)
    if not n_done:  # nothing was evaluated: no figure (null in the JSON), not 0 or NaN
        result = {"miou": math.nan, "fb_iou": math.nan}
        per_class = dict.fromkeys(per_class, math.nan)
    return {
        "miou": _pct(float(result["miou"]), 1),  # type: ignore[arg-type]
        "fb_iou": _pct(float(result["fb_iou"]), 1),  # type: ignore[arg-type]
        "num_episodes": n_done,
        "num_failed": len(failed),
        "failed": failed,
        "per_class": [{"class_id": c, "label": dataset.labels[c], "iou": _pct(per_class[c], 1)} for c in class_ids],
        "seconds": round(time.perf_counter() - t0, 3),
    }


def evaluate(model: LSeg, cfg: EvalConfig) -> dict[str, Any]:
    """Build the dataset(s) ``cfg`` names and evaluate ``model`` (on its device) under the protocol.

    Returns a JSON-serialisable report: ``protocol``, ``dataset``, ``settings`` (the config) and

    * ``semantic`` / ``open-vocab``: ``metrics`` (``pixAcc``, ``mIoU``, ``mIoU_excl_absent``,
      ``mIoU_gt_present``, percent), ``per_class`` IoUs, ``num_images``, ``failed`` (skipped files);
    * ``fewshot``: ``folds`` (``{fold: {miou, fb_iou, per_class, ...}}``) and their ``mean``."""
    _, world = _dist_info()
    model.set_precision(cfg.precision)
    settings = {**asdict(cfg), "precision_ran": model.precision}
    if cfg.protocol == "fewshot":
        name = canonical_name(cfg.dataset)
        per_fold: dict[str, Any] = {}
        for fold in (0,) if name == "fss1000" else cfg.folds:
            kwargs = dict(cfg.dataset_kwargs)
            if cfg.num_episodes is not None and name != "fss1000":  # FSS-1000: one episode per test image
                kwargs["num_episodes"] = cfg.num_episodes
            if name == "coco20i":
                kwargs["seed"] = cfg.seed
            ds = build_fewshot_dataset(
                name, cfg.data_root, fold=fold, split=cfg.split, transform=fewshot_transform(cfg.fewshot_size),
                label_style=cfg.label_style, **kwargs,
            )
            per_fold[str(fold)] = evaluate_fewshot(model, ds, cfg)
        values = {k: [r[k] for r in per_fold.values()] for k in ("miou", "fb_iou")}
        mean = {k: None if None in v else round(sum(v) / len(v), 4) for k, v in values.items()}
        return {
            "protocol": "fewshot", "dataset": name, "folds": per_fold, "mean": mean,
            "world_size": world, "settings": settings,
        }

    ds = build_dataset(cfg.dataset, cfg.data_root, cfg.split, None, cfg.label_style, **cfg.dataset_kwargs)
    labels = list(ds.labels)
    if cfg.protocol == "open-vocab" and cfg.label_style is None:
        labels = [clean_fewshot_name(lb) for lb in labels]  # readable: "pottedplant" -> "potted plant"
    return {**evaluate_segmentation(model, ds, labels, cfg), "world_size": world, "settings": settings}


def _cell(value: float | None, width: int) -> str:
    return f"{'n/a' if value is None else f'{value:.2f}':>{width}}"


def format_report(report: dict[str, Any], per_class: bool = False) -> str:
    """A plain-text table of a report (percentages)."""
    lines = []
    if report["protocol"] == "fewshot":
        lines.append(f"{report['dataset']}  zero-shot protocol (2-way, {report['settings']['fewshot_size']}px)")
        lines.append(f"{'fold':>6} {'mIoU':>8} {'FB-IoU':>8} {'episodes':>9}")
        for fold, r in report["folds"].items():
            lines.append(f"{fold:>6} {_cell(r['miou'], 8)} {_cell(r['fb_iou'], 8)} {r['num_episodes']:9d}")
            if per_class:
                lines += [f"{'':>6}   {c['label']:<24} {_cell(c['iou'], 7)}" for c in r["per_class"]]
        if len(report["folds"]) > 1:
            lines.append(f"{'mean':>6} {_cell(report['mean']['miou'], 8)} {_cell(report['mean']['fb_iou'], 8)}")
        return "\n".join(lines)
    s = report["settings"]
    mode = "multi-scale+flip" if s["multiscale"] else f"single-scale ({s['size'] or 'native'})"
    lines.append(f"{report['dataset']} {report['split']}  {report['protocol']}  {mode}  {report['num_images']} images")
    for key, value in report["metrics"].items():
        lines.append(f"  {key:<18} {_cell(value, 8)}")
    if report["num_failed"]:
        lines.append(f"  skipped {report['num_failed']} unreadable sample(s)")
    if per_class:
        lines.append(f"  {'class':<28} {'IoU':>7}")
        lines += [f"  {c['label']:<28} {_cell(c['iou'], 7)}" for c in report["per_class"]]
    return "\n".join(lines)
