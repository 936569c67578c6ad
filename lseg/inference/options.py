"""The predictor's and ``lseg segment``'s settings, declared once for the Python API and the command
line (:mod:`lseg.options`); importing this module costs no torch."""

from __future__ import annotations

from dataclasses import dataclass

from lseg.io.checks import output_folder
from lseg.options import CheckedOptions, OptionError, Precision, check_compile, field_defaults, option

__all__ = ["ADE20K_SCALES", "PredictorOptions", "SegmentOptions"]

#: The reference's multi-scale evaluation scales (ADE20K and the others; spec section 7).
ADE20K_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def some_scales(value: tuple[float, ...]) -> tuple[float, ...]:
    if not value:
        raise OptionError("`scales` must name at least one scale")
    return value


def check_templates(value: tuple[str, ...]) -> tuple[str, ...]:
    from lseg.errors import LSegError
    from lseg.labels import validate_templates

    try:
        return tuple(validate_templates(list(value))) if value else ()
    except LSegError as e:
        raise OptionError(f"`templates`: {e}") from None


@dataclass(frozen=True)
class PredictorOptions(CheckedOptions):
    """How the predictor runs (:class:`~lseg.inference.LSegPredictor`; ``lseg segment``, ``features``,
    ``demo``).

    Attributes:
        size: long side of the working resolution (``None``, or 0 on the command line: native).
        crop_size: sliding-window size above ``size`` (>= 32).
        stride: sliding-window stride, 1 to ``crop_size`` (default: 2/3 of the crop rounded down to even,
            320 for 480).
        templates: prompt templates with one ``{}``, e.g. ``"a photo of a {}."``, averaged per label
            (default: the raw label, as the reference).
        precision: image path precision (auto: bf16 on CPUs with AMX/AVX512-BF16 and on recent GPUs,
            fp16 on older GPUs, else fp32; int8: the ViT's linear layers on a CPU's int8 kernels, the
            rest as auto; text and similarity always fp32).
        batch_size: images per forward on a GPU (images of equal working size are batched; a CPU runs
            them one by one).
        compile: torch.compile the image path, with inductor's freezing on a CPU (the first batch
            compiles: ~30 s for ViT-L/16 on a CPU; not with int8).
    """

    size: int | None = option(480, min=1, parse=lambda v: v or None)
    crop_size: int = option(480, min=32)
    stride: int | None = option(None, min=1)
    templates: tuple[str, ...] = option((), flag="template", repeat=True, check=check_templates)
    precision: Precision = "auto"
    batch_size: int = option(4, min=1)
    compile: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_compile(self.compile, (self.precision,))
        if self.stride is not None and self.stride > self.crop_size:
            raise OptionError(f"`stride` ({self.stride}) must not exceed `crop_size` ({self.crop_size}): windows "
                              "would leave gaps")

    @property
    def window_stride(self) -> int:
        """The stride in use: given, or 2/3 of the crop rounded down to even (windows land on whole
        half-resolution pixels)."""
        return self.stride if self.stride is not None else self.crop_size * 2 // 3 // 2 * 2


def refuse_geometry(options: PredictorOptions, who: str) -> None:
    """Refuse ``size``, ``crop_size`` and ``stride`` set (not their defaults) for ``who``, whose geometry is
    its own (a command-line check: the options are named as flags)."""
    defaults = field_defaults(PredictorOptions)
    if any(getattr(options, k) != defaults[k] for k in ("size", "crop_size", "stride")):
        raise OptionError(f"--size, --crop-size and --stride set the single-pass geometry; {who} has its own")


@dataclass(frozen=True)
class SegmentOptions(CheckedOptions):
    """What ``lseg segment`` (and :func:`lseg.segment_folder`) writes per image.

    Attributes:
        out: the output folder.
        scores: also write per-label probabilities (.npz, fp16).
        heatmaps: also write one probability heatmap per label over the image, with its name and a
            colour bar (<stem>_heat_<index>_<label>.png).
        multiscale: reference multi-scale + flip evaluation (slow; its own geometry: lseg.MultiScaleConfig).
        alpha: overlay opacity, 0 to 1.
        legend: draw the legend beside the overlay (False: the overlay alone, at the photo's size).
        overwrite: redo every image, even those already done, and replace files lseg did not write.
        quiet: no progress bar.
    """

    out: str = option("lseg-output", short="-o", check=output_folder)
    scores: bool = False
    heatmaps: bool = False
    multiscale: bool = False
    alpha: float = option(0.5, min=0, max=1)
    legend: bool = option(True, flag="no-legend", help="the overlay alone, at the photo's size, without the legend")
    overwrite: bool = False
    quiet: bool = option(False, short="-q")
