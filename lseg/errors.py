"""Exception types raised by lseg: every error a user can cause is an :class:`LSegError` with a one-line,
actionable message, which the CLI prints as ``error: <message>``; anything else is a bug."""

from __future__ import annotations


class LSegError(Exception):
    """Base class for user-facing errors."""


class ImageLoadError(LSegError):
    """An image could not be read or decoded (corrupt, truncated, empty, not an image, too large)."""


class LabelError(LSegError, ValueError):
    """A label list is unusable (empty, duplicates, empty strings, too long for the text encoder)."""


class CheckpointError(LSegError):
    """A checkpoint is unreadable, unsafe, truncated, or does not fit the architecture."""


class WeightsDownloadError(CheckpointError):
    """Released weights could not be downloaded: offline, no network, Google Drive's quota, disk full,
    an interrupted transfer (kept for resuming) or a corrupt download (never kept)."""


class ConfigError(LSegError, ValueError):
    """An unknown model name or an invalid configuration value."""


class DatasetError(LSegError):
    """A dataset folder does not have the expected layout."""


class OutputWriteError(LSegError, OSError):
    """An output file could not be written (an ``OSError`` with ``errno`` set). A batch stops on
    :attr:`fatal` ones (disk full, quota, read-only file system, I/O error), reports the others and goes on.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # OSError's own format would add "[Errno N]"

    @property
    def fatal(self) -> bool:
        import errno

        return self.errno in {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def one_line(e: BaseException) -> str:
    """An exception as a short single line (for embedding in our messages)."""
    text = " ".join(str(e).split())
    if not text:
        return type(e).__name__
    return f"{type(e).__name__}: {text if len(text) <= 200 else text[:197] + '...'}"
