"""COCO-20i's per-class image lists: HSNet's pickles converted once to JSON (without running pickle
code), or derived from the masks."""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lseg.data.base import read_mask_array, require
from lseg.errors import DatasetError
from lseg.io import atomic_write

__all__ = ["convert_coco20i_splits", "derive_coco20i_lists", "read_coco20i_json"]


def read_coco20i_json(path: Path) -> dict[int, list[str]]:
    """A ``fold{i}.json`` as :func:`convert_coco20i_splits` writes it: class id -> image paths."""
    data = json.loads(require(path, "COCO-20i split", "file").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object mapping class id -> list of image paths")
    return {int(k): [str(v) for v in vals] for k, vals in data.items()}


def derive_coco20i_lists(root: Path, coco_split: str, class_ids: Sequence[int]) -> dict[int, list[str]]:
    """Class id -> ``"<coco_split>/<name>.jpg"`` of every mask in ``root/annotations/<coco_split>`` that
    shows the class, in file-name order (not necessarily HSNet's lists)."""
    mask_dir = require(root / "annotations" / coco_split, "COCO-20i masks")
    wanted = np.asarray(class_ids) + 1
    classwise: dict[int, list[str]] = {c: [] for c in class_ids}
    for mask in sorted(mask_dir.glob("*.png")):
        present = np.intersect1d(np.unique(read_mask_array(mask)), wanted)
        for v in present:
            classwise[int(v) - 1].append(f"{coco_split}/{mask.stem}.jpg")
    return classwise


class _DataOnlyUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global: plain containers, strings and numbers have their own
    opcodes, so only data loads and no code can run."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: only plain dict/list/str/int data is allowed"
        )


def _load_split_pickle(path: Path) -> dict[int, list[str]]:
    try:
        data = _DataOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DatasetError(f"cannot convert {path}: {e}") from e
    if not isinstance(data, Mapping) or not all(
        isinstance(k, int) and isinstance(v, list) and all(isinstance(x, str) for x in v)
        for k, v in data.items()
    ):
        raise DatasetError(f"{path} is not a dict of int -> list[str]")
    return {int(k): list(v) for k, v in data.items()}


def convert_coco20i_splits(pkl_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Convert HSNet's COCO-20i split pickles ``pkl_dir/{trn,val}/fold{0..3}.pkl`` (class id -> image
    paths; missing ones skipped) to ``out_dir/{trn,val}/fold{i}.json`` (list order kept: the episode
    sampler depends on it) with :class:`_DataOnlyUnpickler`, and return those files; pass ``out_dir`` as
    ``splits_dir`` to :class:`COCO20i`. :class:`DatasetError`: no pickle, or one holding other data."""
    pkl_dir, out_dir = Path(pkl_dir), Path(out_dir)
    written = []
    for split in ("trn", "val"):
        for fold in range(4):
            src = pkl_dir / split / f"fold{fold}.pkl"
            if not src.is_file():
                continue
            data = _load_split_pickle(src)
            dst = out_dir / split / f"fold{fold}.json"
            text = json.dumps({str(k): v for k, v in data.items()}, indent=0)
            atomic_write(dst, lambda p, text=text: p.write_text(text, encoding="utf-8"))
            written.append(dst)
    if not written:
        raise DatasetError(
            f"no COCO-20i split pickles found under {pkl_dir} (expected {{trn,val}}/fold{{0..3}}.pkl)"
        )
    return written
