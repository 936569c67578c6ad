"""``lseg bench``: images/s, latency and peak memory per precision and batch size (:mod:`lseg.benchmark`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lseg.errors import LSegError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the commands of this module to the ``lseg`` parser."""
    p = sub.add_parser(
        "bench", help="images/s, latency and peak memory per precision and batch size",
        description="Times the full forward (image + text for 4 labels + similarity) of a model on synthetic "
        "photos for each precision and batch size, each in a fresh process, next to the eager fp32 "
        "reference-numerics baseline, and prints one table.",
    )
    p.add_argument("--model", default="lseg_vitl16_384", help="registered model (random weights)")
    p.add_argument("--checkpoint", "-c", default=None, help="time this checkpoint instead")
    p.add_argument("--precision", default="fp32,auto", help="comma-separated: auto, fp32, bf16, fp16")
    p.add_argument("--batch-size", default="1", help="comma-separated batch sizes (e.g. 1,8)")
    p.add_argument("--size", type=int, default=480, help="square input side")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting (the median is shown)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all available)")
    p.add_argument("--compile", default="off", choices=("off", "on", "off,on"),
                   help="torch.compile the image path (off,on: both, side by side)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses
    import platform

    import torch

    from lseg.benchmark import bench, format_table
    from lseg.models.precision import PRECISIONS, cpu_has_native_bf16

    precisions = tuple(p.strip() for p in args.precision.split(",") if p.strip())
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise LSegError(f"--precision takes {', '.join(PRECISIONS)}; got {args.precision!r}")
    try:
        batches = tuple(int(b) for b in args.batch_size.split(","))
    except ValueError:
        raise LSegError(f"--batch-size takes comma-separated integers, got {args.batch_size!r}") from None
    if any(b < 1 for b in batches) or args.size < 32 or args.repeats < 1:
        raise LSegError("--batch-size, --repeats must be >= 1 and --size >= 32")
    if args.device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(args.device) if torch.cuda.is_available() else "no CUDA"
    else:
        hardware = f"{platform.processor() or platform.machine()} CPU, capability {torch.backends.cpu.get_cpu_capability()}, " \
            f"native bf16 {'yes' if cpu_has_native_bf16() else 'no'}"
    rows = bench(args.model, args.checkpoint, precisions, batches, args.size, args.device,
                 args.repeats, args.threads, tuple(c == "on" for c in args.compile.split(",")))
    title = (f"{args.checkpoint or args.model}, {args.size}x{args.size}, {args.device} ({hardware}), "
             f"median of {args.repeats}; baseline: eager fp32 reference numerics, batch 1")
    print(format_table(rows, title))
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    return 0

