"""Progress bars: every long lseg job (segment, features, store, eval, train) shows one, made here
so they all behave alike.

On a terminal the bar redraws up to 10 times a second (tqdm's default). Into a log file or a pipe
(batch schedulers, ``nohup``, ``| tee``) every redraw is appended, so there it redraws every
:data:`LOG_INTERVAL` seconds instead: a day-long job's log stays readable. ``TQDM_MININTERVAL`` in
the environment still wins (tqdm's own override).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm  # a widget in Jupyter, the text bar elsewhere

__all__ = ["LOG_INTERVAL", "progress_bar"]

#: Seconds between redraws when stderr is not a terminal.
LOG_INTERVAL = 30.0


def progress_bar(
    iterable: Iterable[Any] | None = None, *, desc: str, unit: str, total: int | None = None, initial: int = 0,
    disable: bool = False, position: int | None = None,
) -> tqdm:
    """A tqdm bar on stderr (use it like ``tqdm``: iterate, or ``update()`` and ``close()``)."""
    interactive = sys.stderr.isatty()
    interval = {} if interactive or "TQDM_MININTERVAL" in os.environ else {"mininterval": LOG_INTERVAL}
    return tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial, disable=disable, position=position,
                dynamic_ncols=interactive, file=sys.stderr, **interval)
