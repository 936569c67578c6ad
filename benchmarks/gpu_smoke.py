"""GPU smoke test and speed benchmark: every inference and training path on a real GPU, one table.

Runs the tiny test model and the full-size ``lseg_vitl16_384`` (random weights) through: load + move,
forward (fp32, fp16 / bf16 autocast, model cast to fp16 / bf16), the predictor (single window,
sliding windows, label chunks, multiscale, a uint8 image already on the GPU), feature export, a
training step (fp16 with a GradScaler, bf16), a 3-step ``lseg.train`` run with ``16-mixed`` and its
resume, and the eval loop under autocast; then times the ViT-L forward at 480x480 and 150 ADE20K
labels. Each row checks devices and dtypes and, where it applies, the result against fp32.

Usage: ``python benchmarks/gpu_smoke.py [--device cuda] [--skip-full] [--repeats 10]``. Installs
nothing, writes only to a temporary folder, takes a few minutes on one GPU. Exit status 1 if any row
failed. ``--device cpu --skip-full`` runs the same rows on the CPU (to check the script itself).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import lseg
import lseg.features
from lseg.inference.predictor import LSegPredictor, MultiScaleConfig

LABELS = ["sky", "grass", "a photo of the sun", "other"]
ROWS: list[tuple[str, str, str, str, str, str, str]] = []


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def row(path: str, model: str, dtype: str, device: torch.device, fn: Callable[[], str | None]) -> None:
    """Run one check; record ok/FAIL, the wall time and a note."""
    t = time.perf_counter()
    try:
        note = fn() or ""
        _sync(device)
        status = "ok"
    except Exception as e:  # noqa: BLE001 (a smoke test reports every failure and goes on)
        note = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"
        status = "FAIL"
        traceback.print_exc(file=sys.stderr)
    ROWS.append((path, model, str(device), dtype, status, f"{(time.perf_counter() - t) * 1000:.0f}", note))
    print(f"  {status:4s} {path} [{model}, {dtype}] {note}", file=sys.stderr, flush=True)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def photo(h: int = 360, w: int = 480) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([yy * 255 // h, xx * 255 // w, (yy + xx) * 255 // (h + w)], -1)
    return img.astype(np.uint8)


def inference_rows(name: str, model: lseg.LSeg, device: torch.device, size: int) -> None:
    img = photo()
    gpu_img = torch.from_numpy(img).permute(2, 0, 1).contiguous().to(device)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    model.set_numerics("fast")
    with torch.inference_mode():
        ref = model(model.normalize(x), LABELS).float()
        ref_emb = LSegPredictor(model, size=size).embed_image(img).pixels
    fp32 = LSegPredictor(model, size=size)
    ref_seg = fp32.segment(img, LABELS)

    for label, dt in (("fp16-autocast", torch.float16), ("bf16-autocast", torch.bfloat16)):
        def forward(dt: torch.dtype = dt) -> str:
            with torch.inference_mode(), autocast(device, dt):
                out = model(model.normalize(x), LABELS)
            check(out.device == device, f"logits on {out.device}")
            err = (out.float() - ref).abs().max().item()
            agree = (out.float().argmax(1) == ref.argmax(1)).float().mean().item()
            return f"max|d| {err:.3g}, argmax agree {agree:.4f}"

        row("forward", name, label, device, forward)

    for label, dt in (("fp16-cast", torch.float16), ("bf16-cast", torch.bfloat16)):
        def cast_forward(dt: torch.dtype = dt) -> str:
            import copy

            m = copy.deepcopy(model).to(dt)
            with torch.inference_mode():
                out = m(m.normalize(x), LABELS)
            check(out.dtype == torch.float32, f"logits {out.dtype}")  # the similarity runs in fp32
            err = (out.float() - ref).abs().max().item()
            del m
            return f"max|d| {err:.3g}"

        row("forward", name, label, device, cast_forward)

    for label, dt in (("fp32", None), ("fp16-autocast", torch.float16), ("bf16-autocast", torch.bfloat16)):
        def predictor(dt: torch.dtype | None = dt) -> str:
            notes = []
            with autocast(device, dt):
                p = LSegPredictor(model, size=size)
                emb = p.embed_image(img)
                check(emb.pixels.dtype == torch.float32 and emb.pixels.device == device, "ImageEmbedding.pixels")
                notes.append(f"emb max|d| {(emb.pixels - ref_emb).abs().max().item():.2g}")
                r = p.segment(img, LABELS, return_embeddings=True)
                check(r.embeddings is not None and r.embeddings.dtype == np.float32, "embeddings dtype")
                notes.append(f"labels agree {(r.label_map == ref_seg.label_map).mean():.4f}")
                r = p.segment(gpu_img, LABELS)  # image already on the device
                check(r.label_map.shape == img.shape[:2], "gpu image")
                LSegPredictor(model, size=int(size * 1.5), crop_size=size, stride=size * 2 // 3).segment(img, LABELS)
                r = LSegPredictor(model, size=size, label_chunk_size=2).segment(img, LABELS)
                check(isinstance(r.logits, np.ndarray) and r.logits.shape[0] == len(LABELS), "chunked logits")
                p.segment(img, LABELS[:2], multiscale=MultiScaleConfig(scales=(0.75, 1.0)))
            return "; ".join(notes)

        row("predictor (single, windows, chunks, multiscale, GPU image)", name, label, device, predictor)

    def features() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            from PIL import Image

            Image.fromarray(img).save(Path(tmp) / "a.png")
            rep = lseg.features.export_features(LSegPredictor(model, size=size), [tmp], Path(tmp) / "out",
                                                progress=False)
            check(not rep.failed and len(rep.written) == 1, rep.summary())
            return str(np.load(Path(tmp) / "out" / "a.npy").shape)

    row("feature export", name, "fp32", device, features)

    if device.type == "cuda":  # with more labels than a chunk, a batch must not keep GPU memory
        def memory() -> str:
            p = LSegPredictor(model, size=size, label_chunk_size=2)
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated(device)
            results = p.segment_batch([img] * 4, LABELS)
            torch.cuda.synchronize()
            grown = (torch.cuda.memory_allocated(device) - before) / 1e6
            check(grown < 8, f"GPU memory grew {grown:.0f} MB over 4 results")
            del results
            return f"+{grown:.1f} MB after 4 results"

        row("segment_batch memory", name, "fp32", device, memory)


def training_rows(name: str, make: Callable[[], lseg.LSeg], device: torch.device, size: int) -> None:
    for label, dt in (("fp32", None), ("fp16-mixed", torch.float16), ("bf16-mixed", torch.bfloat16)):
        def step(dt: torch.dtype | None = dt) -> str:
            torch.manual_seed(0)
            model = make().to(device).train()
            opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
            scaler = torch.amp.GradScaler(device.type) if dt == torch.float16 else None
            with torch.no_grad():
                text = model.encode_text(LABELS).float()
            images = torch.randint(0, 255, (2, 3, size, size), dtype=torch.uint8, device=device)
            mask = torch.randint(0, len(LABELS), (2, size, size), device=device)
            with autocast(device, dt):
                logits = model(model.normalize(images), text)
                loss = F.cross_entropy(logits.float(), mask)
            (scaler.scale(loss) if scaler else loss).backward()
            applied = True
            if scaler is not None:  # as Fabric's fp16 plugin; a lowered scale means a skipped step
                before = scaler.get_scale()
                scaler.step(opt)
                scaler.update()
                applied = scaler.get_scale() >= before
            else:
                opt.step()
            check(torch.isfinite(loss).item(), "loss not finite")
            return f"loss {loss.item():.4f}, step applied: {applied}"

        row("training step", name, label, device, step)


def train_rows(device: torch.device) -> None:
    from lseg.train import TrainConfig, train
    from lseg.train.state import load_checkpoint
    from lseg.train.toy import make_toy_dataset

    def run() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            root = make_toy_dataset(Path(tmp) / "data", num_images=8, size=64, seed=0)
            precision = "16-mixed" if device.type == "cuda" else "bf16-mixed"
            cfg = TrainConfig(
                model="lseg_tiny_test", dataset="folder", data_root=str(root), split=None, base_size=64,
                crop_size=64, batch_size=2, max_steps=4, base_lr=0.01, lr_scaling="none",
                accelerator=device.type, devices=1, precision=precision, num_workers=0, log_every_n_steps=1,
                checkpoint_every_n_steps=2, progress_bar=False, logger="none",
            )
            full = train(cfg.replace(out_dir=f"{tmp}/full"), resume="never")
            train(cfg.replace(out_dir=f"{tmp}/split", stop_after_steps=2), resume="never")
            train(cfg.replace(out_dir=f"{tmp}/split"))
            a, b = load_checkpoint(full.checkpoint), load_checkpoint(Path(tmp) / "split/checkpoints/last.ckpt")
            diff = max((a["model"][k].float() - b["model"][k].float()).abs().max().item() for k in a["model"])
            return (f"{precision}: steps {a['step']} (position {a['position']}), scaler {a['precision'] or '-'}; "
                    f"resumed vs uninterrupted max|d| {diff:.2g}")

    row("lseg.train + resume", "lseg_tiny_test", "16-mixed" if device.type == "cuda" else "bf16-mixed", device, run)


def eval_rows(device: torch.device) -> None:
    from lseg.eval.evaluate import EvalConfig, evaluate
    from lseg.train.toy import make_toy_dataset

    def run() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            root = make_toy_dataset(Path(tmp) / "data", num_images=4, size=64, seed=0)
            out = {}
            for precision in ("fp32", "fp16", "bf16"):
                torch.manual_seed(0)  # the same weights each time: set_precision casts in place
                model = lseg.create_model("lseg_tiny_test").to(device)
                cfg = EvalConfig(dataset="folder", data_root=str(root), size=None, crop_size=64, num_workers=0,
                                 progress=False, precision=precision)
                out[precision] = evaluate(model, cfg)["metrics"]["mIoU"]
            return ", ".join(f"{k} mIoU {v}" for k, v in out.items())

    row("eval (precision)", "lseg_tiny_test", "fp32/fp16/bf16", device, run)


@contextlib.contextmanager
def timed(results: list[float], device: torch.device) -> Iterator[None]:
    _sync(device)
    t = time.perf_counter()
    yield
    _sync(device)
    results.append(time.perf_counter() - t)


def speed_rows(model: lseg.LSeg, device: torch.device, repeats: int) -> None:
    from lseg.data.label_sets import ade20k_labels

    x = torch.randn(1, 3, 480, 480, generator=torch.Generator().manual_seed(0)).to(device)
    for label, dt in (("fp32", None), ("fp16-autocast", torch.float16), ("bf16-autocast", torch.bfloat16)):
        def bench(dt: torch.dtype | None = dt) -> str:
            times: list[float] = []
            with torch.inference_mode(), autocast(device, dt):
                text = model.encode_text(LABELS)
                model(x, text)  # warm-up
                for _ in range(repeats):
                    with timed(times, device):
                        model(x, text)
            peak = f", peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB" if device.type == "cuda" else ""
            return f"480x480 forward median {statistics.median(times) * 1000:.1f} ms (min {min(times) * 1000:.1f}){peak}"

        row("speed: forward", "lseg_vitl16_384", label, device, bench)

    def text() -> str:
        ade = list(dict.fromkeys(ade20k_labels()))
        times: list[float] = []
        with torch.inference_mode():
            model.encode_text(ade)
            for _ in range(3):
                with timed(times, device):
                    model.encode_text(ade)
        return f"150 ADE20K labels median {statistics.median(times) * 1000:.1f} ms"

    row("speed: text", "lseg_vitl16_384", "fp32", device, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--skip-full", action="store_true", help="tiny model only (no ViT-L rows)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu --skip-full to check the script itself", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}",
          file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        folder = lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), Path(tmp) / "tiny")

        def load() -> str:
            m = lseg.load_model(folder).to(device)
            bad = [n for n, t in [*m.named_parameters(), *m.named_buffers()] if t.device.type != device.type]
            check(not bad, f"left behind: {bad[:3]}")
            return f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f} M parameters"

        row("load + move", "lseg_tiny_test", "fp32", device, load)
        tiny = lseg.load_model(folder).to(device)
    inference_rows("lseg_tiny_test", tiny, device, 96)
    training_rows("lseg_tiny_test", lambda: lseg.create_model("lseg_tiny_test"), device, 64)
    train_rows(device)
    eval_rows(device)
    if not args.skip_full:
        full: lseg.LSeg | None = None

        def build() -> str:
            nonlocal full
            full = lseg.create_model("lseg_vitl16_384").to(device).eval()
            return f"{sum(p.numel() for p in full.parameters()) / 1e6:.1f} M parameters"

        row("load + move", "lseg_vitl16_384", "fp32", device, build)
        if full is not None:
            inference_rows("lseg_vitl16_384", full, device, 480)
            training_rows("lseg_vitl16_384", lambda: lseg.create_model("lseg_vitl16_384"), device, 384)
            speed_rows(full, device, args.repeats)

    header = ("path", "model", "device", "dtype", "status", "ms", "note")
    widths = [max(len(r[i]) for r in [header, *ROWS]) for i in range(len(header) - 1)]
    for r in [header, *ROWS]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    failed = sum(r[4] != "ok" for r in ROWS)
    print(f"{len(ROWS) - failed}/{len(ROWS)} ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
