"""Typed training configuration, named recipes and config files.

A run is described by one flat :class:`TrainConfig` dataclass. It can come from

* a named recipe (:data:`RECIPES`, e.g. ``ade20k_vitl16_paper``, the reference ``train.sh``),
* a YAML / JSON file (its keys are the field names; an optional ``recipe: NAME`` key starts from
  that recipe),
* field-by-field overrides (``lseg train --batch-size 4`` or ``--set key=value``).

The resolved config is written to ``<out_dir>/config.yaml`` by the training loop, so every run can
be re-created with ``lseg train --config <out_dir>/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lseg.errors import ConfigError

__all__ = [
    "RECIPES",
    "TrainConfig",
    "coerce_value",
    "get_recipe",
    "list_recipes",
    "load_config",
    "parse_value",
]

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
        stop_after_steps: end this invocation once this many optimizer steps are done (the schedule
            still follows ``epochs``/``max_steps``); a later run resumes. For job time limits.
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
        hints = _hints()
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


@typing.no_type_check
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def field_names() -> list[str]:
    """The :class:`TrainConfig` field names, in declaration order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def field_types() -> dict[str, Any]:
    """Field name -> resolved type annotation."""
    return _hints()


# ---------------------------------------------------------------------- value parsing

_NONE_STRINGS = {"none", "null", "~", ""}


