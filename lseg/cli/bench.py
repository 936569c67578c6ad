"""``lseg bench``: images/s, latency and peak memory per precision and batch size (:mod:`lseg.eval.benchmark`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Literal

from lseg.errors import ConfigError, LSegError
from lseg.options import Flag, add_config_args, config_from_args

__all__ = ["BENCH_FLAGS", "BenchOptions", "register"]


@dataclass(frozen=True)
class BenchOptions:
    """What ``lseg bench`` times (:func:`lseg.eval.benchmark.bench`).

    Attributes:
        model: registered model (random weights), unless ``checkpoint``.
        checkpoint: time this checkpoint instead.
        precisions: precisions to time (``lseg.models.precision``), next to the baseline.
        batch_sizes: batch sizes to time.
        size: square input side.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        repeats: timed runs per setting (the median is shown).
        threads: CPU threads (``None``: all available).
        compile: ``torch.compile`` the image path: ``off``, ``on`` or both (``off,on``).
        json: also write the rows to this JSON file.
    """

    model: str = "lseg_vitl16_384"
    checkpoint: str | None = None
    precisions: tuple[str, ...] = ("fp32", "auto")
    batch_sizes: tuple[int, ...] = (1,)
    size: int = 480
    device: str = "cpu"
    repeats: int = 3
    threads: int | None = None
    compile: Literal["off", "on", "off,on"] = "off"
    json: str | None = None


def _names(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError:
        raise ConfigError(f"--batch-size takes comma-separated integers, got {text!r}") from None


#: The command-line side of :class:`BenchOptions` (lists are comma-separated).
BENCH_FLAGS = {
    "model": Flag("registered model (random weights)"),
    "checkpoint": Flag("time this checkpoint instead", aliases=("-c",)),
    "precisions": Flag("comma-separated: auto, fp32, bf16, fp16", name="precision", default="fp32,auto",
                       convert=_names),
    "batch_sizes": Flag("comma-separated batch sizes (e.g. 1,8)", name="batch-size", default="1",
                        convert=_batch_sizes),
    "size": Flag("square input side"),
    "device": Flag("cpu, cuda or cuda:N"),
    "repeats": Flag("timed runs per setting (the median is shown)"),
    "threads": Flag("CPU threads (default: all available)"),
    "compile": Flag("torch.compile the image path (off,on: both, side by side)", metavar="off|on|off,on"),
    "json": Flag("also write the rows to this JSON file"),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the commands of this module to the ``lseg`` parser."""
    p = sub.add_parser(
        "bench", help="images/s, latency and peak memory per precision and batch size",
        description="Times the full forward (image + text for 4 labels + similarity) of a model on synthetic "
        "photos for each precision and batch size, each in a fresh process, next to the eager fp32 "
        "reference-numerics baseline, and prints one table.",
    )
    add_config_args(p, BenchOptions, BENCH_FLAGS)
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses
    import platform

    import torch

    from lseg.eval.benchmark import bench, format_table
    from lseg.io import atomic_write
    from lseg.models.precision import PRECISIONS, cpu_has_native_bf16

    opts: BenchOptions = config_from_args(BenchOptions, args, BENCH_FLAGS)
    precisions, batches = opts.precisions, opts.batch_sizes
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise LSegError(f"--precision takes {', '.join(PRECISIONS)}; got {args.precision!r}")
    if any(b < 1 for b in batches) or opts.size < 32 or opts.repeats < 1:
        raise LSegError("--batch-size, --repeats must be >= 1 and --size >= 32")
    if opts.device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(opts.device) if torch.cuda.is_available() else "no CUDA"
    else:
        hardware = f"{platform.processor() or platform.machine()} CPU, capability {torch.backends.cpu.get_cpu_capability()}, " \
            f"native bf16 {'yes' if cpu_has_native_bf16() else 'no'}"
    rows = bench(opts.model, opts.checkpoint, precisions, batches, opts.size, opts.device,
                 opts.repeats, opts.threads, tuple(c == "on" for c in opts.compile.split(",")))
    title = (f"{opts.checkpoint or opts.model}, {opts.size}x{opts.size}, {opts.device} ({hardware}), "
             f"latency: median of the row's timed runs; vs baseline: median of {opts.repeats} back-to-back "
             "pairs with the eager fp32 reference-numerics baseline, batch 1, in the row's own process; "
             f"vs batch 1: median of {opts.repeats} back-to-back pairs of one call of the row's batch with as "
             "many calls at batch 1")
    print(format_table(rows, title))
    if opts.json:
        text = json.dumps([dataclasses.asdict(r) for r in rows], indent=2)
        atomic_write(opts.json, lambda p: p.write_text(text))
    return 0

