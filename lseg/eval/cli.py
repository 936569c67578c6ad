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
from typing import Any

from lseg.cli import add_model_args, load_model_from_args, plain_doc
from lseg.errors import ConfigError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` sub-command."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate on a dataset (mIoU / pixAcc, open-vocabulary, few-shot protocol)",
        description=plain_doc(__doc__),
    )
    p.add_argument("--protocol", choices=("semantic", "open-vocab", "fewshot"), default=None,
                   help="default: fewshot for pascal5i/coco20i/fss1000, else semantic")
    p.add_argument("--dataset", "-d", required=True,
                   help="ade20k, pascal_voc, voc20, pc59, pc459, coco_stuff, ade847, folder | pascal5i, coco20i, fss1000")
    p.add_argument("--data-root", required=True, help="dataset folder")
    p.add_argument("--split", default=None, help="default: val (folder: all images; few-shot: the test episodes)")
    p.add_argument("--label-style", default=None, help="label names: ADE20K full|reference, VOC / few-shot clean|reference (default: full / clean)")
    p.add_argument("--template", action="append", default=None,
                   help="prompt template with {} (repeatable); 'default' = lseg.labels.DEFAULT_TEMPLATES")
    p.add_argument("--multiscale", action="store_true", help="reference multi-scale + flip evaluation")
    p.add_argument("--size", type=int, default=480, help="single-scale long side; 0 = original resolution (testval)")
    p.add_argument("--crop-size", type=int, default=480, help="network crop / sliding-window size")
    p.add_argument("--stride-rate", type=float, default=2 / 3, help="sliding-window stride as a fraction of the crop")
    p.add_argument("--scales", default=None, help="multi-scale factors, comma separated (default 0.5,...,1.75)")
    p.add_argument("--base-size", type=int, default=520, help="multi-scale base long side")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None, help="add flipped predictions")
    flip.add_argument("--no-flip", dest="flip", action="store_false", help="no flipped predictions")
    p.add_argument("--fold", default="0", help="few-shot fold(s): 0..3, a comma list, or 'all'")
    p.add_argument("--fewshot-size", type=int, default=480, help="few-shot square resize")
    p.add_argument("--num-episodes", type=int, default=None, help="few-shot episodes per fold (default: reference)")
    p.add_argument("--seed", type=int, default=0, help="COCO-20i episode seed")
    p.add_argument("--batch-size", type=int, default=1, help="few-shot episodes per forward")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers per process")
    p.add_argument("--max-samples", type=int, default=None, help="only the first N samples (debugging)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                   help="image path precision (default fp32: the reference's numbers; auto: bf16 where the "
                   "CPU/GPU computes it natively)")
    p.add_argument("--dataset-kwargs", default=None, help="extra reader arguments as a YAML mapping")
    p.add_argument("--devices", type=int, default=1, help="processes (GPUs) on this node; >1 runs DDP via Fabric")
    p.add_argument("--num-nodes", type=int, default=1, help="nodes (machines), with --devices each")
    p.add_argument("--out", "-o", default=None, help="write the JSON report here (atomically)")
    p.add_argument("--per-class", action="store_true", help="print per-class IoU")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_model_args(p)
    p.set_defaults(func=_cmd_eval)


def _parse_folds(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "all":
        return (0, 1, 2, 3)
    try:
        return tuple(int(f) for f in text.split(",") if f.strip())
    except ValueError:
        raise ConfigError(f"--fold must be 0..3, a comma list or 'all', got {text!r}") from None


def _eval_config(args: argparse.Namespace) -> Any:
    from lseg.data.registry import FEWSHOT_DATASETS, canonical_name
    from lseg.eval.evaluate import EvalConfig
    from lseg.labels import DEFAULT_TEMPLATES
    from lseg.train.config import parse_value

    protocol = args.protocol or ("fewshot" if canonical_name(args.dataset) in FEWSHOT_DATASETS else "semantic")
    templates: list[str] = []
    for t in args.template or []:
        templates += list(DEFAULT_TEMPLATES) if t == "default" else [t]
    kwargs = parse_value(args.dataset_kwargs) if args.dataset_kwargs else {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--dataset-kwargs must be a YAML mapping, got {args.dataset_kwargs!r}")
    extra: dict[str, Any] = {}
    if args.scales:
        try:
            extra["scales"] = tuple(float(s) for s in args.scales.split(","))
        except ValueError:
            raise ConfigError(f"--scales must be comma-separated numbers, got {args.scales!r}") from None
    return EvalConfig(
        protocol=protocol, dataset=args.dataset, data_root=args.data_root, split=args.split,
        dataset_kwargs=kwargs, label_style=args.label_style, templates=tuple(templates),
        multiscale=args.multiscale, size=args.size or None, crop_size=args.crop_size,
        stride_rate=args.stride_rate, base_size=args.base_size, flip=args.flip, folds=_parse_folds(args.fold),
        fewshot_size=args.fewshot_size, num_episodes=args.num_episodes, seed=args.seed,
        batch_size=args.batch_size, num_workers=args.num_workers, max_samples=args.max_samples,
        precision=args.precision, progress=not args.quiet, **extra,
    )


def _cmd_eval(args: argparse.Namespace) -> int:
    from lseg.eval.evaluate import evaluate, format_report
    from lseg.io import atomic_write

    cfg = _eval_config(args)
    rank = 0
    if args.devices * args.num_nodes > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Distributed: Fabric starts the other processes (or joins torchrun's) and the process group;
        # each process then evaluates its shard and the confusion matrices are summed.
        from lightning.fabric import Fabric

        accelerator = "cpu" if (args.device or "").startswith("cpu") else ("cuda" if args.device else "auto")
        devices = int(os.environ.get("LOCAL_WORLD_SIZE", args.devices)) if "WORLD_SIZE" in os.environ else args.devices
        fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=args.num_nodes, strategy="ddp")
        fabric.launch()
        args.device = str(fabric.device)
        rank = fabric.global_rank
    model = load_model_from_args(args)
    report = evaluate(model, cfg)
    report["model"] = args.checkpoint or f"random:{args.random_weights}"
    if rank == 0:
        if args.out:
            text = json.dumps(report, indent=2) + "\n"
            atomic_write(args.out, lambda p: p.write_text(text, encoding="utf-8"))
        print(format_report(report, per_class=args.per_class))
        failed = report.get("failed") or [f for r in report.get("folds", {}).values() for f in r["failed"]]
        for f in failed:
            print(f"warning: skipped {f['path']}: {f['error']}", file=sys.stderr)
        if failed:  # like segment/features: the metrics are over the readable images only
            return 1
    return 0
