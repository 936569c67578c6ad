"""``lseg segment``: label maps, overlays, scores and heatmaps for a batch of images."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from lseg.cli import common
from lseg.inference.options import PredictorOptions, SegmentOptions, refuse_geometry
from lseg.options import add_options, option, options_from_args

__all__ = ["SegmentInputs", "register"]


@dataclass(frozen=True)
class SegmentInputs:
    """What ``lseg segment`` reads.

    Attributes:
        images: image files or folders (the output folder inside them is skipped).
    """

    images: tuple[str, ...] = option(positional=True, nargs="+", metavar="images")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment", help="segment images with any labels",
        description="Writes OUT/<stem>_labels.png (pixel value = label index; label names in its lseg:labels "
        "text chunk), <stem>_labels.json (label names and colours, and the settings that made the outputs), "
        "<stem>_overlay.png (photo, colours, legend) and optionally scores and heatmaps. A re-run skips "
        "images done with the same settings and redoes those whose settings changed.",
    )
    for options in (SegmentInputs, common.LabelsOptions, SegmentOptions):
        add_options(p, options)
    common.add_model_args(p, pretrained_default=True)
    add_options(p, PredictorOptions)
    p.set_defaults(func=_cmd_segment)


def _cmd_segment(args: argparse.Namespace) -> int:
    from lseg.inference.folder import SegmentWriter
    from lseg.jobs.engine import run_job

    inputs: SegmentInputs = options_from_args(SegmentInputs, args)
    opts: SegmentOptions = options_from_args(SegmentOptions, args)
    labels = options_from_args(common.LabelsOptions, args).read()
    source = common.model_source_from_args(args)
    popts: PredictorOptions = options_from_args(PredictorOptions, args)
    if opts.multiscale:
        refuse_geometry(popts, "--multiscale")
    writer = SegmentWriter(inputs.images, labels, opts, popts, common.resolved_precision(source, popts),
                           source.identity(), lambda: common.make_predictor(args, source, popts))
    return common.finish_batch(f"segment (into {opts.out})",
                               lambda: run_job(writer, overwrite=opts.overwrite, progress=not opts.quiet))
