"""Exceptions as short single lines, for the io layer's one-line error messages."""

from __future__ import annotations


def one_line(e: BaseException) -> str:
    """An exception as a short single line (for embedding in our messages)."""
    kind = type(e).__name__
    text = " ".join(str(e).split())
    if not text:
        return kind
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{kind}: {text}"
