"""``lseg eval``: mIoU / pixAcc over a dataset, or the few-shot (zero-shot) protocol.

Examples::

    # reference ADE20K protocol (multi-scale + flip) for the official checkpoint
    lseg eval -c lseg-ade20k/ --dataset ade20k --data-root /data --label-style reference --multiscale
    # single-scale, long side 480, on 4 GPUs
    lseg eval -c lseg-ade20k/ --dataset ade20k --data-root /data --devices 4 --out ade.json
    # open-vocabulary PASCAL-Context-59 with a prompt ensemble
    lseg eval -c lseg-vitl16/ --protocol open-vocab --dataset pc59 --data-root /data --template default
    # zero-shot protocol: FSS-1000 test categories, and all PASCAL-5i folds
    lseg eval -c fss_l16.ckpt --protocol fewshot --dataset fss1000 --data-root /data/Datasets_HSN
    lseg eval -c MODEL --protocol fewshot --dataset pascal5i --data-root /data/Datasets_HSN --fold all
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from lseg.cli.common import add_model_args, load_model_from_args, none_if_zero
from lseg.cli.parser import Parser, plain_doc
from lseg.errors import ConfigError
from lseg.options import Flag, add_config_args, config_from_args, parse_value

__all__ = ["EVAL_FLAGS", "RUN_FLAGS", "EvalRun", "register"]


def _templates(given: list[str] | None) -> tuple[str, ...]:
    from lseg.labels import DEFAULT_TEMPLATES

    templates: list[str] = []
    for t in given or []:
        templates += list(DEFAULT_TEMPLATES) if t == "default" else [t]
    return tuple(templates)


def _scales(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(s) for s in text.split(","))
    except ValueError:
        raise ConfigError(f"--scales must be comma-separated numbers, got {text!r}") from None


def _parse_folds(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "all":
        return (0, 1, 2, 3)
    try:
        return tuple(int(f) for f in text.split(",") if f.strip())
    except ValueError:
        raise ConfigError(f"--fold must be 0..3, a comma list or 'all', got {text!r}") from None


def _dataset_kwargs(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    kwargs = parse_value(text)
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--dataset-kwargs must be a YAML mapping, got {text!r}")
    return kwargs


#: The command-line side of :class:`lseg.eval.evaluate.EvalConfig` (its ``progress`` is ``--quiet``).
EVAL_FLAGS = {
    "protocol": Flag("default: fewshot for pascal5i/coco20i/fss1000, else semantic", default=None),
    "dataset": Flag("ade20k, pascal_voc, voc20, pc59, pc459, coco_stuff, ade847, folder | pascal5i, coco20i, fss1000",
                    aliases=("-d",), required=True),
    "data_root": Flag("dataset folder", required=True),
    "split": Flag("default: val (folder: all images; few-shot: the test episodes)"),
    "label_style": Flag("label names: ADE20K full|reference, VOC clean|reference, few-shot clean|reference (default: full, clean, reference)"),
    "templates": Flag("prompt template with {} (repeatable); 'default' = lseg.labels.DEFAULT_TEMPLATES",
                      name="template", repeat=True, convert=_templates),
    "multiscale": Flag("reference multi-scale + flip evaluation"),
    "size": Flag("single-scale long side; 0 = original resolution (testval)", convert=none_if_zero),
    "crop_size": Flag("network crop / sliding-window size"),
    "stride_rate": Flag("sliding-window stride as a fraction of the crop"),
    "scales": Flag("multi-scale factors, comma separated (default 0.5,...,1.75)", default=None, convert=_scales),
    "base_size": Flag("multi-scale base long side"),
    "flip": Flag("add flipped predictions (--no-flip: none; default: with --multiscale only)"),
    "folds": Flag("few-shot fold(s): 0..3, a comma list, or 'all'", name="fold", default="0", convert=_parse_folds),
    "fewshot_size": Flag("few-shot square resize"),
    "num_episodes": Flag("few-shot episodes per fold (default: reference)"),
    "seed": Flag("COCO-20i episode seed"),
    "batch_size": Flag("few-shot episodes per forward"),
    "num_workers": Flag("DataLoader workers per process"),
    "max_samples": Flag("only the first N samples (debugging)"),
    "precision": Flag("image path precision (default fp32: the reference's numbers; auto: bf16 where the "
                      "CPU/GPU computes it natively)"),
    "dataset_kwargs": Flag("extra reader arguments as a YAML mapping", default=None, convert=_dataset_kwargs),
}


@dataclass(frozen=True)
class EvalRun:
    """How ``lseg eval`` runs and reports (the rest of its settings are an ``EvalConfig``).

    Attributes:
        devices, num_nodes: processes (GPUs) per node and nodes; more than one runs DDP via Fabric.
        out: where the JSON report is written (atomically); ``None``: printed only.
        per_class: print the per-class IoU.
        quiet: no progress bar.
    """

    devices: int = 1
    num_nodes: int = 1
    out: str | None = None
    per_class: bool = False
    quiet: bool = False


#: The command-line side of :class:`EvalRun`.
RUN_FLAGS = {
    "devices": Flag("processes (GPUs) on this node; >1 runs DDP via Fabric"),
    "num_nodes": Flag("nodes (machines), with --devices each"),
    "out": Flag("write the JSON report here (atomically)", aliases=("-o",)),
    "per_class": Flag("print per-class IoU"),
    "quiet": Flag("no progress bar", aliases=("-q",)),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` sub-command (its options are built when it is used: the config imports torch)."""
    subparsers.add_parser(
        "eval",
        help="evaluate on a dataset (mIoU / pixAcc, open-vocabulary, few-shot protocol)",
        description=plain_doc(__doc__),
        populate=_add_options,
    )


