"""The training loop (Lightning Fabric): per optimizer step, ``accumulate_grad_batches`` batches of seeded,
sharded crops, each ``backward(loss / accumulate)``, then one step of the two-group optimizer under the
poly schedule. Validation, best-k checkpoints and resume: ``docs/training.md``."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lseg.console import progress_bar
from lseg.data.registry import (
    FEWSHOT_DATASETS,
    build_dataset,
    build_fewshot_dataset,
    canonical_name,
    ignore_index_of,
)
from lseg.data.transforms import fewshot_transform, train_transform, val_transform
from lseg.errors import CheckpointError, ConfigError, DatasetError, LSegError
from lseg.eval.evaluate import EvalConfig, encode_labels, evaluate_fewshot, evaluate_segmentation
from lseg.models.lseg import LSeg
from lseg.pretrained.checkpoints import save_pretrained
from lseg.train.config import TrainConfig, absolute_inputs, check_accelerator, dump_config
from lseg.train.data import ResumableShardSampler, SeededSamples
from lseg.train.init import build_model
from lseg.train.optim import PolyLR, build_optimizer, optimizer_step
from lseg.train.state import (
    kept_best,
    load_checkpoint,
    remove_previous_run,
    resolve_resume,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from lseg.train.sync_bn import convert_sync_batchnorm

if TYPE_CHECKING:
    from lightning.fabric import Fabric

__all__ = ["TrainResult", "train"]

_logger = logging.getLogger(__name__)

# Changing these between an interrupted run and its resumption changes the result (a warning says so).
_RESUME_SENSITIVE = (
    "model", "init_checkpoint", "dataset", "split", "label_style", "batch_size", "accumulate_grad_batches",
    "seed", "crop_size", "base_size", "scale_range", "hflip_prob", "fold", "fewshot_support", "fewshot_boundary",
    "loss_reduction",
)  # fmt: skip
# These the restored optimizer state and LR schedule (base LRs, length, power) override: a resume that
# changes them would silently not apply them, so it is refused.
_OPTIMISATION = (
    "epochs", "max_steps", "schedule_epochs", "optimizer", "base_lr", "lr_scaling", "decoder_lr_mult",
    "momentum", "weight_decay", "poly_power", "lr_schedule_interval",
)  # fmt: skip


@dataclass
class TrainResult:
    """What :func:`train` did: optimizer steps done (earlier invocations included) of ``total_steps``;
    ``model_dir`` (``out_dir/model``) once ``finished``, else ``None``; ``last_loss``, the mean loss of
    the last logged step; ``val_metrics``, the last validation's (percent); ``best``, the kept
    ``best-*.ckpt`` files, best first."""

    out_dir: Path
    step: int
    total_steps: int
    finished: bool
    checkpoint: Path
    model_dir: Path | None
    resumed_from: Path | None
    last_loss: float | None
    rank: int = 0
    val_metrics: dict[str, float] | None = None
    best: list[Path] = field(default_factory=list)


def _make_fabric(cfg: TrainConfig) -> Fabric:
    from lightning.fabric import Fabric
    from lightning.fabric.loggers import CSVLogger, TensorBoardLogger

    multi = cfg.world_size > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1
    strategy = "ddp" if cfg.strategy == "auto" and multi else cfg.strategy
    loggers: list[Any] = []
    if cfg.logger == "csv":
        loggers.append(CSVLogger(root_dir=cfg.out_dir, name="logs", flush_logs_every_n_steps=100))
    elif cfg.logger == "tensorboard":
        loggers.append(TensorBoardLogger(root_dir=cfg.out_dir, name="logs"))
    return Fabric(
        accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes, strategy=strategy,
        precision=cfg.precision, loggers=loggers,
    )


def train(cfg: TrainConfig, resume: str | Path | bool | None = "auto") -> TrainResult:
    """Train (or continue training) an LSeg model as ``cfg`` describes. ``resume``: ``"auto"`` continues
    from ``out_dir/checkpoints/last.ckpt`` if it exists, a path from that checkpoint, ``"never"``/``None``
    starts afresh. With ``devices > 1`` and no launcher, Fabric re-runs the command for the other
    processes (use the CLI or ``torchrun``, not an interactive session)."""
    check_accelerator(cfg)  # a GPU this machine lacks: one error before Fabric starts
    # before the loggers see it (else logs/ would go to ./~/x); config.yaml replayed elsewhere: the same run
    cfg = absolute_inputs(cfg)
    fewshot = canonical_name(cfg.dataset) in FEWSHOT_DATASETS
    if cfg.world_size > 1 and "LOCAL_RANK" not in os.environ:  # one data error, not one per process
        _build_dataset(cfg, fewshot)
        _build_dataset(cfg, fewshot, val=True)
    fabric = _make_fabric(cfg)
    fabric.launch()
    if fabric.world_size != cfg.world_size:  # e.g. torchrun without --devices
        cfg = cfg.replace(devices=max(1, fabric.world_size // cfg.num_nodes))
    fabric.seed_everything(cfg.seed, verbose=False)
    # no cudnn.benchmark: it picks kernels by timing, so GPU runs would differ from run to run

    out_dir = Path(cfg.out_dir)
    ckpt_path = out_dir / "checkpoints" / "last.ckpt"
    resume_path = resolve_resume(resume, ckpt_path)
    if cfg.reference_devices is not None and fabric.world_size != cfg.reference_devices and fabric.is_global_zero:
        _logger.warning(
            "this recipe reproduces a run on %d GPUs; this one has %d process(es): the global batch is %d "
            "instead of %d%s", cfg.reference_devices, fabric.world_size, cfg.global_batch_size,
            cfg.replace(devices=cfg.reference_devices, num_nodes=1).global_batch_size,
            " and the LR does not follow it (lr_scaling=reference)" if cfg.lr_scaling == "reference" else "",
        )

    # --- data: the reference augmentation, seeded per (seed, epoch, image); sharded per process
    if cfg.monitor == "FB-IoU" and not fewshot:
        raise ConfigError("monitor FB-IoU is a few-shot metric; use pixAcc or mIoU")
    dataset = _build_dataset(cfg, fewshot)
    ignore_index = ignore_index_of(dataset)
    if cfg.ignore_index is not None and cfg.ignore_index != ignore_index:
        raise ConfigError(f"ignore_index={cfg.ignore_index}, but {cfg.dataset} masks mark ignored pixels "
                          f"with {ignore_index}")
    if not fewshot:
        dataset.transform = train_transform(
            base_size=cfg.base_size, crop_size=cfg.crop_size, scale_range=cfg.scale_range,
            hflip_p=cfg.hflip_prob, ignore_index=ignore_index,
        )
    val_dataset = _build_dataset(cfg, fewshot, val=True)
    sampler = ResumableShardSampler(
        len(dataset), cfg.batch_size, cfg.accumulate_grad_batches, fabric.global_rank, fabric.world_size, cfg.seed
    )
    loader = DataLoader(
        SeededSamples(dataset, cfg.seed), batch_size=cfg.batch_size, sampler=sampler,
        num_workers=cfg.num_workers, pin_memory=fabric.device.type == "cuda",
    )
    loader = fabric.setup_dataloaders(loader, use_distributed_sampler=False)
    steps_per_epoch = sampler.steps
    if cfg.max_steps is None and cfg.epochs is None:
        raise ConfigError("set the run length: epochs or max_steps")
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch  # type: ignore[operator]
    schedule_steps = cfg.schedule_epochs * steps_per_epoch if cfg.schedule_epochs else total_steps

    # --- model, optimizer, schedule
    model = build_model(cfg)
    if fabric.world_size > 1 and cfg.sync_batchnorm:
        model = convert_sync_batchnorm(model, fabric.device.type)
    optimizer = build_optimizer(model, cfg)
    per_epoch = cfg.lr_schedule_interval == "epoch"
    schedule_len = math.ceil(schedule_steps / steps_per_epoch) if per_epoch else schedule_steps
    scheduler = PolyLR(optimizer, total=schedule_len, power=cfg.poly_power)
    net, optimizer = fabric.setup(model, optimizer)  # net(x, text): text (K, D), or (B, K, D) per image
    raw: LSeg = net.module
    precision = fabric.strategy.precision
    scaler: torch.amp.GradScaler | None = getattr(precision, "scaler", None)  # fp16 mixed precision only

    # --- resume: weights, optimizer (momentum), schedule, GradScaler, step, data position, RNG, best-k
    step = 0  # optimizer steps applied (the LR schedule's clock)
    position = 0  # optimizer steps' worth of batches consumed: step + steps the fp16 scaler skipped
    best: list[dict[str, Any]] = []  # {"path", "score", "epoch", "step"}, best first
    val_pending = False  # an epoch end's validation under way (a Ctrl-C in it: done first on resume)
    if resume_path is not None:
        ckpt = load_checkpoint(resume_path)
        try:
            raw.load_state_dict(ckpt["model"])
        except RuntimeError:  # missing / unexpected keys or shapes: the checkpoint is another architecture
            # the model each config builds, as the user named it: its init_checkpoint, else its model
            then, now = (str(c.get("init_checkpoint") or c.get("model") or "(unknown)")
                         for c in (ckpt.get("config", {}), cfg.to_dict()))
            raise CheckpointError(
                f"{resume_path} is a checkpoint of model {then}, not of this run's {now}: give another "
                "--out-dir, or --resume never to start afresh"
            ) from None
        derived = {"total steps": total_steps, "schedule steps": schedule_steps,
                   "learning rates": list(scheduler.base_lrs)}
        _check_changed(ckpt, cfg, resume_path, derived, list(dataset.labels))
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["step"])
        position = int(ckpt.get("position", step))
        if ckpt.get("precision"):
            precision.load_state_dict(ckpt["precision"])
        set_rng_state(ckpt["rng"])
        best = kept_best(ckpt, ckpt_path.parent, cfg.monitor)
        val_pending = bool(ckpt.get("val_pending")) and val_dataset is not None
        if step > total_steps:
            raise ConfigError(f"{resume_path} is at step {step}, beyond this config's {total_steps} steps")
        _logger.info("resumed from %s at step %d", resume_path, step)
    if fabric.is_global_zero:  # only once the data, model and checkpoint are known to fit: a failed start
        earlier_run = (out_dir / "config.yaml").is_file()  # what lseg train writes first
        dump_config(cfg, out_dir / "config.yaml")  # leaves nothing (makes out_dir)
        if resume_path is None and earlier_run:  # afresh: its states and model would pass for this run's
            remove_previous_run(out_dir)
    # steps of this invocation: a job script resubmitted unchanged advances by that many each time
    stop_step = min(total_steps, step + cfg.stop_after_steps) if cfg.stop_after_steps else total_steps

    with torch.no_grad():  # frozen text tower: embed the label strings once per run (fp32)
        if fewshot:  # rows: "others", then the fold's training classes; row_of maps class id -> row
            class_ids = list(dataset.class_ids)
            text = encode_labels(raw, ["others", *(dataset.labels[c] for c in class_ids)])
            row_of = torch.zeros(len(dataset.labels), dtype=torch.long, device=text.device)
            row_of[class_ids] = torch.arange(1, len(class_ids) + 1, device=text.device)
        else:
            text = raw.encode_text(list(dataset.labels)).float()

    def checkpoint_state() -> dict[str, Any]:
        return {
            "model": raw.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": step, "position": position, "epoch": position // steps_per_epoch,
            "steps_per_epoch": steps_per_epoch, "precision": precision.state_dict(),
            "total_steps": total_steps, "schedule_steps": schedule_steps, "rng": rng_state(), "config": cfg.to_dict(),
            "labels": list(dataset.labels), "world_size": fabric.world_size, "best": [dict(b) for b in best],
            "val_pending": val_pending,
            "model_config": raw.config.to_dict(),  # what loads the weights as a model (config.json's)
        }

    def validate_and_rank(epochs_done: int) -> dict[str, float]:
        nonlocal phase, val_pending
        metrics = _validate(raw, val_dataset, cfg, fewshot)
        net.train()
        fabric.log_dict({f"val/{k}": v for k, v in metrics.items()}, step=step)
        score = metrics[cfg.monitor]
        phase, val_pending = "update", False  # the ranking and its files change together
        if cfg.save_top_k and (len(best) < cfg.save_top_k or score > best[-1]["score"]):
            path = out_dir / "checkpoints" / f"best-epoch{epochs_done:03d}-{cfg.monitor}{score:.2f}.ckpt"
            best.append({"path": str(path), "score": score, "epoch": epochs_done, "step": step})
            best.sort(key=lambda b: -b["score"])  # stable: on a tie the earlier epoch ranks first
            dropped = best[cfg.save_top_k:]
            del best[cfg.save_top_k:]
            if any(b["path"] == str(path) for b in best):
                save_checkpoint(fabric, path, checkpoint_state())
            if fabric.is_global_zero:
                for b in dropped:
                    if b["path"] != str(path):
                        Path(b["path"]).unlink(missing_ok=True)
        phase = "done"
        return metrics

    accumulate = cfg.accumulate_grad_batches
    bar = progress_bar(
        total=stop_step, initial=step, desc="train", unit="step", disable=not (fabric.is_global_zero and cfg.progress_bar),
    )
    last_loss: float | None = None
    val_metrics: dict[str, float] | None = None
    saved_at = step if resume_path is not None else -1
    net.train()
    t_log, logged_at = time.perf_counter(), step
    # Where a Ctrl-C finds the run: "done", a whole step's state; "forward", a step's batches under way (only
    # the BatchNorm statistics and the RNG moved, restored from ``boundary``); "update", neither (not saved).
    phase = "done"
    boundary: tuple[dict[str, Any], list[torch.Tensor]] = ({}, [])
    try:
        if val_pending:
            val_metrics = validate_and_rank(position // steps_per_epoch)
            saved_at = -1  # last.ckpt records it
        while step < stop_step:
            epoch, step_in_epoch = divmod(position, steps_per_epoch)
            sampler.set_position(epoch, step_in_epoch)
            batches = iter(loader)
            for _ in range(step_in_epoch, steps_per_epoch):
                phase, boundary = "forward", (rng_state(), [b.clone() for b in raw.buffers()])
                lr_now = [g["lr"] for g in optimizer.param_groups]
                loss_sum = torch.zeros((), device=fabric.device)
                hits = torch.zeros(2, device=fabric.device)  # correct, labelled pixels (training pixAcc)
                for micro in range(accumulate):
                    batch = _next_batch(batches)
                    images, target, labels = batch["image"], batch["mask"], text
                    if fewshot:
                        images, target, labels = _zero_shot_batch(
                            batch, text, row_of, ignore_index, cfg.fewshot_boundary)
                    # DDP all-reduces the gradients on the last forward of the step only.
                    with fabric.no_backward_sync(net, enabled=micro < accumulate - 1):
                        logits = net(raw.normalize(images), labels)
                        loss = _pixel_cross_entropy(logits, target, ignore_index, fabric, cfg.loss_reduction)
                        fabric.backward(loss / accumulate)
                    loss_sum += loss.detach()
                    with torch.no_grad():
                        valid = target != ignore_index
                        right = ((logits.argmax(1) == target) & valid).sum()
                        hits += torch.stack([right, valid.sum()]).float()
                phase = "update"
                applied = optimizer_step(optimizer, scaler)
                optimizer.zero_grad(set_to_none=True)
                position += 1
                if per_epoch and position % steps_per_epoch == 0:
                    scheduler.step()
                if not applied:  # inf/NaN fp16 gradients: the scaler lowered its scale and skipped
                    _logger.info("fp16 GradScaler skipped a step (scale now %g); not counted", scaler.get_scale())  # type: ignore[union-attr]
                    phase = "done"
                    continue
                step += 1
                if not per_epoch:
                    scheduler.step()
                phase = "done"

                if step % cfg.log_every_n_steps == 0 or step == stop_step:
                    loss_mean = fabric.all_reduce(loss_sum / accumulate, reduce_op="mean")
                    hits = fabric.all_reduce(hits, reduce_op="sum")
                    last_loss = float(loss_mean)
                    if not math.isfinite(last_loss):
                        raise FloatingPointError(f"training loss is {last_loss} at step {step}: stopping")
                    now = time.perf_counter()
                    metrics = {
                        "train/loss": last_loss, "train/pixAcc": float(hits[0] / hits[1].clamp_min(1)),
                        "lr/encoder": lr_now[0], "lr/decoder": lr_now[1], "epoch": epoch,
                        "time/step_s": (now - t_log) / (step - logged_at),  # the last may be fewer
                    }
                    t_log, logged_at = now, step
                    fabric.log_dict(metrics, step=step)
                    bar.set_postfix(loss=f"{last_loss:.4f}", epoch=epoch)
                bar.update(1)

                epochs_done, mid_epoch = divmod(position, steps_per_epoch)
                if val_dataset is not None and not mid_epoch and epochs_done % cfg.val_every_n_epochs == 0:
                    # before last.ckpt, which records the ranking
                    val_pending = True
                    val_metrics = validate_and_rank(epochs_done)

                every = cfg.checkpoint_every_n_steps
                if every and step % every == 0 and step < stop_step:
                    save_checkpoint(fabric, ckpt_path, checkpoint_state())
                    for logger in fabric.loggers:
                        logger.save()
                    saved_at = step
                if step >= stop_step:
                    break
    except (KeyboardInterrupt, DatasetError) as stop:  # keep the steps done since the last checkpoint, then stop
        bar.close()
        # one process only: the others of a DDP run may be a step ahead or behind, and would not meet
        if phase != "update" and saved_at != step and fabric.world_size == 1:
            if phase == "forward":
                set_rng_state(boundary[0])
                for buffer, saved in zip(raw.buffers(), boundary[1]):
                    buffer.copy_(saved)
            save_checkpoint(fabric, ckpt_path, checkpoint_state())
            data = isinstance(stop, DatasetError)
            _logger.warning("%s at step %d: saved %s; %srun the same command again to continue",
                            "stopped by the data error below" if data else "interrupted", step, ckpt_path,
                            "fix it, then " if data else "")
        for logger in fabric.loggers:
            logger.finalize("interrupted")
        raise
    bar.close()

    if saved_at != step:
        save_checkpoint(fabric, ckpt_path, checkpoint_state())
    finished = step >= total_steps
    model_dir = out_dir / "model" if finished else None
    if finished:
        if fabric.is_global_zero:
            save_pretrained(raw, model_dir)
        fabric.barrier()
    for logger in fabric.loggers:
        logger.finalize("success")
    return TrainResult(
        out_dir=out_dir, step=step, total_steps=total_steps, finished=finished, checkpoint=ckpt_path,
        model_dir=model_dir, resumed_from=resume_path, last_loss=last_loss, rank=fabric.global_rank,
        val_metrics=val_metrics, best=[Path(b["path"]) for b in best],
    )


def _next_batch(batches: Any) -> Any:
    """The loader's next batch. A data error in a worker process comes back as the same type, its message
    torch's "Caught ... in DataLoader worker" plus the whole traceback: raised again with its own line."""
    try:
        return next(batches)
    except LSegError as e:
        text = str(e)
        if "\nOriginal Traceback" not in text:
            raise
        prefix = f"{type(e).__module__}.{type(e).__qualname__}: "
        line = next((ln for ln in reversed(text.splitlines()) if ln.startswith(prefix)), None)
        if line is None:
            raise
        raise type(e)(line[len(prefix):]) from None


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
    """Per-pixel cross-entropy over the labelled pixels (0 if none). ``global``: this process's pixel-loss
    sum x world size / labelled pixels of all processes, so the gradient mean DDP takes is that of the
    global batch's mean; ``reference``: each process's own pixel mean, averaged by DDP as lang-seg."""
    total = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().float()
    if reduction == "reference" or fabric.world_size == 1:
        return total / count.clamp_min(1)
    count = fabric.all_reduce(count, reduce_op="sum")
    return total * fabric.world_size / count.clamp_min(1)


