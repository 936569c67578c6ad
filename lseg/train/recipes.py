"""Named training recipes (tabled in ``docs/training.md``) and config resolution (:func:`load_config`): a
recipe name or a YAML/JSON file (an optional ``recipe: NAME`` key starts from that recipe), then overrides."""

from __future__ import annotations

import functools
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

    Everything as the reference (8 GPUs: run it with ``--devices 8``) but the **full** ADE20K label
    strings: the reference's truncated list names classes 58 and 130 both ``screen``, so class 130 can
    never be predicted (``--label-style reference`` restores it)."""
    return TrainConfig(
        model="lseg_vitl16_384", pretrained_backbone=True, clip_text_weights="openai",
        dataset="ade20k", split="train", label_style="full", base_size=520, crop_size=480,
        val_split="val", val_every_n_epochs=1, save_top_k=3, monitor="pixAcc",
        batch_size=1, accumulate_grad_batches=2, epochs=240, optimizer="sgd", base_lr=0.004,
        lr_scaling="reference", decoder_lr_mult=10.0, momentum=0.9, weight_decay=1e-4, poly_power=0.9,
        lr_schedule_interval="epoch", loss_reduction="reference", precision="32-true", reference_devices=8,
        num_workers=16,
        out_dir="runs/ade20k_vitl16_paper", checkpoint_every_n_steps=2000, log_every_n_steps=50,
    )


#: The ResNet-101 zero-shot network (reference ``LSegRNNetZS``) of the released PASCAL-5i / COCO-20i /
#: FSS-1000 ResNet-101 checkpoints; override ``model`` to train another (e.g. ``lseg_tiny_test``).
RN101_ZS_MODEL = "lseg_rn101_zs"


def _zero_shot(name: str, doc: str, dataset: str, fold: int, model: str, epochs: int,
               schedule_epochs: int | None) -> None:
    """Register the reference ``LSegmentationModuleZS`` recipe (it never shipped a script): a ``trn``
    query plus one support per item, scored against ``["others", class name]`` (boundaries as
    ``others``), 480x480 without augmentation, batch 20, lr 0.005 / 0.05 (per-GPU batch scaling), poly
    per epoch."""
    make = functools.partial(
        TrainConfig, model=model, pretrained_backbone=True, clip_text_weights="openai",
        dataset=dataset, split="trn", fold=fold, fewshot_support=1, fewshot_boundary="others",
        label_style="reference", crop_size=480,
        val_split="val", val_every_n_epochs=1, save_top_k=3, monitor="mIoU",
        batch_size=20, epochs=epochs, schedule_epochs=schedule_epochs, optimizer="sgd", base_lr=0.004,
        lr_scaling="reference", decoder_lr_mult=10.0, lr_schedule_interval="epoch",
        loss_reduction="reference", precision="32-true", num_workers=8,
        out_dir=f"runs/{name}", checkpoint_every_n_steps=500, log_every_n_steps=20,
    )
    make.__name__, make.__doc__ = name, doc
    RECIPES[name] = make


def _register_zero_shot() -> None:
    # PASCAL-5i / COCO-20i: the reference exit()s after epoch index 3, before that epoch's checkpoint,
    # so the surviving weights are epochs 0-2 of a poly schedule over 200 epochs.
    lists = {
        "pascal5i": "Needs HSNet's training lists: ``--set dataset_kwargs.splits_dir=DIR`` with "
                    "``DIR/trn/fold{0..3}.txt``.",
        "coco20i": "HSNet's class lists: ``--set dataset_kwargs.splits_dir=DIR`` (``convert_coco20i_splits``); "
                   "without it they are derived from the masks.",
    }
    for bench, title in (("pascal5i", "PASCAL-5i"), ("coco20i", "COCO-20i")):
        for fold in range(4):
            doc = (f"Zero-shot training on {title}, held-out fold {fold} ({RN101_ZS_MODEL}; 3 of 200 epochs, "
                   f"batch 20+20).\n\n{lists[bench]}")
            _zero_shot(f"{bench}_fold{fold}_zs", doc, bench, fold, RN101_ZS_MODEL, 3, 200)
    # FSS-1000: no early exit in the reference, so its default --max_epochs 200.
    for name, model, what in (("fss1000_rn101_zs", RN101_ZS_MODEL, f"{RN101_ZS_MODEL}, as fss_rn101"),
                              ("fss1000_vitl16_zs", "lseg_vitl16_384", "lseg_vitl16_384, as fss_l16")):
        doc = f"Zero-shot training on FSS-1000 ({what}; 200 epochs, batch 20+20)."
        _zero_shot(name, doc, "fss1000", 0, model, 200, None)


_register_zero_shot()


@_recipe
def folder_finetune() -> TrainConfig:
    """Fine-tune a converted / released LSeg checkpoint on your own ``folder`` dataset.

    Set ``init_checkpoint`` and ``data_root``: batch 4, 20 epochs, SGD with the global-batch LR rule,
    per-step poly decay, 480 crops, fp32."""
    return TrainConfig(
        dataset="folder", split=None, batch_size=4, epochs=20, base_lr=0.004, lr_scaling="global",
        crop_size=480, base_size=520, out_dir="runs/folder_finetune", checkpoint_every_n_steps=500,
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
    """A config from a recipe name or a YAML/JSON file (or the defaults), then ``overrides``; a dotted
    key sets one entry of a dict field (``dataset_kwargs.aug=true``)."""
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
            current = flat.get(top, getattr(cfg, top, None))
            if top not in field_names() or not isinstance(current, dict):
                raise ConfigError(f"{key!r}: only dict fields accept dotted keys")
            flat[top] = {**current, sub: value}
        else:
            flat[key] = value
    return cfg.replace(**flat)


def _read_file(path: Path) -> dict[str, Any]:
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        mark = getattr(e, "problem_mark", None)  # YAML's own report is several lines: its problem and where
        why = " ".join(str(e).split())
        if mark is not None:
            why = f"{getattr(e, 'problem', why)} at line {mark.line + 1}, column {mark.column + 1}"
        raise ConfigError(f"cannot parse config file {path}: {why}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field names, got {type(data).__name__}")
    return data
