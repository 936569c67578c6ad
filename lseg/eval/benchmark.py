"""``lseg bench``: images/s, latency and peak memory per precision and batch size, each configuration in
a fresh process, beside the eager fp32 reference-numerics baseline (``docs/performance.md``). A row times
the full forward (4 labels, images as :class:`lseg.LSegPredictor` batches them) after one warm-up;
speed-ups are medians of ratios of back-to-back pairs, so host speed drifting moves both sides alike."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lseg.errors import LSegError

if TYPE_CHECKING:
    from lseg.models.lseg import LSeg

LABELS = ["sky", "grass", "sun", "other"]


@dataclass
class BenchRow:
    precision: str  # as asked; ``ran`` is what it resolved to
    ran: str
    batch: int
    compiled: bool
    latency_s: float  # median seconds per forward of the whole batch
    images_per_s: float
    peak_mib: float
    speedup: float = 1.0  # median over back-to-back pairs of baseline s/image / this row's s/image
    agreement: float | None = None  # argmax agreement with the fp32 row (first image)
    vs_batch1: float | None = None  # batch b > 1: median over pairs of (b calls at batch 1) s / one batch call s
    labels150_s: float | None = None  # one encode_text of the 150 ADE20K class names


def _photo(size: int, seed: int) -> np.ndarray:
    """A photograph-like scene (sky gradient, sun, textured hills) as HxWx3 uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.zeros((size, size, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 110 + 60 * yy / size, 160 + 50 * yy / size, 235 - 20 * yy / size
    img[(yy - 0.2 * size) ** 2 + (xx - 0.7 * size) ** 2 < (0.1 * size) ** 2] = (250, 230, 120)
    grass = yy > 0.55 * size + 0.08 * size * np.sin(xx / size * 6.0 + seed)
    noise = rng.normal(0, 18, size=(size, size))
    img[grass] = np.stack([40 + noise, 120 + 1.5 * noise, 35 + noise], -1)[grass]
    return np.clip(img, 0, 255).astype(np.uint8)


def _reset_peak() -> None:
    with contextlib.suppress(OSError):  # Linux: "5" resets the VmHWM high-water mark of this process
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(model_name: str, checkpoint: str | None, precision: str, batch: int, size: int, device: str,
            repeats: int, threads: int, compile: bool, argmax_out: str | None) -> BenchRow:
    """One configuration, in this process."""
    import torch

    from lseg.data.label_sets import ade20k_labels
    from lseg.inference.allocator import tune_allocator
    from lseg.inference.predictor import images_per_forward

    torch.set_num_threads(threads)
    tune_allocator()
    model = _build(model_name, checkpoint, device, precision)
    if compile and precision != "reference":
        model.compile_image_path()
    images = torch.from_numpy(np.stack([_photo(size, i) for i in range(batch)])).permute(0, 3, 1, 2).to(device)
    cuda = torch.device(device).type == "cuda"

    def forward(model: LSeg, batch: int) -> torch.Tensor:
        step = images_per_forward(device, batch)  # as the predictor runs a batch (one by one on a CPU)
        text = model.encode_text(LABELS)  # once per batch, as the predictor does
        logits = torch.cat([model(model.normalize(images[i : i + step]), text) for i in range(0, batch, step)])
        if cuda:
            torch.cuda.synchronize()
        return logits

    def timed(model: LSeg, batch: int) -> float:
        t = time.perf_counter()
        forward(model, batch)
        return time.perf_counter() - t

    def paired(other: Callable[[], float]) -> float:
        """Median over ``repeats`` back-to-back pairs of ``other()``'s seconds / this row's seconds."""
        ratios = []
        for _ in range(repeats):
            other_s = other()
            mine_s = timed(model, batch)
            times.append(mine_s)
            ratios.append(other_s / mine_s)
        return statistics.median(ratios)

    with torch.inference_mode():
        logits = forward(model, batch)  # warm-up (and compilation)
        _reset_peak()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = [timed(model, batch) for _ in range(repeats)]
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_mib()
        speedup = 1.0
        if precision != "reference":  # per image: the baseline's batch-1 seconds x batch / this row's
            baseline = _build(model_name, checkpoint, device, "reference")
            forward(baseline, 1)  # its warm-up
            speedup = paired(lambda: timed(baseline, 1) * batch)
        vs_batch1 = None
        if batch > 1:  # `batch` calls at batch 1 against one call of the batch: the same work, same load
            vs_batch1 = paired(lambda: sum(timed(model, 1) for _ in range(batch)))
        t = time.perf_counter()
        model.encode_text(list(dict.fromkeys(ade20k_labels())))
        labels150_s = time.perf_counter() - t
    if argmax_out:
        np.save(argmax_out, logits[0].argmax(0).cpu().numpy().astype(np.uint16))
    latency = statistics.median(times)
    ran = "fp32 (reference numerics)" if precision == "reference" else model.precision
    return BenchRow(precision, ran, batch, compile, latency, batch / latency, peak, speedup,
                    vs_batch1=vs_batch1, labels150_s=labels150_s)


def _build(model_name: str, checkpoint: str | None, device: str, precision: str) -> LSeg:
    """The model in eval mode with ``precision``'s numerics (``reference``: the fp32 reference's)."""
    import torch

    import lseg

    torch.manual_seed(0)  # the same random weights in every process
    model = (lseg.load_model(checkpoint) if checkpoint else lseg.create_model(model_name)).to(device).eval()
    if precision == "reference":
        return model.set_numerics("reference")
    return model.set_numerics("fast", precision=precision)


def available_threads() -> int:
    """The CPUs this process may run on (the default thread count of a bench or profile)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def bench(model_name: str = "lseg_vitl16_384", checkpoint: str | None = None, precisions: tuple[str, ...] = ("fp32", "auto"),
          batches: tuple[int, ...] = (1,), size: int = 480, device: str = "cpu", repeats: int = 3,
          threads: int | None = None, compiles: tuple[bool, ...] = (False,)) -> list[BenchRow]:
    """Every ``(precision, batch, compiled)`` and the reference baseline (batch 1), each in a new process."""
    threads = threads or available_threads()
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory() as tmp:
        configs = [("reference", 1, False)] + [(p, b, c) for c in compiles for p in precisions for b in batches]
        if ("fp32", batches[0], False) not in configs:  # e.g. fp32 only compiled (--compile on)
            configs.append(("fp32", batches[0], False))  # the agreement reference: eager fp32
        for precision, batch, compile in configs:
            out = str(Path(tmp) / f"{precision}-{batch}-{compile}.npy")
            rows.append(BenchRow(**run_child("lseg.eval.benchmark", {
                "model_name": model_name, "checkpoint": checkpoint, "precision": precision, "batch": batch,
                "size": size, "device": device, "repeats": repeats, "threads": threads, "compile": compile,
                "argmax_out": out,
            }, f"bench {precision} batch {batch}")))
        ref_map = np.load(Path(tmp) / f"fp32-{batches[0]}-False.npy")
        for row in rows:
            mine = np.load(Path(tmp) / f"{row.precision}-{row.batch}-{row.compiled}.npy")
            row.agreement = float((mine == ref_map).mean())
    return rows


def child_main(run: Callable[..., dict[str, Any]]) -> None:
    """A fresh process's entry point: ``run(**<JSON argument>)`` printed as JSON; a user mistake
    (:class:`LSegError`) is one ``error:`` line on stderr and exit 2, for :func:`run_child`."""
    try:
        out = run(**json.loads(sys.argv[1]))
    except LSegError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(out))


def run_child(module: str, kwargs: dict[str, Any], what: str) -> dict[str, Any]:
    """``python -m module`` (:func:`child_main`) run on ``kwargs`` in a fresh process: its JSON result. Its
    user mistake is an :class:`LSegError` (the command says it in one line), anything else a RuntimeError
    naming ``what``."""
    r = subprocess.run([sys.executable, "-m", module, json.dumps(kwargs)], check=False, capture_output=True, text=True)
    last = r.stderr.strip().splitlines()[-1:]
    if r.returncode == 2 and last and last[0].startswith("error: "):
        raise LSegError(last[0].removeprefix("error: "))
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed: {last}")
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def format_table(rows: list[BenchRow], title: str) -> str:
    header = (f"{'precision':>10} {'ran':>26} {'batch':>5} {'compile':>7} {'latency s':>10} {'img/s':>8} "
              f"{'vs baseline':>11} {'vs batch 1':>10} {'peak MiB':>9} {'argmax agree':>12} {'150 labels s':>12}")
    lines = [title, header]
    for r in rows:
        agree = f"{r.agreement:.2%}" if r.agreement is not None else "-"
        text = f"{r.labels150_s:.3f}" if r.labels150_s is not None else "-"
        per_image = f"{r.vs_batch1:.2f}x" if r.vs_batch1 is not None else "-"
        lines.append(f"{r.precision:>10} {r.ran:>26} {r.batch:>5} {'on' if r.compiled else 'off':>7} "
                     f"{r.latency_s:>10.3f} {r.images_per_s:>8.2f} "
                     f"{r.speedup:>10.2f}x {per_image:>10} {r.peak_mib:>9.0f} {agree:>12} {text:>12}")
    return "\n".join(lines)


if __name__ == "__main__":  # one configuration, in a fresh process (see bench())
    child_main(lambda **kwargs: asdict(run_one(**kwargs)))
