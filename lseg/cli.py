"""``lseg`` command line: segment, features, query, store, convert, info (+ train, eval, demo, export).

Every user error is one line on stderr (``error: ...``) and a non-zero exit code; outputs are
written atomically, so an interrupted run leaves no half-written files and can simply be re-run
(finished outputs are skipped unless ``--overwrite``).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from lseg.errors import LSegError

_logger = logging.getLogger("lseg")

#: Modules that add sub-commands: each defines ``register(subparsers)``. They import their heavy
#: dependencies (Lightning, Gradio, ONNX) only when their command runs.
EXTENSIONS = ("lseg.train.cli", "lseg.eval.cli", "lseg.app.cli", "lseg.export.cli")


# ---------------------------------------------------------------------------- parser conventions

class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (plain text, no reST); every option shows its default, if it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


class Parser(argparse.ArgumentParser):
    """An ``argparse`` parser whose usage errors are one line (``error: ...``, exit code 2), as
    every other lseg error, and whose sub-commands share its help formatter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def plain_doc(text: str | None) -> str:
    """A reST docstring as plain help text: ``code`` -> code, :role:`x` -> x, ``Examples::`` -> ``Examples:``."""
    text = text or ""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"::\n", ":\n", text).strip() + "\n"


# ---------------------------------------------------------------------------- shared options

#: The seed of ``--random-weights`` models: the same command gives the same network every time
#: (a resumed batch job must not mix two random networks).
RANDOM_WEIGHTS_SEED = 0


def add_model_args(p: argparse.ArgumentParser, required: bool = True, pretrained_default: bool = False) -> None:
    """``--checkpoint`` / ``--random-weights`` / ``--device`` (shared by every model command).

    With ``pretrained_default`` neither option is required: without them the command uses the
    released weights :data:`lseg.weights.DEFAULT` and says so.
    """
    from lseg.weights import DEFAULT

    default = f" (default: the released weights {DEFAULT})" if pretrained_default else ""
    g = p.add_mutually_exclusive_group(required=required and not pretrained_default)
    g.add_argument("--checkpoint", "-c",
                   help="released weights name (lseg weights list), lseg folder, .safetensors, official "
                   f"lang-seg .ckpt, or Hub repo id owner/name{default}")
    g.add_argument(
        "--random-weights", metavar="MODEL",
        help="use a randomly initialised registered model, e.g. lseg_tiny_test (seeded: the same network "
        "every run; the output is noise; for trying the tool)",
    )
    p.set_defaults(pretrained_default=pretrained_default)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available, else cpu)")
    _add_arch_args(p)


