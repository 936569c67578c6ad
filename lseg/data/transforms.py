"""Joint ``(image uint8 (3, H, W), mask int64 (H, W))`` transforms (torchvision.transforms.v2, one
random draw from torch's global RNG for both) reproducing the reference recipes (``docs/datasets.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from lseg.data.base import IGNORE_INDEX
from lseg.geometry import scaled_size

_NEAREST_EXACT = v2.InterpolationMode.NEAREST_EXACT

__all__ = [
    "JointCompose", "JointResize", "PadToMinSize", "RandomLongSideResize", "fewshot_transform",
    "resize_pair_item", "train_transform", "val_transform",
]


def resize_pair_item(inpt: Any, size: list[int], mask_mode: v2.InterpolationMode = _NEAREST_EXACT) -> Any:
    """Resize an image (bilinear, antialiased) or a mask (``NEAREST_EXACT``: pixel centres, as PIL's
    ``NEAREST``; torchvision's ``NEAREST`` shifts labels by up to half a pixel) to ``[h, w]`` or ``[short side]``."""
    if isinstance(inpt, tv_tensors.Mask):
        return F.resize(inpt, size, interpolation=mask_mode)
    return F.resize(inpt, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


class RandomLongSideResize(v2.Transform):
    """Resize so that the long side is a uniform random integer in ``[min_size, max_size]``; the short
    side is ``int(short * long_new / long + 0.5)`` and a square's width counts as long (as the reference)."""

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        if not 0 < min_size <= max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.min_size = min_size
        self.max_size = max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        long_size = int(torch.randint(self.min_size, self.max_size + 1, ()).item())
        return {"size": list(scaled_size(h, w, long_size))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return resize_pair_item(inpt, params["size"])


class JointResize(v2.Transform):
    """Resize to ``size``: an int sets the short side (long side truncated, as PyTorch-Encoding),
    ``(h, w)`` exactly that; masks with ``mask_mode`` (:func:`resize_pair_item`)."""

    def __init__(self, size: int | tuple[int, int], mask_mode: v2.InterpolationMode = _NEAREST_EXACT) -> None:
        super().__init__()
        self.size = [size] if isinstance(size, int) else list(size)
        self.mask_mode = mask_mode

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return resize_pair_item(inpt, self.size, self.mask_mode)


class PadToMinSize(v2.Transform):
    """Pad at the bottom/right so that both sides are at least ``size`` (image 0, mask ``ignore_index``)."""

    def __init__(self, size: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.size = size
        self.ignore_index = ignore_index

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        return {"padding": [0, 0, max(self.size - w, 0), max(self.size - h, 0)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["padding"] == [0, 0, 0, 0]:
            return inpt
        fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else 0
        return F.pad(inpt, params["padding"], fill=fill)


class JointCompose:
    """v2 ``transforms`` applied to an ``(image, mask)`` pair of plain tensors."""

    def __init__(self, transforms: Sequence[v2.Transform]) -> None:
        self.transforms = list(transforms)
        self._compose = v2.Compose(self.transforms or [v2.Identity()])

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.ndim != 3 or mask.ndim != 2 or tuple(image.shape[-2:]) != tuple(mask.shape):
            raise ValueError(f"expected image (3, H, W) and mask (H, W) of the same size, got "
                             f"{tuple(image.shape)} and {tuple(mask.shape)}")
        img, msk = self._compose(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return img.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"JointCompose({self.transforms!r})"


def train_transform(base_size: int = 520, crop_size: int = 480, scale_range: tuple[float, float] = (0.5, 2.0),
                    hflip_p: float = 0.5, ignore_index: int = IGNORE_INDEX) -> JointCompose:
    """The reference training augmentation: horizontal flip, long side uniform in ``base_size *
    scale_range``, pad bottom/right to ``crop_size`` (mask: ``ignore_index``), random ``crop_size`` crop."""
    lo, hi = int(base_size * scale_range[0]), int(base_size * scale_range[1])
    return JointCompose([v2.RandomHorizontalFlip(hflip_p), RandomLongSideResize(lo, hi),
                         PadToMinSize(crop_size, ignore_index=ignore_index), v2.RandomCrop(crop_size)])


def val_transform(crop_size: int = 480) -> JointCompose:
    """Reference validation transform: short side -> ``crop_size`` (long side truncated), centre crop."""
    return JointCompose([JointResize(crop_size), v2.CenterCrop(crop_size)])


def fewshot_transform(size: int = 480) -> JointCompose:
    """Zero-shot protocol: resize image (bilinear) and mask to ``size x size``, aspect not kept; the mask
    with torch's ``nearest`` (top-left sampling), as HSNet's ``F.interpolate``, not at pixel centres."""
    return JointCompose([JointResize((size, size), mask_mode=v2.InterpolationMode.NEAREST)])