def parse_value(text: str) -> Any:
    """Parse a command-line value with YAML rules (``4`` -> int, ``1e-4`` -> float, ``true``,
    ``[0.5, 2.0]``, ``{aug: true}``); anything else stays a string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce_value(value: Any, tp: Any, name: str = "value") -> Any:
    """Check / convert ``value`` to the annotated type ``tp`` (the subset of types the config uses).

    Strings are accepted for numbers and booleans (``"4"``, ``"true"``), ``"none"``/``"null"`` for
    optional fields, ``"0.5,2.0"`` or a list for tuples. Raises :class:`ConfigError` otherwise.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        none_like = value is None or (isinstance(value, str) and value.strip().lower() in _NONE_STRINGS)
        if none_like and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce_value(value, arg, name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.strip().lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{name} must be a list of {len(args)} values, got {value!r}")
        return tuple(coerce_value(v, a, name) for v, a in zip(value, args))
    if origin is dict:
        if isinstance(value, str):
            value = parse_value(value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    raise ConfigError(f"{name}: unsupported config type {tp!r}")  # pragma: no cover - config bug


# ---------------------------------------------------------------------- recipes

RECIPES: dict[str, Callable[[], TrainConfig]] = {}


def _recipe(fn: Callable[[], TrainConfig]) -> Callable[[], TrainConfig]:
    RECIPES[fn.__name__] = fn
    return fn


@_recipe
def ade20k_vitl16_paper() -> TrainConfig:
    """The reference ``train.sh``: ADE20K, ViT-L/16, batch 1 x accumulate 2 per GPU, 240 epochs.

    SGD (momentum 0.9, wd 1e-4), ``base_lr`` 0.004 scaled by the per-GPU batch as lang-seg does
    (encoder 2.5e-4, decoder 2.5e-3), poly 0.9 stepped per epoch, 480 crops of the 520-based
    0.5-2.0 rescale, fp32, sync BN, per-GPU loss means (``loss_reduction=reference``), validation
    every epoch keeping the top 3 by pixel accuracy, ViT from timm's ImageNet weights, CLIP ViT-B/32
    text tower. 8 GPUs (``reference_devices``; lang-seg issues #9 / #22, not in the code): run it
    with ``--devices 8``. Deliberately different: the **full** ADE20K label strings (the reference's
    truncated list names classes 58 and 130 both ``screen``, so class 130 can never be predicted);
    ``--label-style reference`` restores the truncated strings.
    """
    return TrainConfig(
        model="lseg_vitl16_384",
        pretrained_backbone=True,
        clip_text_weights="openai",
        dataset="ade20k",
        split="train",
        label_style="full",
        base_size=520,
        crop_size=480,
        val_split="val",
        val_every_n_epochs=1,
        save_top_k=3,
        monitor="pixAcc",
        batch_size=1,
        accumulate_grad_batches=2,
        epochs=240,
        optimizer="sgd",
        base_lr=0.004,
        lr_scaling="reference",
        decoder_lr_mult=10.0,
        momentum=0.9,
        weight_decay=1e-4,
        poly_power=0.9,
        lr_schedule_interval="epoch",
        loss_reduction="reference",
        precision="32-true",
        reference_devices=8,
        num_workers=16,
        out_dir="runs/ade20k_vitl16_paper",
        checkpoint_every_n_steps=2000,
        log_every_n_steps=50,
    )


#: Registry name of the ResNet-101 zero-shot network (reference ``LSegRNNetZS``) behind the released
#: PASCAL-5i / COCO-20i / FSS-1000 ResNet-101 checkpoints. Recipes name it; override ``model`` to
#: train another registered architecture (e.g. ``lseg_tiny_test`` on a CPU).
RN101_ZS_MODEL = "lseg_rn101_zs"


def _zero_shot(dataset: str, fold: int, model: str, epochs: int, schedule_epochs: int | None, name: str) -> TrainConfig:
    """The reference ``LSegmentationModuleZS`` recipe (spec section 8.3; it never shipped a script).

    Each item is a ``trn`` query plus one support of the same class; both go into one batch and are
    scored against ``["others", class name]`` with plain 2-way cross-entropy (PASCAL boundary pixels
    as ``others``: the reference has no ignore index there). ``Resize((480, 480))``, no augmentation,
    batch 20 (so 40 images per forward), SGD ``base_lr`` 0.004 scaled by the per-GPU batch:
    0.005 encoder / 0.05 decoder, poly 0.9 per epoch, fp32. The reference's GPU count for these runs
    is not recorded anywhere (``reference_devices`` stays unknown).
    """
    return TrainConfig(
        model=model,
        pretrained_backbone=True,
        clip_text_weights="openai",
        dataset=dataset,
        split="trn",
        fold=fold,
        fewshot_support=1,
        fewshot_boundary="others",
        label_style="reference",
        crop_size=480,
        val_split="val",
        val_every_n_epochs=1,
        save_top_k=3,
        monitor="mIoU",
        batch_size=20,
        epochs=epochs,
        schedule_epochs=schedule_epochs,
        optimizer="sgd",
        base_lr=0.004,
        lr_scaling="reference",
        decoder_lr_mult=10.0,
        lr_schedule_interval="epoch",
        loss_reduction="reference",
        precision="32-true",
        num_workers=8,
        out_dir=f"runs/{name}",
        checkpoint_every_n_steps=500,
        log_every_n_steps=20,
    )


def _register_zero_shot() -> None:
    # PASCAL-5i / COCO-20i: the reference's validation_epoch_end calls exit() after epoch index 3,
    # before that epoch's checkpoint is written, so the surviving weights are those of epochs 0-2 of a
    # poly schedule over --max_epochs (default 200): 3 epochs here, on the 200-epoch schedule.
    for bench, title in (("pascal5i", "PASCAL-5i"), ("coco20i", "COCO-20i")):
        for fold in range(4):
            name = f"{bench}_fold{fold}_zs"

            def make(bench: str = bench, fold: int = fold, name: str = name) -> TrainConfig:
                return _zero_shot(bench, fold, RN101_ZS_MODEL, 3, 200, name)

            make.__name__ = name
            make.__doc__ = (
                f"Zero-shot training on {title}, held-out fold {fold} ({RN101_ZS_MODEL}; 3 of 200 epochs, batch 20+20).\n\n"
                f"Trains on the other folds' trn lists, validates on fold {fold}; lr 0.005 / 0.05."
                + ("\n\nNeeds HSNet's PASCAL-5i training lists: ``--set dataset_kwargs.splits_dir=DIR`` with "
                   "``DIR/trn/fold{0..3}.txt``." if bench == "pascal5i" else
                   "\n\nHSNet's class lists: ``--set dataset_kwargs.splits_dir=DIR`` (``convert_coco20i_splits``); "
                   "without it they are derived from the masks.")
            )
            RECIPES[name] = make

    # FSS-1000: no early exit in the reference, so its default --max_epochs 200 (the released
    # checkpoints' epoch counts are not recorded).
    for name, model, what in (
        ("fss1000_rn101_zs", RN101_ZS_MODEL, f"{RN101_ZS_MODEL}, as fss_rn101"),
        ("fss1000_vitl16_zs", "lseg_vitl16_384", "lseg_vitl16_384, as fss_l16"),
    ):
        def make_fss(model: str = model, name: str = name) -> TrainConfig:
            return _zero_shot("fss1000", 0, model, 200, None, name)

        make_fss.__name__ = name
        make_fss.__doc__ = (
            f"Zero-shot training on FSS-1000 ({what}; 200 epochs, batch 20+20).\n\n"
            "The 520 trn categories; validates on the 240 val categories; lr 0.005 / 0.05."
        )
        RECIPES[name] = make_fss


_register_zero_shot()


@_recipe
def folder_finetune() -> TrainConfig:
    """Fine-tune a converted / released LSeg checkpoint on your own ``folder`` dataset.

    Set ``init_checkpoint`` and ``data_root``. Defaults: batch 4, 20 epochs, SGD with the
    global-batch LR rule (``base_lr`` 0.004 per 16 images, so 1e-3 encoder / 1e-2 decoder at batch
    4), per-step poly decay, 480 crops, bf16 autocast off (fp32).
    """
    return TrainConfig(
        dataset="folder",
        split=None,
        batch_size=4,
        epochs=20,
        base_lr=0.004,
        lr_scaling="global",
        crop_size=480,
        base_size=520,
        out_dir="runs/folder_finetune",
        checkpoint_every_n_steps=500,
    )


def list_recipes() -> list[str]:
    """Names of the built-in recipes."""
    return sorted(RECIPES)


def get_recipe(name: str) -> TrainConfig:
    """The named recipe's config (raises :class:`ConfigError` for an unknown name)."""
    try:
        return RECIPES[name]()
    except KeyError:
        raise ConfigError(f"unknown training recipe {name!r}; available: {', '.join(list_recipes())}") from None


def load_config(source: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Resolve a config: a recipe name or a YAML/JSON file (or defaults), then ``overrides``.

    A file may name a recipe to start from with a ``recipe: NAME`` key; its other keys override the
    recipe. Dotted override keys set one entry of a dict field (``dataset_kwargs.aug=true``).
    """
    if source is None:
        cfg = TrainConfig()
    elif str(source) in RECIPES:
        cfg = get_recipe(str(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(
                f"config {source!r} is neither a recipe ({', '.join(list_recipes())}) nor an existing file"
            )
        data = _read_file(path)
        recipe = data.pop("recipe", None)
        cfg = get_recipe(recipe) if recipe else TrainConfig()
        cfg = _apply(cfg, data)
    return _apply(cfg, dict(overrides or {}))


def _apply(cfg: TrainConfig, changes: Mapping[str, Any]) -> TrainConfig:
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        key = key.replace("-", "_")
        if "." in key:
            top, sub = key.split(".", 1)
            current = dict(flat.get(top, getattr(cfg, top, None)) or {})
            if top not in field_names() or not isinstance(current, dict):
                raise ConfigError(f"{key!r}: only dict fields accept dotted keys")
            current[sub] = value
            flat[top] = current
        else:
            flat[key] = value
    return cfg.replace(**flat)


def _read_file(path: Path) -> dict[str, Any]:
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot parse config file {path}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field names, got {type(data).__name__}")
    return data


def dump_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (atomically)."""
    import yaml

    from lseg.io import atomic_write

    text = "# lseg train config (re-run with: lseg train --config this-file)\n" + yaml.safe_dump(
        cfg.to_dict(), sort_keys=False
    )
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
