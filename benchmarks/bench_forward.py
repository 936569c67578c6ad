"""CPU forward benchmark: full-size ``lseg_vitl16_384`` (random weights) at 480x480.

Runs each variant in a fresh process (so peak memory is that variant's own) one after another in
one invocation, and prints a side-by-side table:

* ``lseg``: our defaults: fp32 text tower on trimmed tokens, BatchNorm folded, channels-last
  decoder, in-place normalisation, fp16-stored CLIP matrices, glibc mmap threshold pinned
  (:func:`lseg.allocator.tune_allocator`).
* ``eager-reference``: the same network with every optimisation off and ``reference_numerics``
  (fp16 CLIP text tower on the full 77-token context, re-encoded on every call, as the reference).

Each forward is the whole ``model(x, labels)`` call (text encoding included). Peak memory is the
process's VmHWM (peak RSS), which includes the Python/torch libraries and the weights.

Usage: ``python benchmarks/bench_forward.py [--repeats 5] [--size 480] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _status(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # MiB
    return float("nan")


def run_variant(variant: str, repeats: int, size: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    import lseg
    from lseg.allocator import tune_allocator
    from lseg.data.label_sets import ade20k_labels

    if variant == "lseg":
        tune_allocator()  # as the CLI does

    t0 = time.perf_counter()
    model = lseg.create_model("lseg_vitl16_384")
    build_s = time.perf_counter() - t0
    if variant == "eager-reference":
        model.set_numerics("reference")
    else:
        model.set_numerics("fast")  # as LSegPredictor does
    rss_model = _status("VmRSS")
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    labels = ["other", "dog", "grass", "sky"]
    times = []
    with torch.inference_mode():
        model(x, labels)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(x, labels)
            times.append(time.perf_counter() - t)
        peak = _status("VmHWM")
        ade = list(dict.fromkeys(ade20k_labels()))  # 150 full ADE20K class names
        text_times = []
        for _ in range(3):
            t = time.perf_counter()
            model.encode_text(ade)
            text_times.append(time.perf_counter() - t)
    return {
        "variant": variant,
        "forward_s_median": statistics.median(times),
        "forward_s_min": min(times),
        "peak_rss_mib": peak,
        "rss_after_build_mib": rss_model,
        "ade150_text_s": statistics.median(text_times),
        "build_s": build_s,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=480)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.repeats, args.size, args.threads)))
        return
    results = []
    for variant in ("lseg", "eager-reference"):
        out = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--repeats", str(args.repeats),
             "--size", str(args.size), "--threads", str(args.threads)],
            check=True, capture_output=True, text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ours, ref = results
    print(f"lseg_vitl16_384, random weights, {args.size}x{args.size}, batch 1, CPU, {args.threads} threads, "
          f"median of {args.repeats} (after 1 warm-up)")
    print(f"{'':28s}{'lseg':>12s}{'eager-ref':>12s}{'ratio':>8s}")
    rows = [
        ("forward (s)", "forward_s_median", "{:.2f}"),
        ("forward min (s)", "forward_s_min", "{:.2f}"),
        ("peak RSS (MiB)", "peak_rss_mib", "{:.0f}"),
        ("RSS after build (MiB)", "rss_after_build_mib", "{:.0f}"),
        ("150 ADE20K labels (s)", "ade150_text_s", "{:.3f}"),
    ]
    for name, key, fmt in rows:
        a, b = ours[key], ref[key]
        print(f"{name:28s}{fmt.format(a):>12s}{fmt.format(b):>12s}{b / a:>7.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
