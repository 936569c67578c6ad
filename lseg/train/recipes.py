"""Named training recipes and config resolution: recipe name or YAML/JSON file, then overrides.

A run's :class:`~lseg.train.config.TrainConfig` can come from

* a named recipe (:data:`RECIPES`, e.g. ``ade20k_vitl16_paper``, the reference ``train.sh``),
* a YAML / JSON file (its keys are the field names; an optional ``recipe: NAME`` key starts from
  that recipe),
* field-by-field overrides (``lseg train --batch-size 4`` or ``--set key=value``),

resolved in that order by :func:`load_config`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lseg.errors import ConfigError
from lseg.train.config import TrainConfig, field_names

__all__ = ["RECIPES", "RN101_ZS_MODEL", "get_recipe", "list_recipes", "load_config"]


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


