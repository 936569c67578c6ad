"""``lseg segment``: label maps, overlays, scores and heatmaps for a batch of images."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lseg.cli import common
from lseg.cli.common import (
    RANDOM_WEIGHTS_SEED,
    add_labels_args,
    add_model_args,
    add_predictor_args,
    finish_batch,
)
from lseg.config_args import Flag, add_config_args, config_from_args
from lseg.errors import LSegError

__all__ = ["SEGMENT_FLAGS", "SEGMENT_INPUT_FLAGS", "SegmentInputs", "SegmentOptions", "register"]


@dataclass(frozen=True)
class SegmentOptions:
    """What ``lseg segment`` writes, and how (the predictor's settings are :class:`PredictorOptions`).

    Attributes:
        out: the output folder.
        scores: also write per-label probabilities (``.npz``, fp16).
        heatmaps: also write one probability heatmap per label.
        multiscale: the reference multi-scale + flip evaluation, one image at a time.
        alpha: overlay opacity, 0 to 1.
        overwrite: redo every image, even those already done.
        quiet: no progress bar.
    """

    out: str = "lseg-output"
    scores: bool = False
    heatmaps: bool = False
    multiscale: bool = False
    alpha: float = 0.5
    overwrite: bool = False
    quiet: bool = False


#: The command-line side of :class:`SegmentOptions`.
SEGMENT_FLAGS = {
    "out": Flag("output folder", aliases=("-o",)),
    "scores": Flag("also write per-label probabilities (.npz, fp16)"),
    "heatmaps": Flag("also write one probability heatmap per label over the image, with its name and a "
                     "colour bar (<stem>_heat_<index>_<label>.png)"),
    "multiscale": Flag("reference multi-scale + flip evaluation (slow)"),
    "alpha": Flag("overlay opacity, 0 to 1"),
    "overwrite": Flag("redo every image, even those already done"),
    "quiet": Flag("no progress bar", aliases=("-q",)),
}


@dataclass(frozen=True)
class SegmentInputs:
    """What ``lseg segment`` reads: image files or folders (kept apart from :class:`SegmentOptions`,
    the settings recorded with the outputs)."""

    images: tuple[str, ...]


#: The command-line side of :class:`SegmentInputs`.
SEGMENT_INPUT_FLAGS = {
    "images": Flag("image files or folders (the output folder inside them is skipped)", positional=True, nargs="+"),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the commands of this module to the ``lseg`` parser."""
    p = sub.add_parser(
        "segment", help="segment images with any labels",
        description="Writes OUT/<stem>_labels.png (pixel value = label index; label names in its lseg:labels "
        "text chunk), <stem>_labels.json (label names and colours, and the settings that made the outputs), "
        "<stem>_overlay.png (photo, colours, legend) and optionally scores and heatmaps. A re-run skips "
        "images done with the same settings and redoes those whose settings changed.",
    )
    add_config_args(p, SegmentInputs, SEGMENT_INPUT_FLAGS)
    add_labels_args(p)
    add_config_args(p, SegmentOptions, SEGMENT_FLAGS)
    add_model_args(p, pretrained_default=True)
    add_predictor_args(p)
    p.set_defaults(func=_cmd_segment)


def _cmd_segment(args: argparse.Namespace) -> int:
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
    from lseg.progress import progress_bar
    from lseg.viz import heatmap_path, heatmaps, hex_colors, overlay, save_label_map, save_scores

    opts: SegmentOptions = config_from_args(SegmentOptions, args, SEGMENT_FLAGS)
    labels: list[str] = args.labels
    if len(labels) > 65536:
        raise LSegError(f"{len(labels)} labels: label maps are written as 16-bit PNGs, at most 65536 labels")
    out = Path(opts.out)
    images = config_from_args(SegmentInputs, args, SEGMENT_INPUT_FLAGS).images
    pairs = collect_inputs(list(images), IMAGE_EXTENSIONS, out=out)
    check_unique_outputs(pairs, "_labels.png")
    remove_stale_temp_files(out)  # hidden temp files of a killed earlier run
    remove_stale_claims(out)  # and its claims
    jobs: list[tuple[Path, list[Path], Path]] = []
    for src, stem in pairs:
        base = out / stem
        targets = [base.with_name(base.name + "_labels.png"), base.with_name(base.name + "_overlay.png")]
        if opts.scores:
            targets.append(base.with_name(base.name + "_scores.npz"))
        if opts.heatmaps:
            targets += [heatmap_path(base, i, lb) for i, lb in enumerate(labels)]
        jobs.append((src, targets, base.with_name(base.name + "_labels.json")))
    check_outputs([(src, [*t, r]) for src, t, r in jobs], overwrite=opts.overwrite)
    checked = False
    if opts.overwrite or not all(all(map(os.path.exists, [*t, r])) for _, t, r in jobs):
        check_writable(out)  # a read-only or forbidden folder: one error before the model loads
        checked = True
    predictor = common.make_predictor(args)
    recipe = {
        "labels": labels, "templates": list(predictor.templates or []), "size": predictor.size,
        "crop_size": predictor.crop_size, "stride": predictor.stride, "precision": predictor.precision,
        "multiscale": bool(opts.multiscale), "alpha": opts.alpha,
        "model": model_identity(args.checkpoint, args.random_weights, RANDOM_WEIGHTS_SEED),
    }
    report = BatchReport()
    todo: list[tuple[Path, list[Path], Path, str]] = []
    for src, targets, record in jobs:
        status = plan(targets, record, recipe, report, overwrite=opts.overwrite)
        if status != "done":
            todo.append((src, targets, record, status))
    if todo and not checked:  # outputs made with other settings, to be redone
        check_writable(out)

    def write(src: Path, targets: list[Path], record: Path, status: str, result) -> None:  # type: ignore[no-untyped-def]
        write_record(record, "segment", src, recipe, targets, pending=True)
        image = load_image(src)  # full resolution for the overlay (the loader kept only the resized copy)
        lm = result.label_map
        save_label_map(targets[0], lm, labels)
        if opts.scores or opts.heatmaps:
            probs = result.probs
        if opts.scores:
            save_scores(targets[2], probs, labels)
        if opts.heatmaps:
            heat_targets = targets[3 if opts.scores else 2:]
            for target, heat in zip(heat_targets, heatmaps(probs, labels, image, annotate=True).values()):
                atomic_write(target, lambda p, im=heat: im.save(p, format="PNG"))
        picture = overlay(image, lm, labels, alpha=opts.alpha)
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

    # every input counted, the ones already done from the start (as `lseg features` counts them)
    progress = progress_bar(total=len(jobs), initial=len(jobs) - len(todo), desc="segment", unit="img",
                            disable=opts.quiet)
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
            statuses[i] = plan(targets, record, recipe, report, overwrite=opts.overwrite)
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
            if opts.multiscale:  # the reference evaluator: one image at a time
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
    return finish_batch(report, f"segment (into {out})")
