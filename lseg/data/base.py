"""File readers and the ``SegmentationDataset`` base class (sample format: :mod:`lseg.data`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from lseg.errors import DatasetError, ImageLoadError
from lseg.io.pixels import convert_mode

__all__ = [
    "IGNORE_INDEX", "IMAGE_EXTENSIONS", "JointTransform", "SampleRecord", "SegmentationDataset", "build_lut",
    "read_image", "read_mask_array", "read_split_file", "require",
]

IGNORE_INDEX = 255
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# (image uint8 (3, H, W), mask int64 (H, W)) -> (image, mask); lseg.data.transforms builds these.
JointTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def require(path: Path, what: str, kind: Literal["directory", "file"] = "directory") -> Path:
    """``path``, or :class:`DatasetError` ``<what>: <kind> not found: <path>``."""
    if not (path.is_file() if kind == "file" else path.is_dir()):
        raise DatasetError(f"{what}: {kind} not found: {path}")
    return path


def descend(root: Path, *candidates: str) -> Path:
    """The dataset folder: ``root`` itself or its first existing child ``root/<candidate>``."""
    return next((root / name for name in candidates if (root / name).is_dir()), root)


def read_split_file(path: Path) -> list[str]:
    """The ids of a split list: one per line, or DeepLab's ``/JPEGImages/<id>.jpg /Seg.../<id>.png`` pairs."""
    try:  # utf-8-sig: a byte-order mark is not part of the first id
        text = require(path, "split list", "file").read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"split list {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    rows = map(str.split, text.splitlines())
    return [PurePosixPath(cols[0]).stem if len(cols) > 1 else cols[0] for cols in rows if cols]


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as an RGB ``uint8`` tensor ``(3, H, W)``, converted as :func:`lseg.io.load_image`
    does (16-bit ``>> 8``, alpha composited onto white) but without EXIF rotation (as the masks)."""
    try:
        with Image.open(path) as im:
            arr = convert_mode(im, str(path))
    except (OSError, ValueError, ImageLoadError) as e:
        raise DatasetError(f"cannot read image {path}: {e}") from e
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def read_mask_array(path: str | Path) -> np.ndarray:
    """An index mask as an integer array ``(H, W)``, without colour conversion (palette PNGs give
    their indices)."""
    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA"):
                raise DatasetError(
                    f"mask {path} is a colour image (mode {im.mode}); expected a single-channel index "
                    "or palette image holding class indices"
                )
            arr = np.array(im)
    except OSError as e:
        raise DatasetError(f"cannot read mask {path}: {e}") from e
    if arr.ndim != 2:
        raise DatasetError(f"mask {path} has shape {arr.shape}; expected (H, W)")
    return arr.astype(np.uint8) if arr.dtype == bool else arr


def load_pair(image_path: Path, mask_path: Path, mask: torch.Tensor,
              transform: JointTransform | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The image of ``mask`` (checked to be its size), then both through ``transform``."""
    image = read_image(image_path)
    if tuple(image.shape[-2:]) != tuple(mask.shape):
        raise DatasetError(f"image {image_path} is {tuple(image.shape[-2:])} (H, W) but its mask {mask_path} "
                           f"is {tuple(mask.shape)}")
    return (image, mask) if transform is None else transform(image, mask)


def build_lut(mapping: dict[int, int], size: int = 256, default: int = IGNORE_INDEX) -> np.ndarray:
    """A stored value -> class lookup table of length ``size``: ``mapping``, every other value ``default``."""
    lut = np.full(size, default, dtype=np.int64)
    lut[list(mapping)] = list(mapping.values())
    return lut


@dataclass(frozen=True)
class SampleRecord:
    """One (image, mask) file pair."""

    image: Path
    mask: Path


class SegmentationDataset(Dataset):
    """Base class: (image, mask) file pairs (``records``), the class strings (``labels[i]`` names class
    ``i``), an optional joint ``transform`` applied last, and ``lut``, mapping stored mask values to
    class indices or ``ignore_index``."""

    ignore_index: int = IGNORE_INDEX

    def __init__(self, records: Sequence[SampleRecord], labels: Sequence[str], lut: np.ndarray,
                 transform: JointTransform | None = None) -> None:
        if len(records) == 0:
            raise DatasetError(f"{type(self).__name__}: no samples found")
        self.records = list(records)
        self.labels = list(labels)
        self.transform = transform
        self._lut = lut

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return len(self.records)

    def map_mask(self, arr: np.ndarray, path: Path) -> torch.Tensor:
        """Map stored mask values ``arr`` (from file ``path``) to class indices / ``ignore_index``."""
        if arr.dtype.kind not in "ui" or arr.size == 0:
            raise DatasetError(f"mask {path} has dtype {arr.dtype}; expected unsigned integers")
        vmax = int(arr.max())
        if int(arr.min()) < 0 or vmax >= len(self._lut):
            raise DatasetError(
                f"mask {path} holds value {vmax if vmax >= len(self._lut) else int(arr.min())}, outside "
                f"the 0..{len(self._lut) - 1} range {type(self).__name__} expects"
            )
        return torch.from_numpy(self._lut[arr])

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        mask = self.map_mask(read_mask_array(rec.mask), rec.mask)
        image, mask = load_pair(rec.image, rec.mask, mask, self.transform)
        return {"image": image, "mask": mask, "path": str(rec.image)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={self.num_classes}, ignore_index={self.ignore_index})"


def pair_by_stem(image_dir: Path, mask_dir: Path, stems: Sequence[str] | None, image_exts: Sequence[str],
                 mask_suffix: str) -> list[SampleRecord]:
    """Pair ``image_dir/<stem><ext>`` (the first of ``image_exts`` found) with
    ``mask_dir/<stem><mask_suffix>`` for ``stems`` (``None``: every mask)."""
    if stems is None:
        stems = sorted(p.name[: -len(mask_suffix)] for p in mask_dir.glob(f"*{mask_suffix}") if p.is_file())
    records = []
    for stem in stems:
        mask = mask_dir / f"{stem}{mask_suffix}"
        if not mask.is_file():
            raise DatasetError(f"missing mask for {stem!r}: {mask}")
        image = next((p for p in (image_dir / f"{stem}{ext}" for ext in image_exts) if p.is_file()), None)
        if image is None:
            raise DatasetError(f"missing image for {stem!r}: {image_dir / (stem + image_exts[0])}")
        records.append(SampleRecord(image=image, mask=mask))
    return records
