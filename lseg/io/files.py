"""Listing input files (:func:`walk_files`, :func:`list_images`) and :func:`file_fragment`."""

from __future__ import annotations

import os
from pathlib import Path

from lseg.errors import ImageLoadError, one_line
from lseg.io.images import IMAGE_EXTENSIONS

__all__ = ["file_fragment", "list_images", "walk_files"]


def file_fragment(text: str, limit: int = 40, default: str = "label") -> str:
    """``text`` as a piece of a file name: letters, digits, ``-_.`` kept, anything else ``_``; at most
    ``limit`` characters, not starting or ending with ``.`` or ``_`` (else ``default``)."""
    kept = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:limit].strip("._")
    return kept or default


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """The files of :func:`walk_files` whose extension, in any case, is in :data:`IMAGE_EXTENSIONS`."""
    return [f for f in walk_files(folder, recursive) if f.suffix.lower() in IMAGE_EXTENSIONS]


def walk_files(
    folder: str | os.PathLike[str], recursive: bool = True, exclude: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Every non-hidden entry under ``folder`` that is not a folder, sorted by path components, as
    docs/errors-and-limits.md ("Folders") says: symlinked folders followed once, ``exclude`` (a job's
    output) left out; :class:`ImageLoadError` for a missing ``folder`` or an unreadable one under it."""
    root = Path(os.fspath(folder)).expanduser()
    if not root.exists():
        raise ImageLoadError(f"image folder not found: '{root}'; check the path")
    if not root.is_dir():
        raise ImageLoadError(f"'{root}' is not a folder; pass a directory (or load the file directly)")

    def unreadable(e: OSError) -> None:
        raise ImageLoadError(f"cannot read folder '{e.filename}': {e.strerror or one_line(e)}; fix its "
                             "permissions or move it out of the input folder")

    real_root = os.path.realpath(root)
    seen = {_dir_key(root)}
    skip = os.path.realpath(os.path.expanduser(exclude)) if exclude is not None else None
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        base = Path(dirpath)
        keep = []
        for d in sorted(dirnames) if recursive else []:
            key = _dir_key(base / d)
            inside = (base / d).is_symlink() and Path(os.path.realpath(base / d)).is_relative_to(real_root)
            excluded = skip is not None and os.path.realpath(base / d) == skip
            if not d.startswith(".") and key is not None and key not in seen and not inside and not excluded:
                seen.add(key)
                keep.append(d)
        dirnames[:] = keep
        found += [base / fn for fn in filenames if not fn.startswith(".") and os.path.exists(base / fn)]
    return sorted(found, key=lambda q: q.relative_to(root).parts)


def _dir_key(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the folder ``path`` resolves to; None if it vanished."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
