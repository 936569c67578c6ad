"""Output paths checked as option ``check=`` functions, before any work (light: ``--help`` imports it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lseg.options import OptionError

__all__ = ["output_folder", "report_file"]


def report_file(field: str) -> Callable[[str | None], str | None]:
    """A file written at the end of the command: not a folder, its folder writable (a long run must be
    able to save its result)."""

    def check(path: str | None) -> str | None:
        if path is None:
            return None
        from lseg.io.atomic import check_writable

        target = Path(path).expanduser()
        if target.is_dir():
            raise OptionError(f"`{field}` {path} is a folder: give a file name, e.g. {target / 'report.json'}")
        check_writable(target.parent)
        return path

    return check


def output_folder(path: str | None) -> str | None:
    """``out``, a folder the command writes into (created if needed): not an existing file."""
    if path is not None and Path(path).expanduser().exists() and not Path(path).expanduser().is_dir():
        raise OptionError(f"`out` {path} is a file, not a folder: give a folder (it is created if needed)")
    return path
