"""Options several ``lseg`` commands share, and what they build: the model, the predictor, the labels.

Each group is one typed config whose options :mod:`lseg.config_args` generates: the model source
(:class:`ModelSource`: a mutually exclusive ``--checkpoint`` / ``--random-weights`` pair, the device
and the spatial block of official checkpoints, :class:`ArchOptions`), the labels
(:class:`LabelsOptions`: ``--labels`` or ``--labels-file``) and the predictor settings
(:class:`PredictorOptions`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lseg.config_args import Flag, add_config_args, config_from_args
from lseg.errors import LSegError

if TYPE_CHECKING:
    from lseg.models.config import SpatialBlockConfig

__all__ = [
    "ARCH_FLAGS",
    "LABELS_FLAGS",
    "PREDICTOR_FLAGS",
    "RANDOM_WEIGHTS_SEED",
    "ArchOptions",
    "LabelsOptions",
    "ModelSource",
    "PredictorOptions",
    "add_arch_args",
    "add_labels_args",
    "add_model_args",
    "add_predictor_args",
    "finish_batch",
    "load_model_from_args",
    "load_source_model",
    "make_predictor",
    "model_source_flags",
    "model_source_from_args",
    "read_labels_arg",
    "spatial_block_from_args",
]

_logger = logging.getLogger("lseg")

#: The seed of ``--random-weights`` models: the same command gives the same network every time
#: (a resumed batch job must not mix two random networks).
RANDOM_WEIGHTS_SEED = 0


@dataclass(frozen=True)
class ArchOptions:
    """The spatial block of an official checkpoint, which its shapes cannot tell (every model command,
    ``convert`` and ``info``).

    Attributes:
        arch_option: 1 bottleneck, 2 depthwise; ``None``: no block named.
        block_depth: the block's repetitions.
        activation: the block's activation; ``None``: ``lrelu``.
    """

    arch_option: Literal[1, 2] | None = None
    block_depth: int | None = None
    activation: Literal["relu", "lrelu", "tanh"] | None = None

    def spatial_block(self) -> SpatialBlockConfig | None:
        """One :class:`SpatialBlockConfig`, or ``None`` when the options do not name a block (both of
        ``arch_option`` and ``block_depth`` are needed)."""
        from lseg.models.config import SpatialBlockConfig  # lseg.models imports torch: only when used

        if self.arch_option is None or self.block_depth is None:
            return None
        return SpatialBlockConfig(self.arch_option, self.block_depth, self.activation or "lrelu")


#: The command-line side of :class:`ArchOptions`.
ARCH_FLAGS = {
    "arch_option": Flag("official checkpoints with a spatial block: 1 bottleneck, 2 depthwise"),
    "block_depth": Flag("with --arch-option"),
    "activation": Flag("with --arch-option"),
}


@dataclass(frozen=True)
class ModelSource:
    """Which model a command runs, and where.

    Attributes:
        checkpoint: released weights name, lseg folder, .safetensors, official .ckpt or Hub repo id.
        random_weights: a registered model name, randomly initialised (seeded: :data:`RANDOM_WEIGHTS_SEED`).
        device: ``cpu``, ``cuda``, ``cuda:N``; ``None``: cuda if available, else cpu.
        arch: the spatial block of an official checkpoint.
        pretrained_default: neither ``checkpoint`` nor ``random_weights``: the released weights
            :data:`lseg.weights.DEFAULT` (the command says so); otherwise one of them is required.
    """

    checkpoint: str | None = None
    random_weights: str | None = None
    device: str | None = None
    arch: ArchOptions = ArchOptions()
    pretrained_default: bool = False


def model_source_flags(required: bool = True, pretrained_default: bool = False) -> dict[str, Flag]:
    """The command-line side of :class:`ModelSource` (``arch``: :data:`ARCH_FLAGS`): one of
    ``--checkpoint`` / ``--random-weights`` is required unless ``required`` is false or the command
    falls back to the released weights (``pretrained_default``, said in ``--checkpoint``'s help)."""
    from lseg.weights import DEFAULT

    default = f" (default: the released weights {DEFAULT})" if pretrained_default else ""
    needed = required and not pretrained_default
    return {
        "checkpoint": Flag("released weights name (lseg weights list), lseg folder, .safetensors, official "
                           f"lang-seg .ckpt, or Hub repo id owner/name{default}", aliases=("-c",),
                           exclusive="model", required=needed),
        "random_weights": Flag("use a randomly initialised registered model, e.g. lseg_tiny_test (seeded: the same "
                               "network every run; the output is noise; for trying the tool)", metavar="MODEL",
                               exclusive="model", required=needed),
        "device": Flag("cpu, cuda, cuda:N (default: cuda if available, else cpu)"),
    }


def add_model_args(p: argparse.ArgumentParser, required: bool = True, pretrained_default: bool = False) -> None:
    """The :class:`ModelSource` options (shared by every model command); read them back with
    :func:`model_source_from_args`."""
    add_config_args(p, ModelSource, model_source_flags(required, pretrained_default))
    p.set_defaults(pretrained_default=pretrained_default)
    add_arch_args(p)


def add_arch_args(p: argparse.ArgumentParser) -> None:
    """The :class:`ArchOptions` options (every model command, convert and info)."""
    add_config_args(p, ArchOptions, ARCH_FLAGS)


def spatial_block_from_args(args: argparse.Namespace) -> SpatialBlockConfig | None:
    """The :class:`ArchOptions` of ``args`` as one :class:`SpatialBlockConfig` (or ``None``)."""
    arch: ArchOptions = config_from_args(ArchOptions, args, ARCH_FLAGS)
    return arch.spatial_block()


def model_source_from_args(args: argparse.Namespace) -> ModelSource:
    """The :class:`ModelSource` of the shared options in ``args``."""
    computed = {"arch": config_from_args(ArchOptions, args, ARCH_FLAGS),
                "pretrained_default": getattr(args, "pretrained_default", False)}
    source: ModelSource = config_from_args(ModelSource, args, model_source_flags(), computed)
    return source


def load_model_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Build the model the shared options describe (on ``args.device``)."""
    return load_source_model(model_source_from_args(args))


def load_source_model(source: ModelSource):  # type: ignore[no-untyped-def]
    """Build the model of ``source`` on its device (eval mode)."""
    import torch

    from lseg.loading import create_model, load_model

    device = source.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if source.random_weights:
        _logger.warning("using random weights for %s: the output is noise", source.random_weights)
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG state
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = create_model(source.random_weights)
    else:
        checkpoint = source.checkpoint
        if checkpoint is None and source.pretrained_default:
            from lseg.weights import DEFAULT, get_weights

            checkpoint = DEFAULT
            entry = get_weights(checkpoint)
            print(f"no --checkpoint given: using the released weights {checkpoint!r} ({entry.network}); "
                  "`lseg weights list` shows the others", file=sys.stderr)
        model = load_model(checkpoint, spatial_block=source.arch.spatial_block())
    return model.to(device).eval()


@dataclass(frozen=True)
class PredictorOptions:
    """The :class:`~lseg.inference.LSegPredictor` settings of the image commands (segment, features, demo).

    Attributes:
        size: long side of the working resolution; ``None``: native.
        crop_size, stride: sliding windows above ``size`` (stride ``None``: 2/3 of the crop, 320 for 480).
        templates: prompt templates with one ``{}`` (averaged); empty: the raw label.
        precision: the image path's precision (:mod:`lseg.models.precision`).
        batch_size: images per forward.
        compile: ``torch.compile`` the image path.
    """

    size: int | None = 480
    crop_size: int = 480
    stride: int | None = None
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
    "stride": Flag("sliding-window stride (1 to --crop-size; default 2/3 of --crop-size, 320 for 480)"),
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


@dataclass(frozen=True)
class LabelsOptions:
    """The labels of a segmentation command: one of the two is given (``validate_args`` reads them
    into one list: :func:`read_labels_arg`).

    Attributes:
        labels: comma-separated labels.
        labels_file: a UTF-8 text file of labels.
    """

    labels: str | None = None
    labels_file: str | None = None


#: The command-line side of :class:`LabelsOptions`.
LABELS_FLAGS = {
    "labels": Flag('comma-separated labels, e.g. "dog, grass, other"', aliases=("-l",), exclusive="labels",
                   required=True),
    "labels_file": Flag("UTF-8 text file of labels separated by line breaks or commas (blank lines and "
                        "lines starting with # are ignored)", metavar="FILE", exclusive="labels", required=True),
}


def add_labels_args(p: argparse.ArgumentParser) -> None:
    """The :class:`LabelsOptions` options (one of them required)."""
    add_config_args(p, LabelsOptions, LABELS_FLAGS)


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

