"""Images for the predictor: any accepted input -> ``HxWx3`` uint8 pixels -> a :class:`PreparedImage`
at the working size."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from lseg.errors import ConfigError
from lseg.geometry import resize_rgb, working_size
from lseg.inference.results import PreparedImage
from lseg.io import DEFAULT_MAX_PIXELS, load_image

__all__ = ["as_list", "images_per_forward", "prepare_image", "rgb_pixels"]


def _decoded_if_stream(image: Any) -> Any:
    """A binary file object or an animated PIL image, decoded: it can be read once, or seeked to another
    frame, and a result keeps its image for ``overlay()``."""
    try:
        animated = isinstance(image, Image.Image) and bool(image.tell() or getattr(image, "is_animated", False))
    except Exception:  # noqa: BLE001 - a corrupt animation: load_image says what is wrong
        animated = True
    return load_image(image) if hasattr(image, "read") or animated else image


def as_list(images: Any, method: str) -> list[Any]:
    """``images`` (any iterable) as a list; :class:`ConfigError` for one image, which would be iterated
    character by character (a path), row by row (an ``HxWx3`` array) or channel by channel (``CxHxW``)."""
    # numbers, not an array of paths (``df["path"].values``)
    array = isinstance(images, torch.Tensor) or isinstance(images, np.ndarray) and images.dtype.kind not in "OUSV"
    if isinstance(images, (str, bytes, os.PathLike, Image.Image)) or array and (images.ndim < 3 or images.ndim == 3 and (
            images.shape[-1] if isinstance(images, np.ndarray) else images.shape[0]) in (1, 3, 4)):
        what = f"a {'x'.join(map(str, images.shape))} array" if array else f"a {type(images).__name__}"
        raise ConfigError(f"{method} takes a list of images, not one image ({what}): {method}([image, ...], ...)")
    return list(images)


def images_per_forward(device: torch.device | str, batch_size: int) -> int:
    """How many same-size images one forward takes: ``batch_size`` on GPUs, 1 on CPUs (one image
    already fills a CPU's matrix products; stacked ones only overflow its caches: ``lseg bench``)."""
    return batch_size if torch.device(device).type != "cpu" else 1


def prepare_image(image: Any, size: int | None, device: torch.device | str = "cpu") -> PreparedImage:
    """Any accepted image -> :class:`PreparedImage` at the working size for long side ``size`` (no
    model needed: loader workers run it ahead)."""
    rgb = rgb_pixels(image, device)
    image_size = (int(rgb.shape[0]), int(rgb.shape[1]))
    return PreparedImage(resize_rgb(rgb, working_size(*image_size, size), device)[0], image_size)


def rgb_pixels(image: Any, device: torch.device | str) -> np.ndarray | torch.Tensor:
    """``HxWx3 uint8`` pixels of any accepted image: a ``3xHxW`` uint8 or [0, 1] float tensor already on
    ``device`` (a GPU) stays there, a C-contiguous writable RGB uint8 array is taken as is, anything
    else goes through :func:`lseg.io.load_image`."""
    if isinstance(image, torch.Tensor) and image.device.type != "cpu" and image.device == torch.device(device):
        t = image.detach()
        if t.ndim == 3 and t.shape[0] == 3 and 0 < t.shape[1] * t.shape[2] <= DEFAULT_MAX_PIXELS:
            if t.dtype == torch.uint8:
                return t.permute(1, 2, 0)
            # as load_image: [0, 1] floats rounded (bad values go to load_image for its error)
            if t.is_floating_point() and not bool(((t < 0) | (t > 1) | t.isnan()).any()):
                return t.float().mul(255.0).round_().to(torch.uint8).permute(1, 2, 0)
    if (
        isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        and image.flags.c_contiguous and image.flags.writeable
        and 0 < image.shape[0] * image.shape[1] <= DEFAULT_MAX_PIXELS
    ):
        return image
    return load_image(image)
