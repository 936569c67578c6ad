""":class:`EvalConfig`, the options of ``lseg eval`` and :func:`lseg.eval.evaluate.evaluate` (importing it
costs no torch: ``lseg eval --help`` builds its options from it)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from lseg.inference.options import ADE20K_SCALES, check_templates, some_scales
from lseg.options import CheckedOptions, OptionError, Precision, option

__all__ = ["ADE20K_SCALES", "EvalConfig", "Protocol"]

Protocol = Literal["semantic", "open-vocab", "fewshot"]


def _template_args(given: list[str]) -> tuple[str, ...]:
    """``--template`` texts, ``default`` standing for :data:`lseg.labels.DEFAULT_TEMPLATES`."""
    from lseg.labels import DEFAULT_TEMPLATES

    return tuple(text for t in given for text in (DEFAULT_TEMPLATES if t == "default" else (t,)))


def check_dataset_kwargs(value: dict[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Reader keywords other than those the registry passes from their own options (and ``extra``)."""
    own = [k for k in ("root", "split", "fold", "transform", "label_style", *extra) if k in value]
    if own:
        raise OptionError(f"`dataset_kwargs` holds {', '.join(own)}: set {own[0]} with its own option "
                          f"(--{own[0].replace('_', '-')}), not among the reader's keywords")
    return value


def _fold_arg(value: Any) -> Any:
    """``--fold all``: the four folds; ``0,2``: read as a tuple of integers by the type check."""
    return (0, 1, 2, 3) if isinstance(value, str) and value.strip().lower() == "all" else value


def _folds(value: tuple[int, ...]) -> tuple[int, ...]:
    if not value:
        raise OptionError("`folds` must name at least one fold (0..3)")
    return value


@dataclass(frozen=True)
class EvalConfig(CheckedOptions):
    """What to evaluate, and how (protocols and geometry: ``docs/training.md``).

    Attributes:
        protocol: semantic, open-vocab or fewshot (``None``: fewshot for the few-shot datasets, else semantic).
        dataset: ade20k, pascal_voc, voc20, pc59, pc459, coco_stuff, ade847 or folder (lseg.data.registry);
            few-shot: pascal5i, coco20i or fss1000.
        data_root: the dataset folder.
        split: split to evaluate (``None``: val; folder: every image; few-shot: the reference's test episodes).
        dataset_kwargs: extra reader arguments (on the command line a YAML mapping, e.g. "{aug: true}").
        label_style: class-string style: ADE20K full or reference, VOC and few-shot clean or reference
            (``None``: the reader's default for semantic and fewshot, the readable form for open-vocab).
        templates: prompt templates with one {} ("default": lseg.labels.DEFAULT_TEMPLATES; none: the raw
            class string, as the reference).
        multiscale: reference multi-scale + flip evaluation (``scales``, ``base_size``).
        size: single-scale long side (``None``, or 0 on the command line: the original resolution).
        crop_size: network input crop / sliding-window size.
        stride_rate: sliding-window stride as a fraction of ``crop_size``.
        scales: multi-scale factors of ``base_size`` (comma-separated on the command line).
        base_size: multi-scale base long side.
        flip: add the horizontally flipped prediction (``None``: with ``multiscale`` only).
        folds: few-shot folds, 0 to 3, ignored for FSS-1000 (on the command line a comma list or "all").
        fewshot_size: few-shot square resize (aspect not kept).
        num_episodes: few-shot episodes per fold (``None``: the reference's, 1000 for PASCAL/COCO), ignored
            for FSS-1000 (one episode per test image).
        seed: COCO-20i episode sampler seed (the reference's fix_randseed(0)).
        batch_size: few-shot episodes per forward (semantic evaluation runs one image at a time).
        num_workers: DataLoader workers per process.
        max_samples: evaluate only the first N images / episodes (debugging; not a benchmark number).
        precision: the image path's precision (fp32: the reference's numbers; auto: bf16 where the
            CPU/GPU computes it natively; int8: the ViT's linear layers, CPU); casts the model in place.
        progress: tqdm bar on rank 0 (the command line's ``--quiet`` turns it off)."""

    protocol: Protocol | None = None
    dataset: str = option("ade20k", short="-d", required=True)
    data_root: str | None = option(None, required=True)
    split: str | None = None
    # --seed is the COCO-20i sampler's seed
    dataset_kwargs: dict[str, Any] = option(default_factory=dict, check=partial(check_dataset_kwargs, extra=("seed",)))  # noqa: RUF009
    label_style: str | None = None
    templates: tuple[str, ...] = option((), flag="template", metavar="TEMPLATE", repeat=True, parse=_template_args,
                                        check=check_templates)
    multiscale: bool = False
    size: int | None = option(480, min=1, parse=lambda v: v or None)
    crop_size: int = option(480, min=32)
    stride_rate: float = option(2 / 3, gt=0, max=1)
    scales: tuple[float, ...] = option(ADE20K_SCALES, gt=0, check=some_scales)
    base_size: int = option(520, min=32)
    flip: bool | None = None
    folds: tuple[int, ...] = option((0,), flag="fold", min=0, max=3, parse=_fold_arg, check=_folds)
    fewshot_size: int = option(480, min=1)
    num_episodes: int | None = option(None, min=1)
    seed: int = 0
    batch_size: int = option(1, min=1)
    num_workers: int = option(2, min=0)
    max_samples: int | None = option(None, min=1)
    precision: Precision = "fp32"
    progress: bool = option(True, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        from lseg.data.registry import FEWSHOT_DATASETS, canonical_name  # the readers: only when needed

        is_fewshot = canonical_name(self.dataset) in FEWSHOT_DATASETS  # an unknown name: DatasetError
        if self.protocol is None:
            object.__setattr__(self, "protocol", "fewshot" if is_fewshot else "semantic")
        elif is_fewshot != (self.protocol == "fewshot"):
            raise OptionError(f"`dataset` {self.dataset!r} goes with `protocol` "
                              f"{'fewshot' if is_fewshot else 'semantic or open-vocab'}, not {self.protocol!r}")

    @property
    def use_flip(self) -> bool:
        return self.multiscale if self.flip is None else self.flip
