"""``lseg bench``: images/s, latency and peak memory per precision and batch size."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from lseg.cli.common import checked_device, registered
from lseg.io.checks import report_file
from lseg.options import (
    CheckedOptions,
    OptionError,
    Precision,
    add_options,
    check_compile,
    option,
    options_from_args,
)

__all__ = ["BenchOptions", "register"]


def _comma_list(value: Any) -> Any:
    """``fp32, bf16`` -> ``("fp32", "bf16")`` (the type check reads the items)."""
    return tuple(p.strip() for p in value.split(",") if p.strip()) if isinstance(value, str) else value


@dataclass(frozen=True)
class BenchOptions(CheckedOptions):
    """What ``lseg bench`` times (:func:`lseg.eval.benchmark.bench`).

    Attributes:
        model: registered model, run with random weights (unless ``checkpoint``).
        checkpoint: time this checkpoint instead.
        precisions: precisions to time next to the baseline, comma-separated: auto, fp32, bf16, fp16, int8.
        batch_sizes: batch sizes to time, comma-separated (e.g. 1,8).
        size: square input side.
        device: cpu, cuda or cuda:N.
        repeats: timed runs per setting (the median is shown).
        threads: CPU threads (``None``: all available).
        compile: torch.compile the image path: off, on, or both side by side (off,on).
        json: also write the rows to this JSON file.
        profile: instead of timing rows, show where one forward's time goes (ms and share per component)
            for each precision and the fp32 reference numerics.
    """

    model: str = "lseg_vitl16_384"
    checkpoint: str | None = option(None, short="-c")
    precisions: tuple[Precision, ...] = option(("fp32", "auto"), flag="precision", parse=_comma_list)
    batch_sizes: tuple[int, ...] = option((1,), flag="batch-size", min=1)
    size: int = option(480, min=32)
    device: str = option("cpu", check=checked_device)
    repeats: int = option(3, min=1)
    threads: int | None = option(None, min=1)
    compile: Literal["off", "on", "off,on"] = option("off", metavar="off|on|off,on")
    json: str | None = option(None, check=report_file("json"))
    profile: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("precisions", "batch_sizes"):
            if not getattr(self, name):
                raise OptionError(f"`{name}` takes at least one value")
        check_compile("on" in self.compile, self.precisions)
        if self.checkpoint is None:  # here, not in the first of the fresh processes
            registered(self.model, "model")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="images/s, latency and peak memory per precision and batch size",
        description="Times the full forward (image + text for 4 labels + similarity) of a model on synthetic "
        "photos for each precision and batch size, each in a fresh process, next to the eager fp32 "
        "reference-numerics baseline, and prints one table.",
    )
    add_options(p, BenchOptions)
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    opts: BenchOptions = options_from_args(BenchOptions, args)  # every option checked before the imports
    if opts.profile:
        return _profile(opts)
    import platform

    import torch

    from lseg.eval.benchmark import bench, format_table
    from lseg.io import atomic_write
    from lseg.models.precision import cpu_has_native_bf16

    if opts.device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(opts.device) if torch.cuda.is_available() else "no CUDA"
    else:
        bf16 = "yes" if cpu_has_native_bf16() else "no"
        hardware = (f"{platform.processor() or platform.machine()} CPU, capability "
                    f"{torch.backends.cpu.get_cpu_capability()}, native bf16 {bf16}")
    rows = bench(opts.model, opts.checkpoint, opts.precisions, opts.batch_sizes, opts.size, opts.device,
                 opts.repeats, opts.threads, tuple(c == "on" for c in opts.compile.split(",")))
    title = (f"{opts.checkpoint or opts.model}, {opts.size}x{opts.size}, {opts.device} ({hardware}), "
             f"latency: median of the row's timed runs; vs baseline: median of {opts.repeats} back-to-back "
             "pairs with the eager fp32 reference-numerics baseline, batch 1, in the row's own process; "
             f"vs batch 1: median of {opts.repeats} back-to-back pairs of one call of the row's batch with "
             "as many calls at batch 1")
    print(format_table(rows, title))
    if opts.json:
        text = json.dumps([asdict(r) for r in rows], indent=2)
        atomic_write(opts.json, lambda p: p.write_text(text))
    return 0


def _profile(opts: BenchOptions) -> int:
    """``--profile``: each precision's component times, each in a fresh process, one table."""
    from lseg.eval.benchmark import available_threads, run_child
    from lseg.eval.profile import format_profile

    threads = opts.threads or available_threads()
    profiles = {}
    for precision in ("reference", *dict.fromkeys(opts.precisions)):
        out = run_child("lseg.eval.profile", {
            "model_name": opts.model, "checkpoint": opts.checkpoint, "precision": precision,
            "size": opts.size, "device": opts.device, "repeats": opts.repeats, "threads": threads}, f"profile {precision}")
        profiles[f"{precision}={out.pop('precision')}" if precision == "auto" else precision] = out
    print(f"{opts.checkpoint or opts.model}, {opts.size}x{opts.size}, {opts.device}, {threads} threads: "
          f"seconds of one forward by component (own time, mean of {opts.repeats} after a warm-up)")
    print(format_profile(profiles))
    return 0