def _build_dataset(cfg: TrainConfig, fewshot: bool, val: bool = False) -> Any:
    """The training split, or with ``val`` the validation split transformed as the reference validates
    (``None`` without ``val_split``). Few-shot: ``Resize((crop, crop))``, no augmentation (reference)."""
    split = cfg.val_split if val else cfg.split
    if val and split is None:
        return None
    kwargs = {**cfg.dataset_kwargs, **cfg.val_dataset_kwargs} if val else cfg.dataset_kwargs
    if fewshot:
        support = {} if val else {"num_support": cfg.fewshot_support}
        return build_fewshot_dataset(
            cfg.dataset, cfg.data_root, fold=cfg.fold, split=split,
            transform=fewshot_transform(cfg.crop_size), label_style=cfg.label_style, **support, **kwargs,
        )
    transform = val_transform(cfg.crop_size) if val else None
    return build_dataset(cfg.dataset, cfg.data_root, split, transform, cfg.label_style, **kwargs)


def _validate(model: LSeg, dataset: Any, cfg: TrainConfig, fewshot: bool) -> dict[str, float]:
    """The :mod:`lseg.eval` protocol on the validation split (sharded over processes, summed), percent."""
    ecfg = EvalConfig(  # the protocol follows the dataset; fp32: never cast the model being trained
        dataset=cfg.dataset, size=cfg.crop_size, crop_size=cfg.crop_size, fewshot_size=cfg.crop_size,
        batch_size=cfg.batch_size, num_workers=cfg.num_workers, progress=False,
    )
    if fewshot:
        report = evaluate_fewshot(model, dataset, ecfg)
        return {"mIoU": float(report["miou"] or 0.0), "FB-IoU": float(report["fb_iou"] or 0.0)}
    report = evaluate_segmentation(model, dataset, list(dataset.labels), ecfg)
    return {"pixAcc": float(report["metrics"]["pixAcc"] or 0.0), "mIoU": float(report["metrics"]["mIoU"] or 0.0)}


