"""Image / video input and atomic output ("the front door"), one module per job: :mod:`~lseg.io.images`
(:func:`load_image`), :mod:`~lseg.io.pixels` (any pixels to ``HxWx3 uint8 RGB``), :mod:`~lseg.io.frames`
(:func:`iter_frames`), :mod:`~lseg.io.files` (input folders), :mod:`~lseg.io.atomic` (every write) and
:mod:`~lseg.io.png` (:func:`save_png`). Imports only :mod:`lseg.errors` and third-party libraries.

Every input becomes one C-contiguous ``HxWx3 uint8 RGB`` array that owns its memory, or one
:class:`~lseg.errors.ImageLoadError`; what is accepted and refused (alpha onto white, bit depths,
``max_pixels``, truncated files) is in docs/errors-and-limits.md.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module of this package (imported on first use: the command line's help needs none)
_EXPORTS = {
    "NAME_MAX": "atomic", "Staged": "atomic", "atomic_files": "atomic", "atomic_open": "atomic",
    "atomic_write": "atomic", "check_writable": "atomic", "create_exclusive": "atomic",
    "hidden_sibling": "atomic", "pid_exists": "atomic", "remove_stale_temp_files": "atomic",
    "write_error": "atomic",
    "file_fragment": "files", "list_images": "files", "walk_files": "files",
    "iter_frames": "frames",
    "ALPHA_BACKGROUND": "images", "DEFAULT_MAX_PIXELS": "images", "IMAGE_EXTENSIONS": "images",
    "VIDEO_EXTENSIONS": "images", "ImageSource": "images", "load_image": "images",
    "save_png": "png",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lseg.io' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lseg.io.{_EXPORTS[name]}"), name)
