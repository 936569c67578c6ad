"""Image / video input (:func:`load_image`, :func:`iter_frames`, input folders: each input one ``HxWx3 uint8
RGB`` array or one :class:`~lseg.errors.ImageLoadError`, docs/errors-and-limits.md) and atomic output."""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module of this package (imported on first use: the command line's help needs none)
_EXPORTS = {
    "NAME_MAX": "atomic", "Staged": "atomic", "atomic_files": "atomic", "atomic_write": "atomic",
    "check_writable": "atomic", "create_exclusive": "atomic", "hidden_sibling": "atomic", "pid_exists": "atomic",
    "remove_stale_temp_files": "atomic", "write_error": "atomic",
    "file_fragment": "files", "list_images": "files", "walk_files": "files",
    "iter_frames": "frames",
    "ALPHA_BACKGROUND": "images", "DEFAULT_MAX_PIXELS": "images", "IMAGE_EXTENSIONS": "images",
    "VIDEO_EXTENSIONS": "images", "ImageSource": "images", "load_image": "images",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lseg.io' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lseg.io.{_EXPORTS[name]}"), name)