def _add_options(p: Parser) -> None:
    from lseg.eval.evaluate import EvalConfig

    add_config_args(p, EvalConfig, EVAL_FLAGS)
    add_config_args(p, EvalRun, RUN_FLAGS)
    add_model_args(p)
    p.set_defaults(func=_cmd_eval)


def _eval_config(args: argparse.Namespace) -> Any:
    from lseg.data.registry import FEWSHOT_DATASETS, canonical_name
    from lseg.eval.evaluate import EvalConfig

    protocol = args.protocol or ("fewshot" if canonical_name(args.dataset) in FEWSHOT_DATASETS else "semantic")
    return config_from_args(EvalConfig, args, EVAL_FLAGS, {"protocol": protocol, "progress": not args.quiet})


def _cmd_eval(args: argparse.Namespace) -> int:
    from lseg.eval.evaluate import evaluate, format_report
    from lseg.io import atomic_write

    cfg = _eval_config(args)
    run: EvalRun = config_from_args(EvalRun, args, RUN_FLAGS)
    rank = 0
    if run.devices * run.num_nodes > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Distributed: Fabric starts the other processes (or joins torchrun's) and the process group;
        # each process then evaluates its shard and the confusion matrices are summed.
        from lightning.fabric import Fabric

        accelerator = "cpu" if (args.device or "").startswith("cpu") else ("cuda" if args.device else "auto")
        devices = int(os.environ.get("LOCAL_WORLD_SIZE", run.devices)) if "WORLD_SIZE" in os.environ else run.devices
        fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=run.num_nodes, strategy="ddp")
        fabric.launch()
        args.device = str(fabric.device)
        rank = fabric.global_rank
    model = load_model_from_args(args)
    report = evaluate(model, cfg)
    report["model"] = args.checkpoint or f"random:{args.random_weights}"
    if rank == 0:
        print(format_report(report, per_class=run.per_class), flush=True)  # first: a failed write keeps it
        if run.out:
            text = json.dumps(report, indent=2) + "\n"
            atomic_write(run.out, lambda p: p.write_text(text, encoding="utf-8"))
        failed = report.get("failed") or [f for r in report.get("folds", {}).values() for f in r["failed"]]
        for f in failed:
            print(f"warning: skipped {f['path']}: {f['error']}", file=sys.stderr)
        if failed:  # like segment/features: the metrics are over the readable images only
            return 1
    return 0
