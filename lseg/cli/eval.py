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
import dataclasses
import json
import os
import sys
from dataclasses import dataclass

from lseg.cli import common
from lseg.cli.parser import plain_doc
from lseg.eval.config import EvalConfig
from lseg.io.checks import report_file
from lseg.options import CheckedOptions, add_options, option, options_from_args

__all__ = ["EvalRun", "register"]


@dataclass(frozen=True)
class EvalRun(CheckedOptions):
    """How ``lseg eval`` runs and reports (what it evaluates: :class:`~lseg.eval.config.EvalConfig`).

    Attributes:
        devices: processes (GPUs) on this node; more than one runs DDP via Fabric.
        num_nodes: nodes (machines), with ``devices`` processes each.
        out: write the JSON report here (atomically; ``None``: printed only).
        per_class: print the per-class IoU.
        quiet: no progress bar.
    """

    devices: int = option(1, min=1)
    num_nodes: int = option(1, min=1)
    out: str | None = option(None, short="-o", check=report_file("out"))
    per_class: bool = False
    quiet: bool = option(False, short="-q")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate on a dataset (mIoU / pixAcc, open-vocabulary, few-shot protocol)",
        description=plain_doc(__doc__),
    )
    add_options(p, EvalConfig)
    add_options(p, EvalRun)
    common.add_model_args(p)
    p.set_defaults(func=_cmd_eval)


def _options(args: argparse.Namespace) -> tuple[EvalConfig, EvalRun]:
    """The command's configs, every option checked (the report path too) before any work."""
    run: EvalRun = options_from_args(EvalRun, args)
    cfg: EvalConfig = options_from_args(EvalConfig, args, progress=not run.quiet)
    return cfg, run


def _cmd_eval(args: argparse.Namespace) -> int:
    cfg, run = _options(args)
    source = common.model_source_from_args(args)
    from lseg.eval.evaluate import evaluate, format_report
    from lseg.io import atomic_write

    rank = 0
    if run.devices * run.num_nodes > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Distributed: Fabric starts the other processes (or joins torchrun's) and the process group;
        # each process then evaluates its shard and the confusion matrices are summed.
        from lightning.fabric import Fabric

        device = source.device or ""
        accelerator = "cpu" if device.startswith("cpu") else ("cuda" if device else "auto")
        in_torchrun = "WORLD_SIZE" in os.environ
        devices = int(os.environ.get("LOCAL_WORLD_SIZE", run.devices)) if in_torchrun else run.devices
        fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=run.num_nodes, strategy="ddp")
        fabric.launch()
        source = dataclasses.replace(source, device=str(fabric.device))
        rank = fabric.global_rank
    model = common.load_source_model(source)
    report = evaluate(model, cfg)
    report["model"] = source.checkpoint or f"random:{source.random_weights}"
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
