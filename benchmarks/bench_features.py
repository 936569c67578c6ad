"""Feature-store export throughput (one process vs Ray Data workers) and the memory of the scene
reduction's streaming fit (1,000 frames vs 100).

    python benchmarks/bench_features.py                      # tiny random model, CPU
    python benchmarks/bench_features.py --model lseg_vitb32_384 --size 240 --frames 16

Throughput: ``--workers`` videos, ``--frames`` frames in all (``--height`` x ``--width``), exported to
a store, first by one process (:func:`lseg.features.store.export_store`), then, in the same run, by
a local Ray cluster of ``--workers`` CPU workers (:func:`lseg.features.ray_export.export_store_ray`;
cluster start-up excluded, actor start-up included). Each worker has one CPU (one torch thread: Ray sets
``OMP_NUM_THREADS=1``), the single process all of them (``torch.set_num_threads(cpu_count)``).

Memory: :func:`lseg.features.derived.reduce_store` (fit + writing the reduced maps) over a synthetic
store of 100 and of 1,000 frames (512-d, ``--map`` pixels each), each in a fresh process; peak RSS
is ``VmHWM``, and a process that only opens the store and reads one frame is the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _video(path: Path, n: int, h: int, w: int) -> None:
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for _ in range(n):
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def throughput(args: argparse.Namespace, tmp: Path) -> list[tuple[str, float, float]]:
    import ray
    import torch

    import lseg
    from lseg.features import FeatureExtractor, FeatureStore, export_store
    from lseg.features.ray_export import export_store_ray
    from lseg.features.store import StoreSettings

    # Explicit thread counts: on this kind of shared VM, torch's default OpenMP set-up ran the tiny
    # model ~50x slower than after an explicit set_num_threads with the same number (measured).
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    ex = FeatureExtractor(lseg.LSegPredictor(lseg.create_model(args.model), size=args.size))
    settings = StoreSettings(frames_per_shard=args.frames_per_shard, batch_size=args.batch_size)
    # one unit per worker: `workers` videos of equal length
    per = args.frames // args.workers
    clips = [tmp / "clips" / f"part{i}.mp4" for i in range(args.workers)]
    clips[0].parent.mkdir()
    for c in clips:
        _video(c, per, args.height, args.width)
    n = per * args.workers
    t = time.perf_counter()
    report = export_store(ex, clips, tmp / "one", settings=settings, progress=False)
    dt1 = time.perf_counter() - t
    print("1 process:", report.summary())
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        time.sleep(5)  # let the cluster's start-up work settle before timing
        t = time.perf_counter()
        report = export_store_ray(ex, clips, tmp / "ray", num_workers=args.workers, settings=settings)
        dt2 = time.perf_counter() - t
        print("Ray:", report.summary())
    finally:
        ray.shutdown()
    rows = [("1 process", dt1, n / dt1),
            (f"Ray Data, {args.workers} CPU workers (incl. actor start-up)", dt2, n / dt2)]
    a, b = FeatureStore(tmp / "one"), FeatureStore(tmp / "ray")
    same = a.index == b.index and all(np.array_equal(a.read(i), b.read(i)) for i in range(len(a)))
    print(f"Ray store equal to the single-process store: {same}")
    return rows


def _synthetic_store(path: Path, n_frames: int, hw: tuple[int, int], d: int = 512, per_shard: int = 16) -> None:
    """A complete store of ``n_frames`` random low-rank unit-vector maps (no model needed)."""
    from safetensors.numpy import save_file

    from lseg.features.store import FORMAT, STORE_INDEX, STORE_MANIFEST

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(d, 24)).astype(np.float32)
    (path / "shards").mkdir(parents=True)
    frames = []
    for s in range(0, n_frames, per_shard):
        rel = f"shards/u{s // per_shard:06d}-c0000.safetensors"
        tensors = {}
        for i in range(s, min(n_frames, s + per_shard)):
            x = basis @ rng.normal(size=(24, hw[0] * hw[1])).astype(np.float32) + 0.1 * rng.normal(size=(d, 1))
            x /= np.linalg.norm(x, axis=0, keepdims=True)
            tensors[f"f{i:06d}"] = x.reshape(d, *hw).astype(np.float16)
            frames.append({"id": i, "key": f"f{i:06d}", "source": "synthetic", "frame": i, "time": None,
                           "image_size": list(hw), "shape": [d, *hw], "shard": rel})
        save_file(tensors, str(path / rel), metadata={"frames": "[]"})
    (path / STORE_MANIFEST).write_text(json.dumps({"format": FORMAT, "version": 1, "units": []}))
    (path / STORE_INDEX).write_text(json.dumps({"format": FORMAT, "version": 1, "num_frames": n_frames,
                                                "frames": frames, "failed": [], "reduction": None}))


def _child(mode: str, store: str, k: int) -> None:
    from lseg.features.derived import reduce_store
    from lseg.features.store import FeatureStore
    from lseg.inference.predictor import tune_allocator

    tune_allocator()  # as `lseg store reduce` does

    if mode == "baseline":
        FeatureStore(store).read(0)
    else:
        reduce_store(store, k)
    print(json.dumps({"peak_rss_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` (Linux) starts afresh at exec; ``ru_maxrss`` can carry the
    forking parent's peak into a subprocess."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(args: argparse.Namespace, tmp: Path) -> list[tuple[str, float, float]]:
    rows = []
    hw = tuple(int(v) for v in args.map.split("x"))
    for n in (100, 1000):
        store = tmp / f"syn{n}"
        _synthetic_store(store, n, hw)  # type: ignore[arg-type]
        for mode in ("baseline", "fit"):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--_child", mode, str(store), str(args.k)],
                                 check=True, capture_output=True, text=True).stdout
            dt = time.perf_counter() - t
            rss = json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]
            what = "open + read 1 frame" if mode == "baseline" else f"reduce to {args.k}-d (fit + write)"
            rows.append((f"{n} frames: {what}", dt, rss))
        shutil.rmtree(store)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lseg_tiny_test")
    p.add_argument("--size", type=int, default=128, help="working long side")
    p.add_argument("--frames", type=int, default=1024)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--frames-per-shard", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--map", default="48x64", help="synthetic store: pixels per frame (HxW)")
    p.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--only", choices=("speed", "memory"), default=None, help="run one half of the benchmark")
    args = p.parse_args()
    if args._child:
        _child(args._child[0], args._child[1], int(args._child[2]))
        return
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; model {args.model}, working size {args.size}, "
          f"{args.frames} frames {args.height}x{args.width}, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        speed = throughput(args, tmp) if args.only != "memory" else []
        mem = memory(args, tmp) if args.only != "speed" else []
    print(f"\n{'run':58s} {'seconds':>8s} {'frames/s':>9s}")
    for name, dt, fps in speed:
        print(f"{name:58s} {dt:8.2f} {fps:9.2f}")
    print(f"\n{'reduction over a store (fresh process each)':58s} {'seconds':>8s} {'peak RSS MB':>12s}")
    for name, dt, rss in mem:
        print(f"{name:58s} {dt:8.2f} {rss:12.0f}")


if __name__ == "__main__":
    main()
