"""Joint image + mask transforms (torchvision.transforms.v2) reproducing the reference recipes.

A joint transform is a callable ``(image, mask) -> (image, mask)`` taking and returning plain tensors:
image ``uint8 (3, H, W)``, mask ``int64 (H, W)``. Internally the pair is wrapped as
``tv_tensors.Image`` / ``tv_tensors.Mask`` so every v2 op treats them consistently: one random draw
per call for both, bilinear (antialiased) resampling for the image, nearest for the mask, and padding
with 0 for the image and ``ignore_index`` for the mask.

Masks are resized with ``NEAREST_EXACT`` (each output pixel takes the source pixel under its
**centre**), which is what PIL's ``NEAREST`` (the reference) does. torchvision's default for masks,
the legacy ``NEAREST``, samples the top-left corner of each output pixel instead: it shifts the labels
by up to half a pixel, and on a 700 -> 480 resize ~12-16 % of them differ from PIL's. Every resize
here goes through :func:`resize_pair_item`.

Randomness comes from torch's global RNG (as all v2 transforms), so ``torch.manual_seed`` makes a
sequence of calls reproducible, and DataLoader workers get distinct, seeded streams.

Recipes (reference: PyTorch-Encoding ``BaseDataset._sync_transform`` / ``_val_sync_transform``):

* :func:`train_transform`: horizontal flip (p=0.5); rescale so the **long** side is a uniform integer
  in ``[0.5 * base, 2.0 * base]`` = [260, 1040] for ``base_size=520``, aspect kept; pad bottom/right to
  ``crop_size`` (image 0, mask ``ignore_index``; the reference pads the mask with 0 before its ``-1``
  shift, which also makes padding ignored); random ``crop_size`` crop.
* :func:`val_transform`: resize so the **short** side is ``crop_size``, then centre crop.
* :func:`fewshot_transform`: resize to ``size x size`` without keeping the aspect (zero-shot protocol).

The reference resamples PIL images; here tensors are resampled with antialiasing, which matches PIL's
bilinear to within 1 grey level (uint8; ~0.1-0.6 % of values differ by 1). Masks match PIL's NEAREST
exactly on most sizes; where a sampling position falls on a source-pixel edge the two round
differently (measured: <= 0.3 % of labels, e.g. 333x500 -> 260x390). ``tests/data/test_transforms.py``
checks the training transform against PIL pixel for pixel on a seeded case.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from lseg.data.base import IGNORE_INDEX

__all__ = [
    "JointCompose",
    "JointResize",
    "PadToMinSize",
    "RandomLongSideResize",
    "fewshot_transform",
    "resize_pair_item",
    "train_transform",
    "val_transform",
]

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def resize_pair_item(inpt: Any, size: list[int]) -> Any:
    """Resize one item of an (image, mask) pair: images bilinear + antialias (PIL ``BILINEAR``), masks
    ``NEAREST_EXACT`` (PIL ``NEAREST``: samples pixel centres). ``size``: ``[h, w]``, or ``[short]``."""
    if isinstance(inpt, tv_tensors.Mask):
        return F.resize(inpt, size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
    return F.resize(inpt, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


class RandomLongSideResize(v2.Transform):
    """Resize so that the longer side is a uniform random integer in ``[min_size, max_size]``.

    The short side is ``int(short * long_new / long + 0.5)`` (PyTorch-Encoding's rounding); when
    height == width the width counts as the long side, as in the reference.
    """

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        if not 0 < min_size <= max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.min_size = min_size
        self.max_size = max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        long_size = int(torch.randint(self.min_size, self.max_size + 1, ()).item())
        if h > w:
            size = [long_size, int(1.0 * w * long_size / h + 0.5)]
        else:
            size = [int(1.0 * h * long_size / w + 0.5), long_size]
        return {"size": size}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return resize_pair_item(inpt, params["size"])


class JointResize(v2.Transform):
    """Resize to ``size``: an int resizes the short side (the long side truncated, as PyTorch-Encoding),
    ``(h, w)`` resizes to exactly that. Mask and image as :func:`resize_pair_item`."""

    def __init__(self, size: int | tuple[int, int]) -> None:
        super().__init__()
        self.size = [size] if isinstance(size, int) else list(size)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return resize_pair_item(inpt, self.size)


class PadToMinSize(v2.Transform):
    """Pad at the bottom/right so that both sides are at least ``size`` (image 0, mask ``ignore_index``)."""

    def __init__(self, size: int, ignore_index: int = IGNORE_INDEX, image_fill: float = 0) -> None:
        super().__init__()
        self.size = size
        self.ignore_index = ignore_index
        self.image_fill = image_fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        return {"padding": [0, 0, max(self.size - w, 0), max(self.size - h, 0)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["padding"] == [0, 0, 0, 0]:
            return inpt
        fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else self.image_fill
        return F.pad(inpt, params["padding"], fill=fill)


class JointCompose:
    """Apply v2 transforms to an ``(image, mask)`` pair of plain tensors.

    Args:
        transforms: v2 transforms, applied in order to the pair wrapped as ``tv_tensors.Image`` /
            ``tv_tensors.Mask``.

    Call:
        ``image`` uint8 ``(3, H, W)``, ``mask`` integer ``(H, W)`` -> the transformed pair as plain tensors
        (``tv_tensor`` wrappers removed so downstream code sees ordinary tensors).
    """

    def __init__(self, transforms: Sequence[v2.Transform]) -> None:
        self.transforms = list(transforms)
        self._compose = v2.Compose(self.transforms or [v2.Identity()])

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.ndim != 3 or mask.ndim != 2 or tuple(image.shape[-2:]) != tuple(mask.shape):
            raise ValueError(
                f"expected image (3, H, W) and mask (H, W) of the same size, got {tuple(image.shape)} and {tuple(mask.shape)}"
            )
        img, msk = self._compose(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return img.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"JointCompose([{inner}])"


def train_transform(
    base_size: int = 520,
    crop_size: int = 480,
    scale_range: tuple[float, float] = (0.5, 2.0),
    hflip_p: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
) -> JointCompose:
    """The reference training augmentation (flip, long-side rescale, pad, random crop).

    Args:
        base_size: Reference size for the rescale (520 in the reference).
        crop_size: Output side (480).
        scale_range: The long side is drawn from ``[int(base*lo), int(base*hi)]`` inclusive.
        hflip_p: Horizontal flip probability.
        ignore_index: Mask fill for padded pixels.

    Returns:
        A joint transform giving image ``(3, crop, crop)`` uint8 and mask ``(crop, crop)``.
    """
    lo, hi = int(base_size * scale_range[0]), int(base_size * scale_range[1])
    return JointCompose(
        [
            v2.RandomHorizontalFlip(hflip_p),
            RandomLongSideResize(lo, hi),
            PadToMinSize(crop_size, ignore_index=ignore_index),
            v2.RandomCrop(crop_size),
        ]
    )


def val_transform(crop_size: int = 480) -> JointCompose:
    """Reference validation transform: short side -> ``crop_size`` (long side truncated), centre crop."""
    return JointCompose([JointResize(crop_size), v2.CenterCrop(crop_size)])


def fewshot_transform(size: int = 480) -> JointCompose:
    """Zero-shot protocol: resize image (bilinear) and mask (nearest) to ``size x size``, aspect not kept."""
    return JointCompose([JointResize((size, size))])
