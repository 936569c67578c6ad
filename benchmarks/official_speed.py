"""The official lang-seg code's CPU speed next to lseg's rows, in one run (issue: speed targets are
ratios to the official code measured side by side, never figures from another run or machine).

The official ViT-L/16 ``LSegNet`` (timm 0.4.12, OpenAI's CLIP; set up as ``scripts/official_parity.py``
says) is timed in a child process before and after ``lseg bench``'s rows, 480x480, 4 labels, batch 1;
its median over both runs is the denominator of every ratio printed::

    export LSEG_OFFICIAL_SRC=/work/oracle/lang-seg LSEG_TIMM0412=/work/oracle/timm0412
    python benchmarks/official_speed.py --precision fp32,auto --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from official_parity import oracle_paths, run_official

from lseg.eval.benchmark import bench, format_table


def official_times(src: Path, timm0412: Path, repeats: int, threads: int) -> list[float]:
    out = run_official("demo", src=src, timm0412=timm0412, size=480, threads=threads, repeats=repeats)
    try:
        return torch.load(out / "official.pt")["times"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precision", default="fp32,auto")
    ap.add_argument("--compile", default="off", choices=["off", "on", "off,on"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    paths = oracle_paths()
    if isinstance(paths, str):
        print(paths, file=sys.stderr)
        return 2
    src, timm0412 = paths
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    flags = next((ln for ln in cpu.splitlines() if ln.startswith("Flags")), "")
    isa = [f for f in ("amx_bf16", "avx512_bf16", "avx512_vnni", "avx512f", "avx2") if f in flags.split()]
    before = official_times(src, timm0412, args.repeats, args.threads)
    rows = bench("lseg_vitl16_384", None, tuple(args.precision.split(",")), (1,), 480, "cpu", args.repeats,
                 args.threads, tuple(c == "on" for c in args.compile.split(",")))
    after = official_times(src, timm0412, args.repeats, args.threads)
    official = statistics.median(before + after)
    print(f"{model} ({', '.join(isa)}), {platform.machine()}, {args.threads} threads")
    print(f"official lang-seg (timm 0.4.12): median {official:.2f} s (before the rows: "
          f"{min(before):.2f}-{max(before):.2f} s, after: {min(after):.2f}-{max(after):.2f} s)")
    print(format_table(rows, "lseg rows (vs baseline: paired with lseg's reference numerics in the row's process)"))
    for r in rows:
        print(f"{r.precision:>10} {'compiled' if r.compiled else '':>8}: {official / r.latency_s:5.2f}x the official code "
              f"({r.latency_s:.2f} s), peak {r.peak_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
