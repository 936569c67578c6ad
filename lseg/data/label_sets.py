"""The class strings of every supported dataset: fresh lists whose index ``i`` names class ``i`` of the
matching reader (CLIP sees the raw string, so the spelling matters). ``label_files/`` holds copies of
public data (sources: ``docs/datasets.md``)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from lseg.errors import DatasetError, LabelError

__all__ = [
    "FEWSHOT_PASCAL_CLASSES", "VOC_CLASSES", "ade20k_847_labels", "ade20k_labels", "clean_fewshot_name",
    "coco_stuff_labels", "fewshot_labels", "fss_split_categories", "load_label_file", "pascal_context_labels",
    "read_package_file", "voc_labels",
]

LabelStyle = Literal["reference", "clean"]

# PASCAL VOC order (class 1..20; 0 is "background"), as the few-shot benchmarks write them.
FEWSHOT_PASCAL_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC_CLASSES: tuple[str, ...] = ("background", *FEWSHOT_PASCAL_CLASSES)

# Reference names that glue words together -> readable words (other names are plain words already).
_CLEAN_NAMES: dict[str, str] = {
    "diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv monitor",
    "trafficlight": "traffic light", "firehydrant": "fire hydrant", "stopsign": "stop sign",
    "parkingmeter": "parking meter", "sportsball": "sports ball", "baseballbat": "baseball bat",
    "baseballglove": "baseball glove", "tennisracket": "tennis racket", "wineglass": "wine glass",
    "hotdog": "hot dog", "cellphone": "cell phone", "teddybear": "teddy bear", "hairdrier": "hair drier",
}

_FSS_SPLITS = ("trn", "val", "test")


def read_package_file(name: str) -> str:
    """The text of a file shipped in ``lseg/data/label_files``."""
    return resources.files("lseg.data").joinpath("label_files", name).read_text(encoding="utf-8")


def _lines(name: str) -> list[str]:
    return [line for line in read_package_file(name).splitlines() if line.strip()]


@cache
def _ade20k(style: str) -> tuple[str, ...]:
    if style == "reference":
        # lang-seg LSegModule.get_labels: last comma field, then the text before the first ';'.
        rows = _lines("ade20k_objectInfo150.txt")[1:]
        return tuple(row.strip().split(",")[-1].split(";")[0] for row in rows)
    # CSAIL objectInfo150.txt, tab separated: the first synonym of Name ("coffee table, cocktail table"),
    # without the trailing spaces some rows carry ("bed ").
    rows = _lines("ade20k_objectInfo150_csail.txt")[1:]
    return tuple(row.split("\t")[-1].split(",")[0].strip() for row in rows)


def ade20k_labels(style: Literal["full", "reference"] = "full") -> list[str]:
    """The 150 ADE20K class strings: ``"full"`` (``"coffee table"``) or lang-seg's truncated
    ``"reference"`` strings (``"coffee"``, ``"screen"`` twice), which the official checkpoints used."""
    if style not in ("full", "reference"):
        raise LabelError(f"unknown ADE20K label style {style!r}; expected 'full' or 'reference'")
    return list(_ade20k(style))


def ade20k_847_labels() -> list[str]:
    """The 847 ADE20K-Full class strings (MaskFormer order, synonyms kept: ``"building, edifice"``)."""
    return _lines("ade20k_847.txt")


def voc_labels(style: LabelStyle = "clean") -> list[str]:
    """The 21 PASCAL VOC class strings (0 = ``"background"``), ``"clean"`` (``"dining table"``) or
    ``"reference"`` (``"diningtable"``)."""
    return [_style(name, style) for name in VOC_CLASSES]


def coco_stuff_labels() -> list[str]:
    """The 171 COCO-Stuff-164k class strings in train-id order (80 things, then 91 stuff)."""
    return _lines("coco_stuff171.txt")


def pascal_context_labels(num_classes: Literal[59, 459] = 59) -> list[str]:
    """PASCAL-Context class strings: 59 (mmseg order, no background) or 459 (alphabetical)."""
    if num_classes not in (59, 459):
        raise LabelError(f"PASCAL-Context has 59 or 459 classes, not {num_classes}")
    return _lines(f"pascal_context{num_classes}.txt")


@cache
def fss_split_categories(split: str) -> tuple[str, ...]:
    """FSS-1000 category folder names of one HSNet split, in file order (not sorted)."""
    if split not in _FSS_SPLITS:
        raise DatasetError(f"unknown FSS-1000 split {split!r}; expected one of {_FSS_SPLITS}")
    return tuple(_lines(f"fss1000_{split}.txt"))


def fewshot_labels(benchmark: Literal["pascal", "coco", "fss"], style: LabelStyle = "reference") -> list[str]:
    """Class strings of a few-shot benchmark by class id: ``"reference"``, what lang-seg feeds to CLIP
    (``"diningtable"``, ``"ac_wall"``), or ``"clean"`` (``"dining table"``, ``"ac wall"``)."""
    if benchmark == "pascal":
        names = list(FEWSHOT_PASCAL_CLASSES)
    elif benchmark == "coco":
        names = _lines("fewshot_coco.txt")
    elif benchmark == "fss":
        # lang-seg fewshot_fss.txt == sorted(trn) + sorted(val) + sorted(test); class id = position.
        names = [name for split in _FSS_SPLITS for name in sorted(fss_split_categories(split))]
    else:
        raise DatasetError(f"unknown few-shot benchmark {benchmark!r}; expected 'pascal', 'coco' or 'fss'")
    return [_style(name, style) for name in names]


def clean_fewshot_name(name: str) -> str:
    """Readable form of a reference name (``"diningtable"`` -> ``"dining table"``, ``"ac_wall"`` -> ``"ac wall"``)."""
    return _CLEAN_NAMES.get(name, name).replace("_", " ")


def _style(name: str, style: str) -> str:
    if style == "reference":
        return name
    if style == "clean":
        return clean_fewshot_name(name)
    raise LabelError(f"unknown label style {style!r}; expected 'reference' or 'clean'")


def load_label_file(path: str | Path) -> list[str]:
    """A user label file: one class string per line (line ``i`` = class ``i``), stripped; trailing blank
    lines dropped. Empty files, inner blank lines, ``#`` lines and repeated labels raise :class:`LabelError`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"label file not found: {path}")
    try:  # utf-8-sig: a byte-order mark (Windows editors) is not part of the first label
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelError(f"label file {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    lines = [line.strip() for line in text.rstrip().splitlines()]
    if not lines:
        raise LabelError(f"label file {path} is empty")
    if "" in lines:
        raise LabelError(f"label file {path} has a blank line at line {lines.index('') + 1}")
    comment = next((i for i, line in enumerate(lines) if line.startswith("#")), None)
    if comment is not None:  # as a class it would be wrong, as a comment it would shift the ids: refuse
        raise LabelError(f"label file {path}: line {comment + 1} starts with '#'; a dataset's label file has "
                         "no comments (line i is class i): remove the line")
    seen: dict[str, int] = {}
    for i, label in enumerate(lines):
        key = label.casefold()  # CLIP lower-cases text: "Dog" and "dog" would be the same class
        if key in seen:
            raise LabelError(f"label file {path}: {label!r} on line {i + 1} repeats line {seen[key] + 1}")
        seen[key] = i
    return lines
