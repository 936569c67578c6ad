"""The typed training configuration, :class:`TrainConfig`, and its YAML form (:func:`dump_config`).
Recipes, files and overrides: :mod:`lseg.train.recipes`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lseg.errors import ConfigError
from lseg.eval.config import check_dataset_kwargs
from lseg.options import CheckedOptions, OptionError, option

__all__ = ["TrainConfig", "absolute_inputs", "check_accelerator", "dump_config", "field_names"]

Precision = Literal["32-true", "bf16-mixed", "16-mixed"]
#: Lightning Fabric's accelerators that lseg trains on (gpu: cuda or mps, whichever the machine has).
Accelerator = Literal["auto", "cpu", "cuda", "gpu", "mps"]


def _low_high(value: tuple[float, float]) -> tuple[float, float]:
    if not value[0] <= value[1]:
        raise OptionError(f"`scale_range` must be (low, high) with low <= high, got {list(value)}")
    return value


@dataclass(frozen=True)
class TrainConfig(CheckedOptions):
    """Everything a training run needs (``docs/training.md`` explains the reference's choices).

    Model:
        model: registered architecture (``lseg.list_models()``); ignored with ``init_checkpoint``.
        init_checkpoint: weights to fine-tune: an lseg folder, ``.safetensors`` or official ``.ckpt``.
        pretrained_backbone: initialise the ViT from timm's ImageNet weights (the reference's init).
        clip_text_weights: CLIP text weights when training from scratch: ``"openai"`` or a file (``None``: random).

    Data:
        dataset: ``ade20k``, ``pascal_voc``, ``pascal_context59``, ``coco_stuff`` or ``folder``; or
            ``pascal5i``, ``coco20i`` or ``fss1000`` for zero-shot training.
        data_root: the dataset folder.
        split: training split (``folder``: ``splits/<name>.txt``, ``None``: all images; few-shot: ``trn``).
        fold: few-shot fold held out: trained on the other folds' classes, validated on this one's.
        fewshot_support: support images per query in zero-shot training (reference 1; 0 = queries only).
        fewshot_boundary: PASCAL-5i boundary pixels in zero-shot training: ``others`` (reference) or ``ignore``.
        dataset_kwargs: extra keyword arguments of the dataset reader (e.g. ``{aug: true}`` for VOC).
        label_style: class strings: ADE20K ``full``/``reference``, VOC ``clean``/``reference`` (``None``: the reader's).
        base_size, crop_size, scale_range, hflip_prob: the reference augmentation (random flip,
            long side uniform in ``scale_range * base_size``, pad, random ``crop_size`` crop).
        ignore_index: mask value excluded from the loss, checked against the dataset's (``None``: the dataset's).
        num_workers: DataLoader worker processes per device.

    Validation:
        val_split: split evaluated during training with :mod:`lseg.eval`'s protocol (``None``: none).
        val_every_n_epochs: validate after every N-th epoch.
        val_dataset_kwargs: reader arguments for the validation split, over ``dataset_kwargs``.
        save_top_k: keep the best K validated states as ``checkpoints/best-*.ckpt`` (0: none).
        monitor: the validation metric that ranks them (higher is better).

    Optimisation:
        batch_size: images per device per forward (zero-shot: queries, each with its supports).
        accumulate_grad_batches: forwards per optimizer step (global batch = ``batch_size * devices *
            num_nodes * accumulate_grad_batches``).
        epochs / max_steps: length of the run and of the poly schedule, in epochs or in optimizer
            steps (``max_steps`` wins if both are set).
        schedule_epochs: length of the poly schedule in epochs when longer than the run (``None``: ``epochs``).
        stop_after_steps: end this invocation after this many optimizer steps of its own (running it
            again resumes; for job time limits).
        optimizer: ``sgd`` (the reference's, with ``momentum``) or ``adam`` (betas 0.9/0.999).
        base_lr: learning rate per 16 images, scaled according to ``lr_scaling``.
        lr_scaling: ``global``: ``lr = base_lr / 16 * global_batch`` (linear scaling rule);
            ``reference``: the per-device batch instead, as lang-seg; ``none``: ``lr = base_lr``.
        decoder_lr_mult: LR multiplier of the decoder group (reference ``scratch``: x10).
        momentum, weight_decay: SGD momentum, weight decay on every group (reference 0.9, 1e-4).
        poly_power: the poly schedule's exponent: ``lr_t = lr * (1 - t / T) ^ poly_power``.
        loss_reduction: how the per-pixel cross-entropy is averaged over processes: ``global``, the
            mean over the global batch's labelled pixels; ``reference``, each process's own mean.
        lr_schedule_interval: ``step`` (t counts optimizer steps) or ``epoch`` (the reference).

    Runtime:
        accelerator: Lightning Fabric's accelerator, checked against this machine before the run starts.
        devices, num_nodes: processes per node and nodes (Lightning Fabric).
        strategy: Lightning Fabric's strategy (``auto``: DDP with more than one process).
        precision: Lightning Fabric's precision.
        sync_batchnorm: synchronised BatchNorm in the decoder with more than one process (the reference).
        reference_devices: the GPU count of the run this recipe reproduces; another count logs a warning.
        seed: seeds the model init, the data order and the augmentation.
        out_dir: run folder: ``config.yaml``, ``checkpoints/``, ``logs/``, ``model/``.
        checkpoint_every_n_steps: also save ``last.ckpt`` every N optimizer steps (0: at the end / stop only).
        log_every_n_steps: how often loss / accuracy / LR are logged.
        logger: ``csv`` (``logs/version_N/metrics.csv``), ``tensorboard`` or ``none``.
        progress_bar: tqdm bar on rank 0."""

    # model
    model: str = "lseg_vitl16_384"
    init_checkpoint: str | None = None
    pretrained_backbone: bool = False
    clip_text_weights: str | None = None
    # data
    dataset: str = "folder"
    data_root: str | None = None
    split: str | None = "train"
    fold: int = option(0, min=0, max=3)
    fewshot_support: int = option(1, min=0)
    fewshot_boundary: Literal["others", "ignore"] = "others"
    dataset_kwargs: dict[str, Any] = option(default_factory=dict, check=check_dataset_kwargs)  # noqa: RUF009 (a field)
    label_style: str | None = None
    base_size: int = option(520, min=1)
    crop_size: int = option(480, min=32)  # as lseg eval: validation runs at crop_size
    scale_range: tuple[float, float] = option((0.5, 2.0), gt=0, check=_low_high)
    hflip_prob: float = option(0.5, min=0, max=1)
    ignore_index: int | None = None
    num_workers: int = option(4, min=0)
    # validation
    val_split: str | None = None
    val_every_n_epochs: int = option(1, min=1)
    val_dataset_kwargs: dict[str, Any] = option(default_factory=dict, check=check_dataset_kwargs)  # noqa: RUF009 (a field)
    save_top_k: int = option(3, min=0)
    monitor: Literal["pixAcc", "mIoU", "FB-IoU"] = "pixAcc"
    # optimisation
    batch_size: int = option(1, min=1)
    accumulate_grad_batches: int = option(1, min=1)
    epochs: int | None = option(None, min=1)
    max_steps: int | None = option(None, min=1)
    schedule_epochs: int | None = option(None, min=1)
    stop_after_steps: int | None = option(None, min=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    base_lr: float = option(0.004, gt=0)
    lr_scaling: Literal["global", "reference", "none"] = "global"
    decoder_lr_mult: float = option(10.0, min=0)
    momentum: float = option(0.9, min=0)
    weight_decay: float = option(1e-4, min=0)
    poly_power: float = option(0.9, min=0)
    lr_schedule_interval: Literal["step", "epoch"] = "step"
    loss_reduction: Literal["global", "reference"] = "global"
    # runtime
    accelerator: Accelerator = "auto"
    devices: int = option(1, min=1)
    num_nodes: int = option(1, min=1)
    strategy: Literal["auto", "ddp", "ddp_find_unused_parameters_true"] = "auto"
    precision: Precision = "32-true"
    sync_batchnorm: bool = True
    reference_devices: int | None = option(None, min=1)
    seed: int = 0
    out_dir: str = "runs/lseg"
    checkpoint_every_n_steps: int = option(1000, min=0)
    log_every_n_steps: int = option(10, min=1)
    logger: Literal["csv", "tensorboard", "none"] = "csv"
    progress_bar: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule_epochs is not None and (self.epochs is None or self.max_steps is not None):
            raise OptionError("`schedule_epochs` needs `epochs` (and no `max_steps`): it extends an epoch-based "
                              "schedule")
        if self.schedule_epochs is not None and self.schedule_epochs < self.epochs:  # type: ignore[operator]
            raise OptionError(f"`schedule_epochs` ({self.schedule_epochs}) must be at least `epochs` ({self.epochs})")

    @property
    def world_size(self) -> int:
        """Number of training processes (``devices * num_nodes``)."""
        return self.devices * self.num_nodes

    @property
    def global_batch_size(self) -> int:
        """Images per optimizer step over all processes."""
        return self.batch_size * self.world_size * self.accumulate_grad_batches

    @property
    def lr(self) -> float:
        """Learning rate of the encoder group after ``lr_scaling`` (the decoder gets x``decoder_lr_mult``)."""
        if self.lr_scaling == "global":
            return self.base_lr / 16 * self.global_batch_size
        if self.lr_scaling == "reference":
            return self.base_lr / 16 * self.batch_size
        return self.base_lr

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields changed; unknown names raise :class:`ConfigError`."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown training config field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def check_accelerator(cfg: TrainConfig) -> None:
    """Check ``cfg``'s accelerator and device count on this machine: a missing GPU is one error naming
    the field, not a traceback from inside Lightning."""
    if cfg.accelerator == "cpu":
        return
    import torch  # here: building a config (``lseg train --print-config``) needs no torch

    use_cpu = "use `accelerator` cpu"
    mps = torch.backends.mps.is_available()
    if cfg.accelerator == "mps" or cfg.accelerator == "gpu" and not torch.cuda.is_available() and mps:
        if not mps:
            raise OptionError(f"`accelerator` mps: MPS is not available on this machine; {use_cpu}")
        return
    if cfg.accelerator in ("cuda", "gpu") and not torch.cuda.is_available():
        why = "this PyTorch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise OptionError(f"`accelerator` {cfg.accelerator}: {why} on this machine; {use_cpu}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count and cfg.devices > count:  # cuda, gpu, or auto on a machine with CUDA GPUs
        raise OptionError(f"`devices` {cfg.devices}: this machine has {count} CUDA GPU(s); give at most {count} "
                          "(or more nodes)")


def absolute_inputs(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``out_dir`` and the local paths it reads made absolute (data, checkpoint, CLIP file, reader ``*_dir`` /
    ``*_file`` keywords), so that its ``config.yaml`` replayed elsewhere is the same run; names stay."""
    from lseg.pretrained.released import portable  # no torch

    def local(value: Any) -> Any:
        return portable(value) if isinstance(value, str) and value != "openai" else value

    def paths(kwargs: dict[str, Any]) -> dict[str, Any]:
        return {k: local(v) if k.endswith(("_dir", "_file")) else v for k, v in kwargs.items()}

    return cfg.replace(out_dir=str(Path(cfg.out_dir).expanduser().absolute()), data_root=local(cfg.data_root),
                       init_checkpoint=local(cfg.init_checkpoint),
                       clip_text_weights=local(cfg.clip_text_weights), dataset_kwargs=paths(cfg.dataset_kwargs),
                       val_dataset_kwargs=paths(cfg.val_dataset_kwargs))


def field_names() -> list[str]:
    """The :class:`TrainConfig` field names, in declaration order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def dump_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (atomically)."""
    import yaml

    from lseg.io import atomic_write

    text = "# lseg train config (re-run with: lseg train --config this-file)\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
