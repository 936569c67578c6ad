"""Atomic output: every file lseg writes goes through :func:`atomic_write` (or :func:`atomic_open`,
or :func:`atomic_files` for files that belong together), so a killed job never leaves a
half-written output behind; the hidden temp files and folders of a killed job are removed by
:func:`remove_stale_temp_files`, which the batch commands run when they start.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from lseg.errors import OutputWriteError
from lseg.io._text import one_line as _one_line

__all__ = [
    "NAME_MAX", "Staged", "atomic_files", "atomic_open", "atomic_write", "check_writable", "create_exclusive",
    "hidden_sibling", "remove_stale_temp_files", "write_error",
]

# Temp files of atomic_write: ``.<name>.<host>-<pid>-<random>.tmp<suffix>``; the host (hash of the
# host name) and pid let remove_stale_temp_files() recognise leftovers of killed processes.
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.[^.]*)?")


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


#: Longest file name (bytes) that the usual file systems take (ext4, XFS, btrfs, tmpfs, APFS, NTFS).
NAME_MAX = 255


def hidden_sibling(target: Path, tail: str) -> Path:
    """``.<target name><tail>`` next to ``target``, the name part shortened (with a hash of it, so
    names stay distinct) when the whole would exceed :data:`NAME_MAX` bytes: an output whose own name
    fits must not fail because of the longer name of its temp or claim file."""
    name = target.name
    room = NAME_MAX - 1 - len(os.fsencode(tail))
    if len(os.fsencode(name)) > room:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
        keep = os.fsencode(name)[: max(0, room - 9)].decode("utf-8", "ignore")  # whole characters only
        name = f"{keep}~{digest}"
    return target.with_name(f".{name}{tail}")


def _temp_name(target: Path, suffix: str) -> Path:
    """A fresh hidden name next to ``target`` that :data:`_TEMP_RE` recognises (host and pid inside)."""
    return hidden_sibling(target, f".{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")


def _temp_path_for(target: Path, keep_suffix: bool = True) -> tuple[Path, int]:
    """Create (exclusively) a hidden temp file next to ``target``; return its path and fd.

    Created with mode 0o666 so the process umask applies, as for a normal ``open()`` (mkstemp
    would give 0o600). The suffix is kept so extension-sniffing writers (PIL) pick the format.
    """
    for _ in range(100):
        tmp = _temp_name(target, target.suffix if keep_suffix else "")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to '{target}'")


def _temp_dir_for(target: Path) -> Path:
    """Create (exclusively) a hidden temp folder next to ``target`` (named like the temp files, no
    suffix) and return it."""
    for _ in range(100):
        tmp = _temp_name(target, "")
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary folder next to '{target}'")


#: What to do about a failed write, by errno (the message starts with the system's own words).
_WRITE_REMEDIES = {
    errno.ENOSPC: "free some space and re-run (finished outputs are kept)",
    errno.EDQUOT: "the disk quota is exhausted: free some space and re-run (finished outputs are kept)",
    errno.EROFS: "the file system is read-only: write to another output folder",
    errno.EACCES: "no permission to write there: fix the folder's permissions or write to another folder",
    errno.EPERM: "no permission to write there: fix the folder's permissions or write to another folder",
    errno.ENAMETOOLONG: "the name is too long for the file system: rename the input or use a shorter "
                        "output folder",
    errno.EFBIG: "the file is too large for this file system (or the process's file size limit)",
}


def write_error(target: Path, e: OSError) -> OutputWriteError:
    """``cannot write <target>: <strerror>; <remedy>`` as an :class:`OutputWriteError` (same errno)."""
    reason = e.strerror or (os.strerror(e.errno) if e.errno else _one_line(e))
    remedy = _WRITE_REMEDIES.get(e.errno or 0, "check the output folder")
    error = OutputWriteError(f"cannot write {target}: {reason}; {remedy}")
    error.errno, error.strerror, error.filename = e.errno, reason, str(target)
    return error


def check_writable(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (with parents) and a temp file in it, or raise :class:`OutputWriteError`:
    a batch learns that it cannot write there before it loads a model or reads an image."""
    root = Path(os.fspath(folder)).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp, fd = _temp_path_for(root / "write-test")
        os.close(fd)
        tmp.unlink()
    except OSError as e:
        if isinstance(e, OutputWriteError):
            raise
        raise write_error(root, e) from None
    return root


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists (another user's), or cannot tell: keep its files
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files that :func:`atomic_write` / :func:`atomic_open` (and temp folders that
    :func:`atomic_files`) left behind in ``folder`` (recursively) when their process was killed
    (SIGKILL, power loss) before it could clean up.

    Only entries named like this module's temp files *and* created on this host by a process that
    no longer exists are removed, so jobs still writing into the same folder (other torchrun
    ranks, a second shard) are safe. Batch commands call this when they start.

    Returns:
        The removed paths.
    """
    root = Path(os.fspath(folder)).expanduser()
    if not root.is_dir():
        return []
    host = _host_tag()
    removed: list[Path] = []

    def stale(name: str) -> bool:
        m = _TEMP_RE.fullmatch(name) if name.startswith(".") else None
        return m is not None and m.group("host") == host and not _pid_alive(int(m.group("pid")))

    for dirpath, dirnames, filenames in os.walk(root):
        for fn in filter(stale, filenames):
            path = Path(dirpath) / fn
            with contextlib.suppress(OSError):  # gone already, or a read-only folder: leave it
                path.unlink()
                removed.append(path)
        for dn in [d for d in dirnames if stale(d)]:
            dirnames.remove(dn)  # not walked into: removed whole
            path = Path(dirpath) / dn
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    return removed


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
    """Write a file atomically via a temporary file in the same directory.

    ``writer`` is called with the path of a fresh, empty temporary file next to ``path`` (same
    extension, hidden name) and must write the complete content there. On success the temp file
    atomically replaces ``path`` (``os.replace``); if ``writer`` raises (or the process is
    interrupted by an exception), the temp file is removed and ``path`` is left untouched - a
    reader never sees a half-written file. Parent directories are created.

    Args:
        path: Final destination.
        writer: ``writer(tmp_path)``, e.g. ``lambda p: image.save(p, format="PNG")``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputWriteError: the file system refused (disk full, read-only, permission, name too
            long, ...): one line naming ``path``; the temp file is removed.
    """
    target = Path(os.fspath(path)).expanduser()
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _temp_path_for(target)
        mode = os.fstat(fd).st_mode & 0o777  # 0o666 less the umask, as a plain open() gives
        os.close(fd)
        try:
            writer(tmp)
            if os.stat(tmp).st_mode & 0o777 != mode:  # a writer that replaced the file (safetensors: 0600)
                os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
    return target


#: errnos of ``link()`` on file systems without hard links (FAT, some FUSE and SMB mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}


def create_exclusive(path: str | os.PathLike[str], data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; True if this call created it.

    The file is complete from the instant it exists: ``data`` goes to a temp file that is then
    hard-linked to ``path`` (``link()`` fails if ``path`` exists, atomically, also on NFS). Creating
    ``path`` with ``O_EXCL`` and then writing would let a process killed in between leave an empty
    file that nobody can attribute. A killed process leaves only the temp file, which
    :func:`remove_stale_temp_files` removes. Where the file system has no hard links, falls back to
    ``O_EXCL`` + write.

    Raises:
        OSError: the file system refused (the caller names what it was creating).
    """
    target = Path(os.fspath(path))
    tmp, fd = _temp_path_for(target, keep_suffix=False)  # not a look-alike of ``path`` to globbing readers
    try:
        with open(fd, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS:
                raise
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        try:
            with open(fd, "wb") as f:
                f.write(data)
        except BaseException:
            with contextlib.suppress(OSError):
                target.unlink()
            raise
        return True
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def _write_errors(target: Path) -> Iterator[None]:
    """File-system errors while writing ``target`` -> :class:`OutputWriteError` naming it.

    Only errors with an errno are the file system's; others (PIL's "cannot write mode X as PNG")
    are bugs and keep their type.
    """
    try:
        yield
    except OutputWriteError:
        raise
    except OSError as e:
        if e.errno is None:
            raise
        raise write_error(target, e) from None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Context manager form of :func:`atomic_write` yielding an open file object.

    ``with atomic_open("out.json", "w", encoding="utf-8") as f: json.dump(obj, f)`` - the
    destination appears only when the ``with`` block completes without an exception.

    File-system errors become :class:`OutputWriteError`, as in :func:`atomic_write`.

    Args:
        path: Final destination (parent directories are created).
        mode: A write mode (``"w"``, ``"wb"``, ``"wt"``, ...); no reading or appending.
        **kwargs: Passed to :func:`open` (``encoding``, ``newline``, ...).
    """
    if not mode.startswith("w") or "+" in mode:
        raise ValueError(f"atomic_open: mode must be a write-only mode like 'w' or 'wb', got {mode!r}")
    target = Path(os.fspath(path)).expanduser()
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _temp_path_for(target)
        try:
            with open(fd, mode, **kwargs) as f:
                yield f
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def atomic_files(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write files that belong together, such as an ONNX graph and the external weights file it
    names: yields a fresh hidden temp folder next to ``path``, to be filled with files named as they
    should end up next to ``path``.

    When the ``with`` block completes, each file is moved into ``path``'s folder with ``os.replace``
    (so each appears complete), ``path``'s own name last: when it appears, the files it refers to
    are already in place. On an exception nothing is moved. The temp folder is always removed; a
    killed process leaves it to :func:`remove_stale_temp_files`.

    Raises:
        OutputWriteError: the file system refused, as in :func:`atomic_write`.
    """
    target = Path(os.fspath(path)).expanduser()
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_dir_for(target)
        try:
            yield tmp
            for f in sorted(tmp.iterdir(), key=lambda f: (f.name == target.name, f.name)):
                os.replace(f, target.parent / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class Staged:
    """Files of one unit of work that must appear together: :meth:`path` gives a hidden temp file
    next to each target; :meth:`commit` moves them all into place (``os.replace`` each, in the order
    given), :meth:`discard` removes them. A killed process leaves only temp files, which
    :func:`remove_stale_temp_files` removes."""

    def __init__(self) -> None:
        self._temps: list[tuple[Path, Path]] = []

    def path(self, target: str | os.PathLike[str]) -> Path:
        """A fresh temp file for ``target`` (its folder created), to be written completely."""
        final = Path(os.fspath(target))
        with _write_errors(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp, fd = _temp_path_for(final)
            os.close(fd)
        self._temps.append((tmp, final))
        return tmp

    def write(self, target: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
        """``writer(temp file)`` for ``target``; a file-system error names ``target`` (not the temp
        file), as :func:`atomic_write` does."""
        tmp = self.path(target)
        try:
            writer(tmp)
        except OSError as e:
            if e.errno is None:
                raise
            raise write_error(Path(os.fspath(target)), e) from None
        return tmp

    def commit(self) -> list[Path]:
        """Move every staged file into place; the targets."""
        done = []
        for tmp, final in self._temps:
            with _write_errors(final):
                os.replace(tmp, final)
            done.append(final)
        self._temps.clear()
        return done

    def discard(self) -> None:
        for tmp, _ in self._temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._temps.clear()
