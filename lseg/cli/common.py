"""Options several ``lseg`` commands share, and what they build: the model, the predictor, the labels.

The predictor settings are one typed config, :class:`PredictorOptions`, whose options
:func:`add_predictor_args` generates (:mod:`lseg.config_args`); the model source (a mutually
exclusive ``--checkpoint`` / ``--random-weights`` pair) and the labels (``--labels`` /
``--labels-file``) are option groups written out here, as argparse groups them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lseg.config_args import Flag, add_config_args, config_from_args
from lseg.errors import LSegError

__all__ = [
    "PREDICTOR_FLAGS",
    "RANDOM_WEIGHTS_SEED",
    "PredictorOptions",
    "add_arch_args",
    "add_labels_args",
    "add_model_args",
    "add_predictor_args",
    "finish_batch",
    "load_model_from_args",
    "make_predictor",
    "read_labels_arg",
    "spatial_block_from_args",
]

_logger = logging.getLogger("lseg")

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
    add_arch_args(p)


def add_arch_args(p: argparse.ArgumentParser) -> None:
    """The spatial-block options of official checkpoints (every model command, convert and info)."""
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


@dataclass(frozen=True)
class PredictorOptions:
    """The :class:`~lseg.inference.LSegPredictor` settings of the image commands (segment, features, demo).

    Attributes:
        size: long side of the working resolution; ``None``: native.
        crop_size, stride: sliding windows above ``size``.
        templates: prompt templates with one ``{}`` (averaged); empty: the raw label.
        precision: the image path's precision (:mod:`lseg.models.precision`).
        batch_size: images per forward.
        compile: ``torch.compile`` the image path.
    """

    size: int | None = 480
    crop_size: int = 480
    stride: int = 320
    templates: tuple[str, ...] = ()
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    batch_size: int = 4
    compile: bool = False


def none_if_zero(value: int | None) -> int | None:
    """``--size 0`` means "native resolution": ``None``."""
    return value or None


#: The command-line side of :class:`PredictorOptions`.
PREDICTOR_FLAGS = {
    "size": Flag("long side of the working resolution (0: native)", convert=none_if_zero),
    "crop_size": Flag("sliding-window size above --size (>= 32)"),
    "stride": Flag("sliding-window stride (1 to --crop-size)"),
    "templates": Flag('prompt template with one {}, e.g. "a photo of a {}." (repeatable: averaged; '
                      "default: the raw label, as the reference)", name="template", repeat=True,
                      convert=lambda v: tuple(v or ())),
    "precision": Flag("image path precision (auto: bf16 on CPUs with AMX/AVX512-BF16 and on recent "
                      "GPUs, fp16 on older GPUs, else fp32; text and similarity always fp32)"),
    "batch_size": Flag("images per forward (images of equal working size are batched)"),
    "compile": Flag("torch.compile the image path (GPU; the first batch takes a minute)"),
}


def add_predictor_args(p: argparse.ArgumentParser) -> None:
    """The :class:`PredictorOptions` options."""
    add_config_args(p, PredictorOptions, PREDICTOR_FLAGS)


def add_labels_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--labels", "-l", help='comma-separated labels, e.g. "dog, grass, other"')
    g.add_argument("--labels-file", metavar="FILE",
                   help="UTF-8 text file of labels separated by line breaks or commas (blank lines and "
                   "lines starting with # are ignored)")


def make_predictor(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The model of the shared options in a predictor with the :class:`PredictorOptions` of ``args``."""
    from lseg.inference import LSegPredictor

    opts: PredictorOptions = config_from_args(PredictorOptions, args, PREDICTOR_FLAGS)
    model = load_model_from_args(args)
    predictor = LSegPredictor(
        model, size=opts.size, crop_size=opts.crop_size, stride=opts.stride, templates=list(opts.templates) or None,
        precision=opts.precision, batch_size=opts.batch_size, compile=opts.compile,
    )
    how = " (auto)" if opts.precision == "auto" else ""
    print(f"lseg: running on {predictor.device} in {predictor.precision}{how}", file=sys.stderr)
    return predictor


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


def finish_batch(report, what: str) -> int:  # type: ignore[no-untyped-def]
    """Summary and failed files; exit 2 if the job stopped early (disk full...), 1 if files failed."""
    print(f"{what}: {report.summary()}", file=sys.stderr)
    for path, reason in report.failed:
        print(f"  failed: {path}: {reason}", file=sys.stderr)
    return 2 if report.stopped else 1 if report.failed else 0