def load_model_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Build the model the shared options describe (on ``args.device``)."""
    import torch

    from lseg.loading import create_model, load_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if getattr(args, "random_weights", None):
        _logger.warning("using random weights for %s: the output is noise", args.random_weights)
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG state
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = create_model(args.random_weights)
    else:
        checkpoint = args.checkpoint
        if checkpoint is None and getattr(args, "pretrained_default", False):
            from lseg.weights import DEFAULT, get_weights

            checkpoint = DEFAULT
            entry = get_weights(checkpoint)
            print(f"no --checkpoint given: using the released weights {checkpoint!r} ({entry.network}); "
                  "`lseg weights list` shows the others", file=sys.stderr)
        model = load_model(checkpoint, spatial_block=spatial_block_from_args(args))
    return model.to(device).eval()


def add_predictor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=480, help="long side of the working resolution (0: native)")
    p.add_argument("--crop-size", type=int, default=480, help="sliding-window size above --size (>= 32)")
    p.add_argument("--stride", type=int, default=320, help="sliding-window stride (1 to --crop-size)")
    p.add_argument("--template", action="append", default=None,
                   help='prompt template with one {}, e.g. "a photo of a {}." (repeatable: averaged; '
                   "default: the raw label, as the reference)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="image path precision (auto: bf16 on CPUs with AMX/AVX512-BF16 and on recent "
                   "GPUs, fp16 on older GPUs, else fp32; text and similarity always fp32)")
    p.add_argument("--batch-size", type=int, default=4,
                   help="images per forward (images of equal working size are batched)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the image path (GPU; the first batch takes a minute)")


def add_labels_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--labels", "-l", help='comma-separated labels, e.g. "dog, grass, other"')
    g.add_argument("--labels-file", metavar="FILE",
                   help="UTF-8 text file of labels separated by line breaks or commas (blank lines and "
                   "lines starting with # are ignored)")


def make_predictor(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from lseg.inference import LSegPredictor

    model = load_model_from_args(args)
    predictor = LSegPredictor(
        model, size=args.size or None, crop_size=args.crop_size, stride=args.stride,
        templates=args.template, precision=args.precision, batch_size=args.batch_size, compile=args.compile,
    )
    how = " (auto)" if args.precision == "auto" else ""
    print(f"lseg: running on {predictor.device} in {predictor.precision}{how}", file=sys.stderr)
    return predictor


# ---------------------------------------------------------------------------- validation

#: Commands whose ``--out`` / ``out`` is a folder (for ``eval`` it is a JSON file).
_OUT_IS_FOLDER = ("segment", "features", "convert", "export")


def validate_args(args: argparse.Namespace) -> None:
    """Check every option a command has, by name, before any model or file work: each bad value is
    an :class:`LSegError` (``error: ...``, exit code 2) naming the option and what to give instead.
    ``--labels`` / ``--labels-file`` are parsed here into ``args.labels`` (a list)."""
    get = functools.partial(getattr, args)
    if get("device", None) is not None:
        check_device(args.device)
    for name, low, what in (("size", 0, "0 (native) or a positive number of pixels"),
                            ("crop_size", 32, "at least 32 pixels"), ("stride", 1, "at least 1"),
                            ("batch_size", 1, "at least 1"), ("max_labels", 1, "at least 1"),
                            ("every_n", 1, "at least 1"), ("base_size", 32, "at least 32 pixels"),
                            ("fewshot_size", 32, "at least 32 pixels"), ("repeats", 1, "at least 1"),
                            ("num_workers", 0, "0 or more"), ("max_samples", 1, "at least 1")):
        value = get(name, None)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not v >= low:
                raise LSegError(f"--{name.replace('_', '-')} must be {what}, got {v}")
    if get("stride", None) is not None and get("crop_size", None) is not None and args.stride > args.crop_size:
        raise LSegError(f"--stride ({args.stride}) must not exceed --crop-size ({args.crop_size}): windows would "
                        "leave gaps")
    for name in ("alpha", "stride_rate"):
        value = get(name, None)
        if value is not None and not (0 <= value <= 1 and (name == "alpha" or value > 0)):
            raise LSegError(f"--{name.replace('_', '-')} must be in {'[0, 1]' if name == 'alpha' else '(0, 1]'}, "
                            f"got {value}")
    for name in ("fps", "max_upload_mb"):
        value = get(name, None)
        if value is not None and not value > 0:
            raise LSegError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if get("port", None) is not None and not 0 <= args.port <= 65535:
        raise LSegError(f"--port must be in 0..65535 (0: any free port), got {args.port}")
    templates = [t for t in get("template", None) or [] if not (t == "default" and args.command == "eval")]
    if templates:
        from lseg.labels import validate_templates

        try:
            validate_templates(templates)
        except LSegError as e:
            raise LSegError(f"--template: {e}") from None
    if get("resolution", None) is not None:
        from lseg.features import parse_resolution

        parse_resolution(args.resolution)
    if get("shard", None):
        from lseg.features import parse_shard

        parse_shard(args.shard)
    out = get("out", None)
    if isinstance(out, str) and args.command in _OUT_IS_FOLDER and Path(out).exists() and not Path(out).is_dir():
        raise LSegError(f"--out {out} is a file, not a folder: give a folder (it is created if needed)")
    if get("random_weights", None):
        from lseg.models import get_config

        try:
            get_config(args.random_weights)
        except LSegError as e:
            raise LSegError(f"--random-weights: {e}") from None
    if get("labels_file", None) is not None or isinstance(get("labels", None), str):
        args.labels = read_labels_arg(get("labels", None), get("labels_file", None))


def check_device(device: str) -> None:
    """``cpu``, ``cuda``, ``cuda:N`` (or ``mps``) that this machine has; one line otherwise."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise LSegError(f"--device {device!r} is not a device: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise LSegError(f"--device {device}: {why} on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise LSegError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                            f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise LSegError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif dev.type != "cpu":
        raise LSegError(f"--device {device!r} is not supported: use cpu, cuda or cuda:N")


def read_labels_arg(labels: str | None, labels_file: str | None) -> list[str]:
    """The labels of ``--labels`` or ``--labels-file`` (parsed and checked: :func:`lseg.labels.parse_labels`)."""
    from lseg.labels import parse_labels

    if labels_file is not None:
        path = Path(labels_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise LSegError(f"--labels-file {path}: no such file") from None
        except UnicodeDecodeError:
            raise LSegError(f"--labels-file {path} is not UTF-8 text") from None
        except OSError as e:
            raise LSegError(f"--labels-file {path}: {e.strerror or e}") from None
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        parsed = parse_labels("\n".join(lines)) if lines else parse_labels("")
        source = f"--labels-file {path}"
    else:
        assert labels is not None
        parsed = parse_labels(labels)
        source = "--labels"
        if len(parsed) == 1 and (Path(parsed[0]).expanduser().is_file() or
                                 Path(parsed[0]).suffix.lower() in (".txt", ".csv", ".json")):
            raise LSegError(f"--labels {parsed[0]!r} looks like a file name: to read labels from a file use "
                            f"--labels-file {parsed[0]}")
    if len(parsed) == 1:
        print(f"warning: {source} gives one label ({parsed[0]!r}): every pixel gets it; add the others and "
              "a catch-all such as 'other'", file=sys.stderr)
    return parsed


# ---------------------------------------------------------------------------- segment

def _cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from lseg.batch import (
        BatchReport,
        check_outputs,
        check_unique_outputs,
        collect_inputs,
        finish,
        model_identity,
        plan,
        write_record,
    )
    from lseg.claims import ClaimSet, remove_stale_claims
    from lseg.errors import OutputWriteError
    from lseg.io import IMAGE_EXTENSIONS, atomic_write, check_writable, load_image, remove_stale_temp_files
    from lseg.loader import prepared_batches
    from lseg.viz import heatmaps, hex_colors, overlay, save_label_map

    labels: list[str] = args.labels
    if len(labels) > 65536:
        raise LSegError(f"{len(labels)} labels: label maps are written as 16-bit PNGs, at most 65536 labels")
    out = Path(args.out)
    pairs = collect_inputs(args.images, IMAGE_EXTENSIONS, out=out)
    check_unique_outputs(pairs, "_labels.png")
    remove_stale_temp_files(out)  # hidden temp files of a killed earlier run
    remove_stale_claims(out)  # and its claims
    jobs: list[tuple[Path, list[Path], Path]] = []
    for src, stem in pairs:
        base = out / stem
        targets = [base.with_name(base.name + "_labels.png"), base.with_name(base.name + "_overlay.png")]
        if args.scores:
            targets.append(base.with_name(base.name + "_scores.npz"))
        if args.heatmaps:
            targets += [base.with_name(f"{base.name}_heat_{i:02d}_{_safe(lb)}.png") for i, lb in enumerate(labels)]
        jobs.append((src, targets, base.with_name(base.name + "_labels.json")))
    check_outputs([(src, [*t, r]) for src, t, r in jobs], overwrite=args.overwrite)
    checked = False
    if args.overwrite or not all(all(map(os.path.exists, [*t, r])) for _, t, r in jobs):
        check_writable(out)  # a read-only or forbidden folder: one error before the model loads
        checked = True
    predictor = make_predictor(args)
    recipe = {
        "labels": labels, "templates": list(predictor.templates or []), "size": predictor.size,
        "crop_size": predictor.crop_size, "stride": predictor.stride, "precision": predictor.precision,
        "multiscale": bool(args.multiscale), "alpha": args.alpha,
        "model": model_identity(args.checkpoint, args.random_weights, RANDOM_WEIGHTS_SEED),
    }
    report = BatchReport()
    todo: list[tuple[Path, list[Path], Path, str]] = []
    for src, targets, record in jobs:
        status = plan(targets, record, recipe, report, overwrite=args.overwrite)
        if status != "done":
            todo.append((src, targets, record, status))
    if todo and not checked:  # outputs made with other settings, to be redone
        check_writable(out)

    def write(src: Path, targets: list[Path], record: Path, status: str, result) -> None:  # type: ignore[no-untyped-def]
        write_record(record, "segment", src, recipe, targets, pending=True)
        image = load_image(src)  # full resolution for the overlay (the loader kept only the resized copy)
        lm = result.label_map
        save_label_map(targets[0], lm, labels)
        if args.scores or args.heatmaps:
            probs = result.probs
        if args.scores:
            half = probs.astype(np.float16)
            atomic_write(targets[2], lambda p, pr=half: _save_npz(p, probs=pr, labels=np.array(labels)))
        if args.heatmaps:
            heat_targets = targets[3 if args.scores else 2:]
            for target, heat in zip(heat_targets, heatmaps(probs, labels, image, annotate=True).values()):
                atomic_write(target, lambda p, im=heat: im.save(p, format="PNG"))
        picture = overlay(image, lm, labels, alpha=args.alpha)
        atomic_write(targets[1], lambda p, im=picture: im.save(p, format="PNG"))
        write_record(record, "segment", src, recipe, targets, labels=labels, colors=hex_colors(min(len(labels), 65536)),
                     shares=result.scores())
        finish(report, targets[0], status)  # type: ignore[arg-type]

    def fail(src: Path, e: LSegError | str) -> None:
        """One line per file; a full disk or read-only file system stops the batch (re-raised)."""
        print(f"error: {e}" if isinstance(e, OutputWriteError) else f"warning: skipping {src}: {e}", file=sys.stderr)
        report.failed.append((src, str(e)))
        if isinstance(e, OutputWriteError) and e.fatal:
            raise e

    progress = tqdm(total=len(todo), desc="segment", unit="img", disable=args.quiet)
    with ClaimSet() as claims:  # workers sharing this output folder split the images
        statuses = [status for *_, status in todo]

        def take(i: int) -> bool:
            src, targets, record, _ = todo[i]
            try:
                if not claims.take(targets[0]):
                    report.others.append(targets[0])
                    return False
            except OutputWriteError as e:
                fail(src, e)
                return False
            # another worker may have finished it meanwhile (then plan counts it as already done)
            statuses[i] = plan(targets, record, recipe, report, overwrite=args.overwrite)
            if statuses[i] == "done":
                claims.release(targets[0])
                return False
            return True

        def run(i: int, compute: Callable[[], object]) -> None:
            src, targets, record, _ = todo[i]
            try:
                write(src, targets, record, statuses[i], compute())
            except LSegError as e:
                fail(src, e)
            finally:
                claims.release(targets[0])

        try:
            if args.multiscale:  # the reference evaluator: one image at a time
                for i, (src, *_) in enumerate(todo):
                    if take(i):
                        run(i, lambda s=src: predictor.segment(load_image(s), labels, multiscale=True))
                    progress.update()
            else:
                for batch in prepared_batches(predictor, [t[0] for t in todo], take=take):
                    for item in batch:
                        if item.error is not None:
                            claims.release(todo[item.index][1][0])
                            fail(item.path, item.error)
                    good = [item for item in batch if item.image is not None]
                    results = predictor.segment_batch([item.image for item in good], labels) if good else []
                    for item, result in zip(good, results):
                        run(item.index, lambda r=result: r)
                    progress.update(len(batch))
        except OutputWriteError as e:  # fatal (raised by fail): every later write would fail the same way
            report.stopped = str(e)
    progress.close()
    return _finish(report, f"segment (into {out})")


def _safe(label: str) -> str:
    """A label as a file-name fragment (heatmap files)."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in label)[:40] or "label"


def _save_npz(path: Path, **arrays) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def _finish(report, what: str) -> int:  # type: ignore[no-untyped-def]
    """Summary and failed files; exit 2 if the job stopped early (disk full...), 1 if files failed."""
    print(f"{what}: {report.summary()}", file=sys.stderr)
    for path, reason in report.failed:
        print(f"  failed: {path}: {reason}", file=sys.stderr)
    return 2 if report.stopped else 1 if report.failed else 0


# ---------------------------------------------------------------------------- features

def _cmd_features(args: argparse.Namespace) -> int:
    from lseg.batch import model_identity
    from lseg.features import combine_shards, export_features, parse_resolution, parse_shard, torchrun_rank

    resolution = parse_resolution(args.resolution) if args.resolution else None  # fail before loading the model
    rank, world = torchrun_rank()
    part, parts = combine_shards(parse_shard(args.shard) if args.shard else None, (rank, world))
    if args.device is None and world > 1:  # torchrun on a multi-GPU machine: one GPU per process
        import torch

        if torch.cuda.is_available():
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    from lseg.claims import remove_stale_claims
    from lseg.io import check_writable, remove_stale_temp_files

    remove_stale_temp_files(args.out)  # hidden temp files of a killed earlier run
    remove_stale_claims(args.out)  # and its claims
    check_writable(args.out)  # a read-only or forbidden folder: one error before the model loads
    if args.format == "store":
        return _features_store(args, resolution, (part, parts), rank)
    if args.preset != "ours" or args.reduce or args.engine != "local" or args.scales or args.flip is not None:
        raise LSegError("--preset, --scales, --flip, --reduce and --engine need --format store")
    predictor = make_predictor(args)
    report = export_features(
        predictor, args.inputs, args.out, dtype=args.dtype, overwrite=args.overwrite, progress=not args.quiet,
        resolution=resolution or "half", pca=args.pca, fps=args.fps, every_n=args.every_n, shard=(part, parts),
        write_manifest=rank == 0, model_id=model_identity(args.checkpoint, args.random_weights, RANDOM_WEIGHTS_SEED),
    )
    return _finish(report, "features" if parts == 1 else f"features (part {part + 1}/{parts})")


def _features_store(args: argparse.Namespace, resolution, shard: tuple[int, int], rank: int) -> int:  # type: ignore[no-untyped-def]
    """``lseg features --format store``: the self-describing store (lseg.features.store)."""
    import dataclasses

    from lseg.features.presets import FeatureExtractor, get_preset
    from lseg.features.store import StoreSettings, export_store

    if args.dtype != "float16" or args.pca:
        raise LSegError("--format store writes float16 maps; --dtype float32 and --pca are for --format npy")
    preset = get_preset(args.preset)
    if args.scales or args.flip is not None:
        if preset.engine != "evaluator":
            raise LSegError(f"--scales and --flip apply to the evaluator presets, not {preset.name!r}")
        scales = tuple(float(v) for v in args.scales.split(",")) if args.scales else preset.scales
        flip = preset.flip if args.flip is None else args.flip
        preset = dataclasses.replace(preset, name=f"{preset.name}-custom", scales=scales, flip=flip)
    settings = StoreSettings(fps=args.fps, every_n=args.every_n, frames_per_shard=args.frames_per_shard,
                             batch_size=args.batch_size)
    extractor = FeatureExtractor(make_predictor(args), preset, resolution)
    checkpoint = getattr(args, "checkpoint", None)
    if args.engine == "ray":
        from lseg.features.ray_export import export_store_ray

        if shard[1] > 1:
            raise LSegError("--engine ray spreads the work itself: no --shard or torchrun")
        if args.ray_address:
            import ray

            ray.init(address=args.ray_address)
        report = export_store_ray(extractor, args.inputs, args.out, num_workers=args.workers,
                                  num_gpus_per_worker=args.gpus_per_worker, settings=settings,
                                  checkpoint=checkpoint, overwrite=args.overwrite, reduce=args.reduce)
    else:
        report = export_store(extractor, args.inputs, args.out, settings=settings, checkpoint=checkpoint,
                              overwrite=args.overwrite, progress=not args.quiet, shard=shard,
                              write_manifest=rank == 0, reduce=args.reduce)
    return _finish(report, "features" if shard[1] == 1 else f"features (part {shard[0] + 1}/{shard[1]})")


# ---------------------------------------------------------------------------- query / store

def _cmd_query(args: argparse.Namespace) -> int:
    from lseg.features.query import query_store
    from lseg.features.store import FeatureStore, weights_sha256
    from lseg.labels import parse_labels

    store = FeatureStore(args.store)  # fail before loading the model
    labels = parse_labels(args.labels)
    if not args.checkpoint and not args.random_weights:
        args.checkpoint = store.manifest.get("checkpoint")
        if not args.checkpoint:
            raise LSegError(f"{args.store} records no checkpoint (made with --random-weights): give --checkpoint")
    model = load_model_from_args(args)
    # the store hashed the weights as they ran: cast the same way before comparing
    model.set_precision(store.manifest.get("precision", "fp32"))
    if not args.random_weights and weights_sha256(model) != store.manifest["weights_sha256"]:
        raise LSegError(f"{args.checkpoint} is not the model that made {args.store} (weights hash differs)")
    from lseg.inference import LSegPredictor

    text = LSegPredictor(model, templates=args.template).embed_text(labels)
    frames = _parse_frames(args.frames, len(store)) if args.frames else None
    written = query_store(store, text, labels, args.out, logit_scale=float(model.logit_scale), frames=frames,
                          reduced=args.reduced, heatmaps=args.heatmaps, scores=args.scores)
    print(f"query: {len(written)} frames -> {args.out}", file=sys.stderr)
    return 0


def _parse_frames(text: str, n: int) -> list[int | str]:
    """``a:b`` (ids a..b-1) or a comma-separated list of ids and keys."""
    if ":" in text and "," not in text:
        a, _, b = text.partition(":")
        try:
            return list(range(n))[slice(int(a) if a else None, int(b) if b else None)]
        except ValueError:
            raise LSegError(f"--frames must be a:b or a comma-separated list, got {text!r}") from None
    return [int(t) if t.strip().isdigit() else t.strip() for t in text.split(",") if t.strip()]


def _cmd_store(args: argparse.Namespace) -> int:
    from lseg.features.store import FeatureStore, export_layout, reduce_store

    if args.store_command == "reduce":
        red = reduce_store(args.store, args.k, overwrite=args.overwrite, progress=not args.quiet)
        print(json.dumps(red.summary(), indent=2))
    elif args.store_command == "export":
        written = export_layout(args.store, args.layout, args.out, reduced=args.reduced, overwrite=args.overwrite)
        print(f"store export: {len(written)} files -> {args.out}", file=sys.stderr)
    else:
        store = FeatureStore(args.store)
        m = store.manifest
        info = {"frames": len(store), "failed": len(store.index["failed"]), "extractor": m["extractor"],
                "model": m["model"]["name"], "weights_sha256": m["weights_sha256"], "checkpoint": m["checkpoint"],
                "video_sampling": m["video_sampling"], "reduction": store.index.get("reduction")}
        print(json.dumps(info, indent=2))
    return 0


# ---------------------------------------------------------------------------- convert / info

def _cmd_convert(args: argparse.Namespace) -> int:
    from lseg.checkpoints import save_pretrained
    from lseg.loading import load_model

    model = load_model(args.checkpoint, spatial_block=spatial_block_from_args(args))
    out = save_pretrained(model, args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"converted {args.checkpoint} -> {out} ({model.config.name}, {n / 1e6:.1f} M parameters)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from lseg.checkpoints import (
        CONFIG_NAME,
        count_parameters,
        infer_config,
        read_checkpoint,
        read_config,
        safetensors_shapes,
    )
    from lseg.weights import resolve

    p = resolve(args.checkpoint)
    info: dict = {}
    if p.is_dir() or (p.parent / CONFIG_NAME).is_file() and p.suffix == ".safetensors":
        config = read_config(p if p.is_dir() else p.parent)
        shapes = safetensors_shapes(p)  # header only: also catches a truncated weights file
        info["format"] = "lseg"
    else:
        ckpt = read_checkpoint(p)
        config = infer_config(ckpt.state_dict, spatial_block=spatial_block_from_args(args))
        shapes = {k: tuple(v.shape) for k, v in ckpt.state_dict.items()}
        info["format"] = ckpt.format
        if ckpt.metadata:
            info["lightning" if ckpt.format == "lightning" else "metadata"] = ckpt.metadata
    info["config"] = config.to_dict()
    info["tensors"] = len(shapes)
    info["parameters"] = count_parameters(shapes)  # as the reference counts: BatchNorm statistics excluded
    print(json.dumps(info, indent=2, default=str))
    return 0


# ---------------------------------------------------------------------------- weights

def _cmd_weights(args: argparse.Namespace) -> int:
    from lseg import weights

    if args.weights_command == "list":
        rows = [("name", "network", "result in the paper", "file", "cached")]
        for w in weights.WEIGHTS.values():
            d = weights.weights_dir(w.name)
            state = "converted" if weights.cached_folder(w.name) else "downloaded" if (d / w.filename).is_file() else "-"
            rows.append((w.name, w.network, w.paper, w.filename, state))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(n) for c, n in zip(r, widths)).rstrip())
        print(f"cache: {weights.cache_dir() / 'weights'}" + (" (offline mode)" if weights.is_offline() else ""))
        return 0
    if args.weights_command == "download":
        names = list(weights.WEIGHTS) if args.names == ["all"] else args.names
        for name in names:
            weights.get_weights(name)  # every name is checked before the first download starts
        for name in names:
            print(weights.download(name, force=args.force, check_all=True))
        return 0
    folder = weights.cached_folder(args.name)
    if folder is None:
        entry = weights.get_weights(args.name)
        raise LSegError(
            f"{args.name!r} is not in the cache: run `lseg weights download {args.name}`, or put {entry.filename} "
            f"(from {entry.url}) at {weights.weights_dir(args.name) / entry.filename}"
        )
    print(folder)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses
    import platform

    import torch

    from lseg.benchmark import bench, format_table
    from lseg.io import atomic_write
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
        text = json.dumps([dataclasses.asdict(r) for r in rows], indent=2)
        atomic_write(args.json, lambda p: p.write_text(text))
    return 0


# ---------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    from lseg import __version__

    parser = Parser(prog="lseg", description="Language-driven semantic segmentation (LSeg).")
    parser.add_argument("--version", action="version", version=f"lseg {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "segment", help="segment images with any labels",
        description="Writes OUT/<stem>_labels.png (pixel value = label index; label names in its lseg:labels "
        "text chunk), <stem>_labels.json (label names and colours, and the settings that made the outputs), "
        "<stem>_overlay.png (photo, colours, legend) and optionally scores and heatmaps. A re-run skips "
        "images done with the same settings and redoes those whose settings changed.",
    )
    p.add_argument("images", nargs="+", help="image files or folders (the output folder inside them is skipped)")
    add_labels_args(p)
    p.add_argument("--out", "-o", default="lseg-output", help="output folder")
    p.add_argument("--scores", action="store_true", help="also write per-label probabilities (.npz, fp16)")
    p.add_argument("--heatmaps", action="store_true",
                   help="also write one probability heatmap per label over the image, with its name and a "
                   "colour bar (<stem>_heat_<index>_<label>.png)")
    p.add_argument("--multiscale", action="store_true", help="reference multi-scale + flip evaluation (slow)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity, 0 to 1")
    p.add_argument("--overwrite", action="store_true", help="redo every image, even those already done")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_model_args(p, pretrained_default=True)
    add_predictor_args(p)
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser(
        "features", help="export dense pixel embeddings for images and videos",
        description="One (D, h, w) .npy per image or sampled video frame (<video>/<frame:06d>.npy) and a "
        "features.json manifest; finished outputs are skipped on re-runs. Shard with torchrun -m lseg.cli "
        "(--nproc_per_node=N: input i goes to rank i % N) and/or --shard k/M across machines.",
    )
    p.add_argument("inputs", nargs="+", help="image / video files or folders")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="stored dtype")
    p.add_argument("--resolution", default=None, metavar="half|input|original|HxW",
                   help="half: the network's output (default; with --format store: the preset's own); input: "
                   "the working size; original: the image's size; HxW: that size (upsampled bilinearly and "
                   "re-normalised)")
    p.add_argument("--pca", action="store_true", help="also write <stem>_pca.png (3 principal components)")
    frames = p.add_mutually_exclusive_group()
    frames.add_argument("--fps", type=float, default=None, help="videos: sample at most this many frames/s")
    frames.add_argument("--every-n", type=int, default=None, help="videos: every n-th frame")
    p.add_argument("--shard", default=None, metavar="k/M",
                   help="do only inputs i with i %% M == k (split a collection across machines)")
    p.add_argument("--overwrite", action="store_true", help="redo every input, even those already done")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    g = p.add_argument_group("feature store (--format store; lseg.features.store)")
    g.add_argument("--format", choices=("npy", "store"), default="npy",
                   help="npy: one .npy per image/frame (default); store: one self-describing store "
                   "(fp16 safetensors shards + index.json) that `lseg query` reads")
    g.add_argument("--preset", choices=("ours", "reference", "reference-ss", "openscene", "vlmaps"), default="ours",
                   help="preprocessing recipe (lseg.features.presets): ours (default), the reference evaluator "
                   "(6 scales + flip, or -ss: single scale + flip), OpenScene's or VLMaps' extractor")
    g.add_argument("--scales", default=None, help="evaluator presets: comma-separated scales (e.g. 0.75,1,1.25,1.75)")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="evaluator presets: add the mirrored image's map")
    g.add_argument("--reduce", type=int, default=None, metavar="K",
                   help="also fit a K-d scene PCA over all frames (streaming) and store the reduced maps")
    g.add_argument("--frames-per-shard", type=int, default=16, help="frames per shard file (and images per unit)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: spread the units over Ray Data actors (pip install 'lseg[scale]')")
    g.add_argument("--workers", type=int, default=2, help="--engine ray: actors (one model each)")
    g.add_argument("--gpus-per-worker", type=float, default=0, help="--engine ray: GPUs per actor")
    g.add_argument("--ray-address", default=None, help="--engine ray: cluster address (default: a local one)")
    add_model_args(p, pretrained_default=True)
    add_predictor_args(p)
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser(
        "query", help="label maps / similarity heatmaps from a feature store (no image encoder)",
        description="Scores every stored frame against the labels with the store's model's text encoder: "
        "OUT/<key>_labels.png, and optionally heatmaps and per-label probabilities.",
    )
    p.add_argument("store", help="a store written by `lseg features --format store`")
    p.add_argument("labels", help='comma-separated labels, e.g. "chair, table, other"')
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--frames", default=None, help="a:b (frame ids) or a comma-separated list of ids / keys")
    p.add_argument("--reduced", action="store_true", help="score the reduced maps (decoded to the text space)")
    p.add_argument("--heatmaps", action="store_true", help="also write one probability heatmap per label")
    p.add_argument("--scores", action="store_true", help="also write per-label probabilities (.npz, fp16)")
    p.add_argument("--template", action="append", default=None, help="prompt template with {} (repeatable)")
    add_model_args(p, required=False)
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("store", help="feature store tools: info, reduce, export to other layouts")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    q = ssub.add_parser("info", help="what a store holds and how it was made")
    q.add_argument("store")
    q = ssub.add_parser("reduce", help="fit a K-d scene PCA over all frames and store the reduced maps")
    q.add_argument("store")
    q.add_argument("k", type=int)
    q.add_argument("--overwrite", action="store_true", help="replace a reduction of another K")
    q.add_argument("--quiet", "-q", action="store_true")
    q = ssub.add_parser("export", help="write per-image files in the OpenScene or Feature 3DGS layout")
    q.add_argument("store")
    q.add_argument("--layout", choices=("openscene", "feature3dgs"), required=True)
    q.add_argument("--out", "-o", required=True)
    q.add_argument("--reduced", action="store_true", help="the reduced maps instead of the full ones")
    q.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_store)

    p = sub.add_parser("convert", help="convert an official lang-seg .ckpt to an lseg folder")
    p.add_argument("checkpoint", help="official .ckpt (or any readable checkpoint)")
    p.add_argument("out", help="output folder (model.safetensors + config.json)")
    _add_arch_args(p)
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "weights", help="the released LSeg weights by name: list, download, path",
        description="Released weights are downloaded once (Google Drive, or $LSEG_WEIGHTS_MIRROR), checked, "
        "converted to an lseg folder and cached in $LSEG_HOME (default ~/.cache/lseg); every --checkpoint "
        "accepts their names. LSEG_OFFLINE=1 (or HF_HUB_OFFLINE=1) uses the cache only.",
    )
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    wsub.add_parser("list", help="names, networks, the paper's numbers, and what is cached")
    w = wsub.add_parser("download", help="download, verify and convert (already cached: verify)")
    w.add_argument("names", nargs="+", metavar="NAME", help="released weights names, or all")
    w.add_argument("--force", action="store_true", help="discard the cached files and download again")
    w = wsub.add_parser("path", help="print the cached lseg folder of NAME (for scripts)")
    w.add_argument("name", metavar="NAME", help="released weights name")
    p.set_defaults(func=_cmd_weights)

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

    p = sub.add_parser("info", help="print a checkpoint's configuration")
    p.add_argument("checkpoint", help="lseg folder, .safetensors, official .ckpt or released weights name")
    _add_arch_args(p)
    p.set_defaults(func=_cmd_info)

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is None or not name.startswith(e.name):  # a missing dependency is a real error
                raise
            continue
        register: Callable[[argparse._SubParsersAction], None] = module.register
        register(sub)
    _add_verbose(sub)
    return parser


def _add_verbose(sub: argparse._SubParsersAction) -> None:
    """``-v`` after the command too (``lseg segment ... -v``); SUPPRESS keeps a ``-v`` given before it."""
    for p in sub.choices.values():
        if "--verbose" not in p._option_string_actions:
            p.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                           help="debug logging and full tracebacks")
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_verbose(action)


def _add_arch_args(p: argparse.ArgumentParser) -> None:
    """The spatial-block options of official checkpoints (read back by :func:`spatial_block_from_args`)."""
    p.add_argument("--arch-option", type=int, choices=(1, 2), default=None,
                   help="official checkpoints with a spatial block: 1 bottleneck, 2 depthwise")
    p.add_argument("--block-depth", type=int, default=None, help="with --arch-option")
    p.add_argument("--activation", choices=("relu", "lrelu", "tanh"), default=None, help="with --arch-option")


def spatial_block_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """``--arch-option/--block-depth/--activation`` as one :class:`SpatialBlockConfig`, or ``None``
    when they do not name a block (both of the first two are needed)."""
    from lseg.models.config import SpatialBlockConfig

    if args.arch_option is None or args.block_depth is None:
        return None
    return SpatialBlockConfig(args.arch_option, args.block_depth, args.activation or "lrelu")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        validate_args(args)  # every option, before any model or file work
        from lseg.inference import tune_allocator

        tune_allocator()  # before any model is built (see its docstring)
        return int(args.func(args) or 0)
    except LSegError as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
