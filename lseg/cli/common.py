"""Options several ``lseg`` commands share, each group one typed config (:mod:`lseg.options`), and what
they build: the model (:class:`ModelSource`), the predictor, the labels (:class:`LabelsOptions`)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lseg.errors import LSegError
from lseg.inference.options import PredictorOptions
from lseg.options import CheckedOptions, OptionError, add_options, option, options_from_args

if TYPE_CHECKING:
    from collections.abc import Callable

    from lseg.jobs.engine import Report
    from lseg.models.config import SpatialBlockConfig

__all__ = [
    "RANDOM_WEIGHTS_SEED", "ArchOptions", "LabelsOptions", "ModelSource", "add_model_args", "checked_device",
    "finish_batch", "load_source_model", "make_predictor", "model_source_from_args", "registered",
]

_logger = logging.getLogger("lseg")

#: The seed of ``--random-weights`` models (a resumed batch job must not mix two random networks).
RANDOM_WEIGHTS_SEED = 0


@dataclass(frozen=True)
class ArchOptions(CheckedOptions):
    """The spatial block of an official checkpoint, which its shapes cannot tell.

    Attributes:
        arch_option: official checkpoints with a spatial block: 1 bottleneck, 2 depthwise.
        block_depth: the block's repetitions (with --arch-option).
        activation: the block's activation (with --arch-option; default lrelu).
    """

    arch_option: Literal[1, 2] | None = None
    block_depth: int | None = option(None, min=1)
    activation: Literal["relu", "lrelu", "tanh"] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.arch_option is None) != (self.block_depth is None) or self.activation and not self.arch_option:
            raise OptionError("give `arch_option` and `block_depth` together (an official checkpoint's spatial "
                              "block; `activation` only with them)")

    def spatial_block(self) -> SpatialBlockConfig | None:
        """The block named (by ``arch_option`` and ``block_depth``), or ``None``."""
        from lseg.models.config import SpatialBlockConfig  # imports torch: only when used

        if self.arch_option is None or self.block_depth is None:
            return None
        return SpatialBlockConfig(self.arch_option, self.block_depth, self.activation or "lrelu")


def registered(name: str, field: str = "random_weights") -> str:
    """``name`` if it is a registered model, else :class:`OptionError` naming ``field``."""
    from lseg.models import get_config

    try:
        get_config(name)
    except LSegError as e:
        raise OptionError(f"`{field}`: {e}") from None
    return name


def checked_device(name: str) -> str:
    """The ``check`` of a ``device`` option."""
    from lseg.models.devices import check_device

    try:
        check_device(name, "`device`")
    except LSegError as e:
        raise OptionError(str(e)) from None
    return name


@dataclass(frozen=True)
class ModelSource(CheckedOptions):
    """Which model a command runs, and where.

    Attributes:
        checkpoint: released weights name (lseg weights list), lseg folder, .safetensors, official lang-seg
            .ckpt, or Hub repo id owner/name (unset: segment, features and demo take the released weights
            demo; query the store's own).
        random_weights: use a randomly initialised registered model, e.g. lseg_tiny_test (seeded: the same
            network every run; the output is noise; for trying the tool).
        device: cpu, cuda, cuda:N (default: cuda if available, else cpu).
        arch: the spatial block of an official checkpoint.
    """

    checkpoint: str | None = option(None, short="-c", exclusive="model")
    random_weights: str | None = option(None, metavar="MODEL", exclusive="model", check=registered)
    device: str | None = option(None, check=checked_device)
    arch: ArchOptions = field(default_factory=ArchOptions)
    defaulted: bool = option(False, cli=False)  # checkpoint is the released default, no --checkpoint given

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.random_weights and self.arch.arch_option:  # the registered network has no block
            raise OptionError("`arch_option` is for official checkpoints, not `random_weights`")

    def given(self) -> bool:
        return bool(self.checkpoint or self.random_weights)

    def identity(self) -> dict[str, Any]:
        """What identifies the weights in output records, without loading them."""
        from lseg.jobs.records import model_identity
        from lseg.pretrained.released import WEIGHTS

        if self.checkpoint in WEIGHTS and not self.random_weights:  # as it loads: not a folder so named
            return {"checkpoint": self.checkpoint}
        return model_identity(self.checkpoint, self.random_weights, RANDOM_WEIGHTS_SEED)

    def device_name(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")


def add_model_args(p: argparse.ArgumentParser, required: bool = True,
                   pretrained_default: bool = False, skip: tuple[str, ...] = ()) -> None:
    """The :class:`ModelSource` options but ``skip``; a model is needed if ``required`` and not
    ``pretrained_default``."""
    add_options(p, ModelSource, skip)
    p.set_defaults(model_required=required and not pretrained_default, pretrained_default=pretrained_default)


def model_source_from_args(args: argparse.Namespace) -> ModelSource:
    """The :class:`ModelSource` of ``args``; refused when the command needs one and none is given."""
    source: ModelSource = options_from_args(ModelSource, args)
    if getattr(args, "model_required", False) and not source.given():
        raise LSegError(
            "give the model: --checkpoint NAME_OR_PATH (lseg weights list) or --random-weights MODEL")
    if getattr(args, "pretrained_default", False) and not source.given():  # named in records and stores
        from lseg.pretrained.released import DEFAULT

        source = replace(source, checkpoint=DEFAULT, defaulted=True)
    return source


def load_source_model(source: ModelSource):  # type: ignore[no-untyped-def]
    """The model of ``source`` on its device, in eval mode (the released default, when it stands for no
    ``--checkpoint``, said on stderr)."""
    import torch

    from lseg.pretrained.load import create_model, load_model
    from lseg.pretrained.released import DEFAULT, get_weights

    if source.random_weights:
        _logger.warning("using random weights for %s: the output is noise", source.random_weights)
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG state
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = create_model(source.random_weights)
    else:  # a checkpoint: model_source_from_args refused or defaulted none, query takes its store's
        if source.defaulted:
            print(f"no --checkpoint given: using the released weights {DEFAULT!r} "
                  f"({get_weights(DEFAULT).network}); `lseg weights list` shows the others", file=sys.stderr)
        model = load_model(source.checkpoint, spatial_block=source.arch.spatial_block())
    return model.to(source.device_name()).eval()


def make_predictor(args: argparse.Namespace, source: ModelSource | None = None,
                   options: PredictorOptions | None = None):  # type: ignore[no-untyped-def]
    """The model of the command's options in a predictor (which may change the model in place)."""
    from lseg.inference.predictor import LSegPredictor

    source = source or model_source_from_args(args)
    options = options or options_from_args(PredictorOptions, args)
    model = load_source_model(source)
    predictor = LSegPredictor(model, options=options, inplace=True)
    how = " (auto)" if options.precision == "auto" else ""
    print(f"lseg: running on {predictor.device} in {predictor.precision}{how}", file=sys.stderr)
    return predictor


def resolved_precision(source: ModelSource, options: PredictorOptions) -> str:
    """The image path's precision on the command's device, without building the model."""
    from lseg.models.precision import resolve_precision

    return resolve_precision(options.precision, source.device_name())


@dataclass(frozen=True)
class LabelsOptions:
    """The labels of a segmentation command (one of the two).

    Attributes:
        labels: comma-separated labels, e.g. "dog, grass, other" (a label with a comma in double quotes:
            '"salt, pepper", sky').
        labels_file: UTF-8 text file of labels separated by line breaks or commas (blank lines and lines
            starting with # are ignored).
    """

    labels: str | None = option(None, short="-l", exclusive="labels", required=True)
    labels_file: str | None = option(None, metavar="FILE", exclusive="labels", required=True)

    def read(self) -> list[str]:
        """The labels, parsed and checked."""
        from lseg.labels import parse_labels

        if self.labels_file is not None:
            path = Path(self.labels_file).expanduser()
            source = f"--labels-file {path}"
            try:
                text = path.read_text(encoding="utf-8-sig")
            except FileNotFoundError:
                raise LSegError(f"{source}: no such file") from None
            except UnicodeDecodeError:
                raise LSegError(f"{source} is not UTF-8 text") from None
            except OSError as e:
                raise LSegError(f"{source}: {e.strerror or e}") from None
            lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            parsed = parse_labels("\n".join(lines))
            if 1 < len(lines) < len(parsed):  # a line split at commas: in a dataset's labels.txt it is one class
                from lseg.console import warn

                split = next(ln.strip() for ln in lines if len(parse_labels(ln)) > 1)
                warn(f"{source}: the line {split!r} gives {len(parse_labels(split))} labels (split at commas); a "
                     'training label file reads it as one class: put it in double quotes to keep it one label')
        else:
            source = "--labels"
            parsed = parse_labels(self.labels or "")
            if len(parsed) == 1 and (Path(parsed[0]).expanduser().is_file() or
                                     Path(parsed[0]).suffix.lower() in (".txt", ".csv", ".json")):
                raise LSegError(f"--labels {parsed[0]!r} looks like a file name: to read labels from a file "
                                f"use --labels-file {parsed[0]}")
        if len(parsed) == 1:
            from lseg.console import warn

            warn(f"{source} gives one label ({parsed[0]!r}): every pixel gets it; add the others and a "
                 "catch-all such as 'other'")
        return parsed


def finish_batch(what: str, job: Callable[[], Report]) -> int:
    """Run ``job``; print its summary (also when Ctrl-C stopped it) and the failed inputs; the exit code
    (:func:`lseg.jobs.engine.exit_code`)."""
    from lseg.console import say
    from lseg.jobs.engine import exit_code, reported

    report = reported(job)
    say(f"{what}: {report.summary()}")
    for path, reason in report.failed:
        say(f"  failed: {path}: {reason}")
    return exit_code(report)
