"""Robust image / video input and atomic output ("the front door"), one module per job:

* :mod:`lseg.io.images`: :func:`load_image` (decoding, size limits, file-system guards);
* :mod:`lseg.io.pixels`: pixels of any mode, arrays and tensors to ``HxWx3 uint8 RGB``;
* :mod:`lseg.io.frames`: :func:`iter_frames` (animated images and videos);
* :mod:`lseg.io.files`: :func:`list_images` / :func:`walk_files` (input folders), :func:`file_fragment`;
* :mod:`lseg.io.atomic`: :func:`atomic_write` and friends, :func:`create_exclusive`, temp names,
  stale-temp cleanup, write errors;
* :mod:`lseg.io.png`: :func:`save_png`.

The io layer imports only :mod:`lseg.errors` and third-party libraries.

Everything a user hands to lseg goes through :func:`load_image` (or :func:`iter_frames` for
animations and videos), which turns it into one canonical format: an ``HxWx3 uint8 RGB``
C-contiguous numpy array that owns its memory. Anything that cannot be turned into that raises
:class:`~lseg.errors.ImageLoadError` with a one-line message naming the input, what is wrong and
what to do about it.

Conventions (decided once, here):

* **Alpha** (RGBA, LA, palette with transparency, ...) is composited onto **white**
  (:data:`ALPHA_BACKGROUND`), the way image viewers and browsers show transparent images, then
  dropped.
* **High bit depth**: 16-bit data is reduced to 8 bits by ``>> 8``; 32-bit integer ('I') images by
  the bit range they actually use (see :func:`lseg.io.pixels._int_to_uint8`); float data in ``[0, 1]`` is
  multiplied by 255.
* **Size limit**: images with more than ``max_pixels`` pixels are refused *before* decoding
  (:data:`DEFAULT_MAX_PIXELS` = 16384 * 16384 ~ 268 M pixels, i.e. ~805 MB as ``HxWx3 uint8``;
  memory is 3 bytes/pixel for the result, more transiently while decoding). Pillow's own global
  ``Image.MAX_IMAGE_PIXELS`` guard is not consulted for the main size check so that
  ``max_pixels`` is the single, per-call knob; no global Pillow state is ever modified.
* **Truncated files are errors**: pixels are fully decoded inside a ``try`` and Pillow's
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left untouched (default ``False``).

All writers in lseg go through :func:`atomic_write` (or :func:`atomic_open` /
:func:`atomic_files`) so that a killed job never leaves a half-written output file behind; the
hidden temp files and folders of a killed job are removed by :func:`remove_stale_temp_files`, which
the batch commands run when they start.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module of this package (imported on first use: the command line's help needs none)
_EXPORTS = {
    "NAME_MAX": "atomic", "Staged": "atomic", "atomic_files": "atomic", "atomic_open": "atomic",
    "atomic_write": "atomic", "check_writable": "atomic", "create_exclusive": "atomic",
    "hidden_sibling": "atomic", "remove_stale_temp_files": "atomic", "write_error": "atomic",
    "file_fragment": "files", "list_images": "files", "walk_files": "files",
    "iter_frames": "frames",
    "ALPHA_BACKGROUND": "images", "DEFAULT_MAX_PIXELS": "images", "IMAGE_EXTENSIONS": "images",
    "VIDEO_EXTENSIONS": "images", "ImageSource": "images", "load_image": "images",
    "save_png": "png",
}
__all__ = [
    "ALPHA_BACKGROUND",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "NAME_MAX",
    "VIDEO_EXTENSIONS",
    "ImageSource",
    "Staged",
    "atomic_files",
    "atomic_open",
    "atomic_write",
    "check_writable",
    "create_exclusive",
    "file_fragment",
    "hidden_sibling",
    "iter_frames",
    "list_images",
    "load_image",
    "remove_stale_temp_files",
    "save_png",
    "walk_files",
    "write_error",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lseg.io' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lseg.io.{_EXPORTS[name]}"), name)
