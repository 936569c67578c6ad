"""What lseg prints on stderr: progress bars, ``warning: ...`` lines and messages. Outside a terminal a
bar is a line every :data:`LOG_INTERVAL` seconds (``TQDM_MININTERVAL`` wins), so logs stay readable."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterable
from typing import Any


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# tqdm reads its TQDM_* defaults when imported and fails on a MININTERVAL that is not a number ("5s"):
# such a value is hidden from it then (progress_bar warns and keeps the default)
_BAD_INTERVAL = os.environ.get("TQDM_MININTERVAL")
if _BAD_INTERVAL is not None and not _is_number(_BAD_INTERVAL):
    del os.environ["TQDM_MININTERVAL"]
try:
    from tqdm.auto import tqdm  # a widget in Jupyter, the text bar elsewhere
finally:
    if _BAD_INTERVAL is not None:  # as it was
        os.environ["TQDM_MININTERVAL"] = _BAD_INTERVAL
del _BAD_INTERVAL

__all__ = ["LOG_INTERVAL", "progress_bar", "say", "setup_logging", "warn"]

#: Seconds between redraws when stderr is not a terminal.
LOG_INTERVAL = 30.0


class _Lines:
    """stderr for a bar outside a terminal: each frame a line (no carriage returns)."""

    def write(self, text: str) -> None:
        text = text.replace("\r", "").replace("\x1b[A", "")
        if text.strip():
            sys.stderr.write(text if text.endswith("\n") else text + "\n")

    def flush(self) -> None:
        sys.stderr.flush()


#: The bad TQDM_MININTERVAL values warned about (once each).
_warned_intervals: set[str] = set()


def progress_bar(iterable: Iterable[Any] | None = None, *, desc: str, unit: str, total: int | None = None,
                 initial: int = 0, disable: bool = False) -> tqdm:
    """A tqdm bar on stderr (use it like ``tqdm``: iterate, or ``update()`` and ``close()``)."""
    interactive = sys.stderr.isatty()
    disable = disable or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")  # tqdm's own switch
    chosen = os.environ.get("TQDM_MININTERVAL")
    if chosen is not None and not _is_number(chosen):
        if chosen not in _warned_intervals and not disable:
            _warned_intervals.add(chosen)
            warn(f"ignoring TQDM_MININTERVAL={chosen!r}: not a number of seconds (e.g. TQDM_MININTERVAL=5)")
        chosen = None
    interval = {} if interactive or chosen is not None else {"mininterval": LOG_INTERVAL}
    return tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial, disable=disable,
                dynamic_ncols=interactive, file=sys.stderr if interactive else _Lines(), **interval)


def say(message: str) -> None:
    """A line on stderr, above any progress bar."""
    tqdm.write(message, file=sys.stderr)


def warn(message: str) -> None:
    """``warning: <message>`` on stderr, above any progress bar."""
    say(f"warning: {message}")


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        say(f"{record.levelname.lower()}: {record.getMessage()}")


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    warn(" ".join(str(message).split()))  # not Python's two lines with a site-packages path


def setup_logging(verbose: bool = False) -> None:
    """lseg's log records and Python's warnings (Pillow's "Corrupt EXIF data") as ``warning: ...`` lines
    (``debug:`` too with ``verbose``), as :func:`warn`."""
    # torch.compile on a CPU warns "No CUDA runtime is found" where a CUDA toolkit has no GPU: not the user's concern
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    logger = logging.getLogger("lseg")
    logger.handlers[:] = [_Handler()]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = True  # to the root logger too (the application's, or a test's capture)
    warnings.showwarning = _show_warning