def _check_changed(ckpt: dict[str, Any], cfg: TrainConfig, path: Path, derived: dict[str, Any],
                   labels: list[str]) -> None:
    """Refuse to resume ``ckpt`` with other optimisation settings (its optimizer state and LR schedule
    would override them), and warn about other settings that make the result differ. ``derived``: this
    run's total steps, schedule steps and learning rates, which other settings (batch size, devices) move;
    ``labels``: the dataset's class strings now (e.g. an edited labels.txt)."""
    saved, now = ckpt.get("config", {}), cfg.to_dict()

    def changes(keys: Any, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
        return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in keys if k in old and old[k] != new.get(k)]

    others = changes(_RESUME_SENSITIVE, saved, now)
    old = ckpt.get("labels", labels)
    if old != labels:  # the classes the loss trains: the first one that differs, or the count
        i = next((i for i, (a, b) in enumerate(zip(old, labels)) if a != b), None)
        others.append(f"labels: {len(old)} -> {len(labels)} classes" if i is None else
                      f"labels: class {i} {old[i]!r} -> {labels[i]!r}")
    refused = changes(_OPTIMISATION, saved, now)
    if not refused:  # e.g. another batch size: the steps of an epoch-based run or a scaled LR change with it
        then = {"total steps": ckpt.get("total_steps"), "schedule steps": ckpt.get("schedule_steps"),
                "learning rates": ckpt.get("scheduler", {}).get("base_lrs")}
        refused = changes(derived, {k: v for k, v in then.items() if v is not None}, derived)
        refused += others if refused else []
    if refused:
        raise ConfigError(
            f"{path} was trained with other optimisation settings ({'; '.join(refused)}), which its "
            "saved optimizer and LR schedule would override: resume with the same settings, fine-tune "
            f"further with a new --out-dir and --checkpoint {path.parent.parent / 'model'} (a finished "
            "run's model), or start afresh with --resume never"
        )
    if others:
        _logger.warning(
            "resuming %s with changed settings (%s): the result will differ from an uninterrupted run",
            path, ", ".join(others),
        )
