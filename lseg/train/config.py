"""The typed training configuration, :class:`TrainConfig`, and its YAML form.

A run is described by one flat :class:`TrainConfig` dataclass. It can come from a named recipe, a
YAML / JSON file or field-by-field overrides: :mod:`lseg.train.recipes` (:func:`load_config`).

The resolved config is written to ``<out_dir>/config.yaml`` by the training loop
(:func:`dump_config`), so every run can be re-created with ``lseg train --config <out_dir>/config.yaml``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lseg.errors import ConfigError
from lseg.options import coerce_value, field_types

__all__ = ["TrainConfig", "dump_config", "field_names"]

Precision = Literal["32-true", "bf16-mixed", "16-mixed"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs.

    Model:
        model: registered architecture (``lseg.list_models()``); ignored when ``init_checkpoint``
            is given (the checkpoint carries its architecture).
        init_checkpoint: weights to start from: an lseg folder, ``.safetensors`` or an official
            lang-seg ``.ckpt`` (fine-tuning). ``None`` starts from ``model``'s random init.
        pretrained_backbone: initialise the ViT from timm's ImageNet weights (the reference's init;
            needs network access or a timm/HF cache). Ignored with ``init_checkpoint``.
        clip_text_weights: where the frozen CLIP text tower's weights come from when training from
            scratch: ``"openai"`` (downloaded by open_clip) or a local file (OpenAI ``.pt``, open_clip
            checkpoint or a text-tower state dict). ``None`` keeps the random text tower (tests only:
            the label embeddings are then arbitrary, but fixed). Ignored with ``init_checkpoint``.

    Data:
        dataset: ``ade20k``, ``pascal_voc``, ``pascal_context59``, ``coco_stuff`` or ``folder``
            (see :func:`lseg.data.registry.build_dataset`); or a few-shot benchmark, ``pascal5i``,
            ``coco20i`` or ``fss1000``, for **zero-shot training** (reference
            ``LSegmentationModuleZS``): each item is a query plus ``fewshot_support`` support images of
            the same class, concatenated into one batch, every image scored against
            ``["others", class name]`` with 2-way cross-entropy, images resized to
            ``crop_size x crop_size`` without augmentation.
        data_root: the dataset folder.
        split: training split (``folder``: a ``splits/<name>.txt`` list, or ``None`` for all images;
            few-shot: ``trn``).
        fold: few-shot fold: PASCAL-5i / COCO-20i train on the other three folds' classes and
            validate on this fold's; ignored by FSS-1000 (its splits are category lists).
        fewshot_support: support images per query in zero-shot training (reference 1; 0 = queries only).
        fewshot_boundary: PASCAL-5i boundary pixels (255) in zero-shot training: ``others`` (the
            reference: its 2-way loss has no ignore index, so they are trained as background) or
            ``ignore`` (left out of the loss, as the evaluation leaves them out).
        dataset_kwargs: extra keyword arguments of the dataset reader (e.g. ``{aug: true}`` for VOC,
            ``{splits_dir: ...}`` for PASCAL-5i / COCO-20i).
        label_style: class strings fed to CLIP: ADE20K ``full`` (``"coffee table"``) or
            ``reference`` (lang-seg's truncated ``"coffee"``); VOC ``clean``/``reference``.
            ``None``: the reader's default.
        base_size, crop_size, scale_range, hflip_prob: the reference augmentation (random flip,
            long side uniform in ``scale_range * base_size``, pad, random ``crop_size`` crop).
        ignore_index: mask value excluded from the loss. It must be the dataset's marker (255, or
            65535 for PASCAL-Context-459; checked); ``None`` takes it from the dataset.
        num_workers: DataLoader worker processes per device.

    Validation (reference: every epoch, top 3 by pixel accuracy + last):
        val_split: split evaluated during training (``None``: no validation). Semantic datasets use
            the reference's val transform (short side ``crop_size``, centre crop) and report
            ``pixAcc`` / ``mIoU``; few-shot datasets run the zero-shot protocol on the fold's
            held-out classes (``mIoU`` / ``FB-IoU``, HSNet's meter).
        val_every_n_epochs: validate after every N-th epoch.
        val_dataset_kwargs: reader arguments for the validation split, over ``dataset_kwargs``.
        save_top_k: keep the best K validated states as ``checkpoints/best-*.ckpt`` (0: none).
        monitor: the validation metric that ranks them (higher is better): ``pixAcc`` (reference),
            ``mIoU``, or ``FB-IoU`` (few-shot).

    Optimisation:
        batch_size: images per device per forward (the reference's ``--batch_size``; zero-shot: queries,
            each bringing ``fewshot_support`` supports).
        accumulate_grad_batches: forwards per optimizer step. Global batch =
            ``batch_size * devices * num_nodes * accumulate_grad_batches``.
        epochs / max_steps: length of the run and of the poly schedule, in epochs or in optimizer
            steps (``max_steps`` wins if both are set).
        schedule_epochs: length of the poly schedule in epochs when it is longer than the run
            (``None``: ``epochs``). The reference's zero-shot runs decay over ``--max_epochs`` 200 but
            end after 3 epochs (section 8.3 of the spec).
        stop_after_steps: end this invocation after this many optimizer steps of its own (the
            schedule still follows ``epochs``/``max_steps``); the same command run again resumes and
            does the next ones. For job time limits.
        optimizer: ``sgd`` (reference; momentum ``momentum``) or ``adam`` (reference
            ``--midasproto``; betas 0.9/0.999).
        base_lr: learning rate per 16 images, scaled according to ``lr_scaling``.
        lr_scaling: ``global``: ``lr = base_lr / 16 * global_batch`` (linear scaling rule);
            ``reference``: ``base_lr / 16 * batch_size``, the **per-device** batch as lang-seg does
            (reference bug 12; with train.sh's batch 1 that is 2.5e-4 whatever the GPU count);
            ``none``: ``lr = base_lr``.
        decoder_lr_mult: LR multiplier of the decoder group (reference ``scratch``: x10).
        momentum, weight_decay: SGD momentum, weight decay on every group (reference 0.9, 1e-4).
        poly_power: ``lr_t = lr * (1 - t / T) ** poly_power``.
        loss_reduction: how the per-pixel cross-entropy is averaged over processes. ``global``
            (default): the mean over the labelled pixels of the global batch, so N processes with
            batch B train exactly like one with batch N x B; ``reference``: each process's own
            pixel mean, averaged over processes by DDP (lang-seg), so a crop with many padded or
            ignored pixels weighs as much as a full one. Identical on one process.
        lr_schedule_interval: ``step`` (t counts optimizer steps; default) or ``epoch`` (the
            reference: Lightning's LambdaLR stepped once per epoch).

    Runtime:
        accelerator, devices, num_nodes, strategy, precision: Lightning Fabric settings. With more
            than one process the strategy defaults to DDP.
        sync_batchnorm: use synchronised BatchNorm in the decoder when running on more than one
            process (the reference's ``sync_batchnorm=True``).
        reference_devices: how many GPUs the run this recipe reproduces used (``None``: not known).
            The reference trains on all visible GPUs with a per-GPU batch, so the GPU count is part of
            the recipe (global batch, and the LR with ``lr_scaling=global``); a run with another
            process count logs a warning.
        seed: seeds the model init, the data order and the augmentation.
        out_dir: run folder: ``config.yaml``, ``checkpoints/last.ckpt``, ``logs/``, ``model/``.
        checkpoint_every_n_steps: also save ``last.ckpt`` every N optimizer steps (0: only at
            the end and at ``stop_after_steps``).
        log_every_n_steps: how often loss / accuracy / LR are logged.
        logger: ``csv`` (``logs/version_N/metrics.csv``), ``tensorboard`` or ``none``.
        progress_bar: tqdm bar on rank 0.
    """

    # model
    model: str = "lseg_vitl16_384"
    init_checkpoint: str | None = None
    pretrained_backbone: bool = False
    clip_text_weights: str | None = None
    # data
    dataset: str = "folder"
    data_root: str | None = None
    split: str | None = "train"
    fold: int = 0
    fewshot_support: int = 1
    fewshot_boundary: Literal["others", "ignore"] = "others"
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    label_style: str | None = None
    base_size: int = 520
    crop_size: int = 480
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip_prob: float = 0.5
    ignore_index: int | None = None
    num_workers: int = 4
    # validation
    val_split: str | None = None
    val_every_n_epochs: int = 1
    val_dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    save_top_k: int = 3
    monitor: Literal["pixAcc", "mIoU", "FB-IoU"] = "pixAcc"
    # optimisation
    batch_size: int = 1
    accumulate_grad_batches: int = 1
    epochs: int | None = None
    max_steps: int | None = None
    schedule_epochs: int | None = None
    stop_after_steps: int | None = None
    optimizer: Literal["sgd", "adam"] = "sgd"
    base_lr: float = 0.004
    lr_scaling: Literal["global", "reference", "none"] = "global"
    decoder_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    lr_schedule_interval: Literal["step", "epoch"] = "step"
    loss_reduction: Literal["global", "reference"] = "global"
    # runtime
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Precision = "32-true"
    sync_batchnorm: bool = True
    reference_devices: int | None = None
    seed: int = 0
    out_dir: str = "runs/lseg"
    checkpoint_every_n_steps: int = 1000
    log_every_n_steps: int = 10
    logger: Literal["csv", "tensorboard", "none"] = "csv"
    progress_bar: bool = True

    def __post_init__(self) -> None:
        hints = field_types(TrainConfig)
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, coerce_value(getattr(self, f.name), hints[f.name], f.name))
        positive = (
            "batch_size", "accumulate_grad_batches", "devices", "num_nodes", "crop_size", "base_size",
            "val_every_n_epochs",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "max_steps", "schedule_epochs", "stop_after_steps", "reference_devices"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 (or null), got {value}")
        if self.schedule_epochs is not None and (self.epochs is None or self.max_steps is not None):
            raise ConfigError("schedule_epochs needs epochs (and no max_steps): it extends an epoch-based schedule")
        if self.schedule_epochs is not None and self.epochs is not None and self.schedule_epochs < self.epochs:
            raise ConfigError(f"schedule_epochs ({self.schedule_epochs}) must be >= epochs ({self.epochs})")
        if self.fold not in (0, 1, 2, 3) or self.fewshot_support < 0 or self.save_top_k < 0:
            raise ConfigError("fold must be 0..3; fewshot_support and save_top_k must be >= 0")
        if self.num_workers < 0 or self.checkpoint_every_n_steps < 0 or self.log_every_n_steps < 1:
            raise ConfigError("num_workers, checkpoint_every_n_steps must be >= 0 and log_every_n_steps >= 1")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ConfigError(f"scale_range must be 0 < lo <= hi, got {self.scale_range}")
        if not 0.0 <= self.hflip_prob <= 1.0:
            raise ConfigError(f"hflip_prob must be in [0, 1], got {self.hflip_prob}")
        if self.base_lr <= 0 or self.decoder_lr_mult < 0 or self.weight_decay < 0 or self.poly_power < 0:
            raise ConfigError("base_lr must be > 0; decoder_lr_mult, weight_decay, poly_power >= 0")

    # ------------------------------------------------------------------ derived values
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

    # ------------------------------------------------------------------ conversion
    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields changed; unknown names raise :class:`ConfigError`."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown training config field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping of field names (unknown names raise :class:`ConfigError`)."""
        return cls().replace(**dict(data))


def field_names() -> list[str]:
    """The :class:`TrainConfig` field names, in declaration order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


#: Fields that are folders on this machine: written absolute, so that ``--config`` replayed from
#: another working directory (a cluster job script) resumes the same run on the same data.
_FOLDER_FIELDS = ("out_dir", "data_root")


def dump_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (atomically), its folders (``out_dir``, ``data_root``) made absolute."""
    import yaml

    from lseg.io import atomic_write

    data = cfg.to_dict()
    for name in _FOLDER_FIELDS:
        if isinstance(data.get(name), str):
            data[name] = str(Path(data[name]).expanduser().absolute())
    text = "# lseg train config (re-run with: lseg train --config this-file)\n" + yaml.safe_dump(data, sort_keys=False)
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
