"""Common sample format, file readers and the ``SegmentationDataset`` base class.

Every reader in :mod:`lseg.data` returns samples of the same shape::

    {"image": uint8 tensor (3, H, W) RGB,
     "mask":  int64 tensor (H, W), class indices 0..C-1, ``ignore_index`` (255) where unlabelled,
     "path":  str, the image file}

**Ignore convention.** We mark unlabelled / void / padded pixels with **255** (``IGNORE_INDEX``), the
value our loss (``CrossEntropyLoss(ignore_index=255)``) and metrics skip. The reference (lang-seg /
PyTorch-Encoding) uses ``-1`` instead; the pixels are the same, only the marker differs. The one
exception is PASCAL-Context-459, where 255 is a real class and the marker is 65535 (see
:class:`lseg.data.PascalContext459`); always read ``dataset.ignore_index``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from lseg.errors import DatasetError

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_EXTENSIONS",
    "JointTransform",
    "SampleRecord",
    "SegmentationDataset",
    "build_lut",
    "read_image",
    "read_mask_array",
    "read_split_file",
    "require_dir",
    "require_file",
]

IGNORE_INDEX = 255
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# (image uint8 (3,H,W), mask int64 (H,W)) -> (image, mask); lseg.data.transforms builds these.
JointTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise a ``DatasetError`` naming it."""
    if not path.is_dir():
        raise DatasetError(f"{what}: directory not found: {path}")
    return path


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise a ``DatasetError`` naming it."""
    if not path.is_file():
        raise DatasetError(f"{what}: file not found: {path}")
    return path


def read_split_file(path: Path) -> list[str]:
    """Read a split list: one id per line (blank lines and surrounding whitespace ignored), or the
    DeepLab-style pairs ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` (the image's stem)."""
    require_file(path, "split list")
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split()
        if cols:
            ids.append(PurePosixPath(cols[0]).stem if len(cols) > 1 else cols[0])
    return ids


def read_image(path: str | Path) -> torch.Tensor:
    """Decode an image file to an RGB ``uint8`` tensor of shape ``(3, H, W)``.

    EXIF orientation is deliberately **not** applied: dataset masks are stored in the raw pixel
    orientation, so rotating only the image would misalign it with its mask (the reference loaders do
    not rotate either).

    Raises:
        DatasetError: If the file cannot be opened or decoded.
    """
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read image {path}: {e}") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def read_mask_array(path: str | Path) -> np.ndarray:
    """Read an index mask **without colour conversion**, as an integer array of shape ``(H, W)``.

    Palette PNGs (VOC) give their palette indices, grayscale PNGs their values, 16-bit PNG/TIFF
    (PASCAL-Context-459) their uint16 values. ``.convert("RGB")`` would destroy the indices, so it is
    never called here.

    Raises:
        DatasetError: If the file is unreadable or holds a colour (RGB/RGBA) image.
    """
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
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


def build_lut(
    mapping: dict[int, int] | None = None, size: int = 256, default: int = IGNORE_INDEX
) -> np.ndarray:
    """A value -> class lookup table of length ``size`` (every unmapped value becomes ``default``).

    Args:
        mapping: ``{stored value: class index}``.
        size: Number of possible stored values (256 for uint8 masks, 65536 for uint16).
        default: Class for values not in ``mapping`` (the ignore index).
    """
    lut = np.full(size, default, dtype=np.int64)
    for src, dst in (mapping or {}).items():
        lut[src] = dst
    return lut


@dataclass(frozen=True)
class SampleRecord:
    """One (image, mask) file pair."""

    image: Path
    mask: Path


class SegmentationDataset(Dataset):
    """Base class: a list of (image, mask) files plus the class strings.

    Subclasses fill ``records`` and ``labels`` and set ``_lut``, the table that maps the values stored
    in the mask files to class indices (``0..C-1``) or ``ignore_index``.

    Attributes:
        labels: Class strings fed to the text encoder; ``labels[i]`` names class index ``i``.
        ignore_index: Mask value of ignored pixels (255; 65535 for PASCAL-Context-459).
        records: The (image, mask) file pairs, in a fixed, sorted order.
        transform: Optional joint transform ``(image, mask) -> (image, mask)`` applied last.
    """

    ignore_index: int = IGNORE_INDEX

    def __init__(
        self,
        records: Sequence[SampleRecord],
        labels: Sequence[str],
        lut: np.ndarray,
        transform: JointTransform | None = None,
    ) -> None:
        if len(records) == 0:
            raise DatasetError(f"{type(self).__name__}: no samples found")
        self.records = list(records)
        self.labels = list(labels)
        self.transform = transform
        self._lut = lut

    @property
    def num_classes(self) -> int:
        """Number of classes ``C`` (= ``len(labels)``)."""
        return len(self.labels)

    def __len__(self) -> int:
        return len(self.records)

    def load_mask(self, path: Path) -> torch.Tensor:
        """Read a mask file and map its stored values to class indices; returns int64 ``(H, W)``."""
        return self.map_mask(read_mask_array(path), path)

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
        image = read_image(rec.image)
        mask = self.load_mask(rec.mask)
        if tuple(image.shape[-2:]) != tuple(mask.shape):
            raise DatasetError(
                f"image {rec.image} is {tuple(image.shape[-2:])} (H, W) but its mask {rec.mask} is "
                f"{tuple(mask.shape)}"
            )
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return {"image": image, "mask": mask, "path": str(rec.image)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={self.num_classes}, ignore_index={self.ignore_index})"


def pair_by_stem(
    image_dir: Path, mask_dir: Path, stems: Sequence[str] | None, image_exts: Sequence[str], mask_suffix: str
) -> list[SampleRecord]:
    """Pair ``image_dir/<stem><ext>`` with ``mask_dir/<stem><mask_suffix>``.

    Args:
        image_dir: Folder of images.
        mask_dir: Folder of masks.
        stems: Ids to use (from a split list); ``None`` = every mask in ``mask_dir``.
        image_exts: Image extensions to try, in order.
        mask_suffix: Mask file suffix including the extension (``".png"``, ``"_labelTrainIds.png"``).

    Raises:
        DatasetError: If an image or a mask of a listed id is missing (the message names the path).
    """
    if stems is None:
        stems = sorted(p.name[: -len(mask_suffix)] for p in mask_dir.glob(f"*{mask_suffix}") if p.is_file())
    records = []
    for stem in stems:
        mask = mask_dir / f"{stem}{mask_suffix}"
        if not mask.is_file():
            raise DatasetError(f"missing mask for {stem!r}: {mask}")
        image = next(
            (image_dir / f"{stem}{ext}" for ext in image_exts if (image_dir / f"{stem}{ext}").is_file()), None
        )
        if image is None:
            raise DatasetError(f"missing image for {stem!r}: {image_dir / (stem + image_exts[0])}")
        records.append(SampleRecord(image=image, mask=mask))
    return records
