"""Atomic output: every file lseg writes goes through :func:`atomic_write` (or :func:`atomic_files`,
:class:`Staged`), so a killed job never leaves a half-written output, only hidden temp files that
:func:`remove_stale_temp_files` removes when a batch command starts."""

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

from lseg.errors import OutputWriteError, one_line

__all__ = [
    "NAME_MAX", "Staged", "atomic_files", "atomic_write", "check_writable", "create_exclusive",
    "hidden_sibling", "pid_exists", "remove_stale_temp_files", "write_error",
]

# Temp names: ``.<name>.<host hash>-<pid>-<random>.tmp<suffix>``: leftovers of killed processes are known.
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.[^.]*)?")


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


#: Longest file name (bytes) that the usual file systems take (ext4, XFS, btrfs, tmpfs, APFS, NTFS).
NAME_MAX = 255


def hidden_sibling(target: Path, tail: str) -> Path:
    """``.<target name><tail>`` next to ``target``, the name shortened (a hash of it added) to fit
    :data:`NAME_MAX` bytes."""
    name = target.name
    room = NAME_MAX - 1 - len(os.fsencode(tail))
    if len(os.fsencode(name)) > room:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
        keep = os.fsencode(name)[: max(0, room - 9)].decode("utf-8", "ignore")  # whole characters only
        name = f"{keep}~{digest}"
    return target.with_name(f".{name}{tail}")


def _temp_path_for(target: Path, made: list[Path], keep_suffix: bool = True, folder: bool = False) -> Path:
    """A new hidden temp file (``folder``: a folder) next to ``target``: mode 0o666 less the umask, as
    ``open()`` gives, and ``target``'s suffix, for writers that pick the format by it (PIL). Appended to
    ``made`` before it exists, so that Ctrl-C or SIGTERM cannot leave one its caller does not know."""
    suffix = target.suffix if keep_suffix and not folder else ""
    for _ in range(100):
        tmp = hidden_sibling(target, f".{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")
        made.append(tmp)
        try:
            if folder:
                tmp.mkdir()
            else:
                tmp.touch(0o666, exist_ok=False)  # O_CREAT | O_EXCL
            return tmp
        except FileExistsError:
            made.pop()
            continue
    raise FileExistsError(errno.EEXIST, f"could not create a temporary {'folder' if folder else 'file'} next to it",
                          str(target))  # with its errno, so that every caller reports it as a write error


_NO_PERMISSION = "no permission to write there: fix the folder's permissions or write to another folder"
#: What to do about a failed write, by errno (the message starts with the system's own words).
_WRITE_REMEDIES = {
    errno.ENOSPC: "free some space and re-run (finished outputs are kept)",
    errno.EDQUOT: "the disk quota is exhausted: free some space and re-run (finished outputs are kept)",
    errno.EROFS: "the file system is read-only: write to another output folder",
    errno.EACCES: _NO_PERMISSION,
    errno.EPERM: _NO_PERMISSION,
    errno.ENAMETOOLONG: "the name is too long for the file system: rename the input or use a shorter "
                        "output folder",
    errno.EFBIG: "the file is too large for this file system (or the process's file size limit)",
}


def write_error(target: Path, e: OSError) -> OutputWriteError:
    """``cannot write <target>: <strerror>; <remedy>`` as an :class:`OutputWriteError` (same errno)."""
    reason = e.strerror or (os.strerror(e.errno) if e.errno else one_line(e))
    remedy = _WRITE_REMEDIES.get(e.errno or 0, "check the output folder")
    error = OutputWriteError(f"cannot write {target}: {reason}; {remedy}")
    error.errno, error.strerror, error.filename = e.errno, reason, str(target)
    return error


def check_writable(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` and a temp file in it, or :class:`OutputWriteError` (before any work is done)."""
    root = Path(os.fspath(folder)).expanduser()
    made: list[Path] = []
    with _write_errors(root):
        root.mkdir(parents=True, exist_ok=True)
        try:
            _temp_path_for(root / "write-test", made)
        finally:
            _remove(made)
    return root


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (when the OS cannot tell: yes)."""
    try:
        os.kill(pid, 0)
    except OSError as e:  # ESRCH: gone; anything else (EPERM: another user's): it may exist
        return not isinstance(e, ProcessLookupError)
    return True


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files and folders of this module under ``folder`` whose process (on this host)
    no longer exists; those of live processes (other ranks, shards) are kept. Returns the removed paths."""
    root = Path(os.fspath(folder)).expanduser()
    if not root.is_dir():
        return []
    host = _host_tag()
    removed: list[Path] = []

    def stale(name: str) -> bool:
        m = _TEMP_RE.fullmatch(name) if name.startswith(".") else None
        return m is not None and m.group("host") == host and not pid_exists(int(m.group("pid")))

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
    """Write ``path`` atomically: ``writer(tmp)`` writes a hidden temp file next to it (same suffix),
    which then replaces ``path``; if ``writer`` raises, ``path`` is untouched. Returns ``path``; a
    refusal of the file system is an :class:`OutputWriteError`."""
    target = Path(os.fspath(path)).expanduser()
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        made: list[Path] = []
        try:
            tmp = _temp_path_for(target, made)
            mode = os.stat(tmp).st_mode & 0o777  # 0o666 less the umask, as a plain open() gives
            writer(tmp)
            if os.stat(tmp).st_mode & 0o777 != mode:  # a writer that replaced the file (safetensors: 0600)
                os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            _remove(made)
            raise
    return target


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


#: errnos of ``link()`` on file systems without hard links (FAT, some FUSE and SMB mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}


def create_exclusive(path: str | os.PathLike[str], data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; True if this call created it. A temp file is
    hard-linked to ``path`` (atomic, also on NFS), so the file is complete when it appears; without
    hard links: ``O_EXCL`` + write."""
    target = Path(os.fspath(path))
    made: list[Path] = []
    try:
        tmp = _temp_path_for(target, made, keep_suffix=False)  # not a look-alike of ``path`` to globbing readers
        tmp.write_bytes(data)
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
        _remove(made)


@contextlib.contextmanager
def _write_errors(target: Path) -> Iterator[None]:
    """File-system errors (with an errno) while writing ``target`` -> :class:`OutputWriteError`."""
    try:
        yield
    except OutputWriteError:
        raise
    except OSError as e:
        if e.errno is None:
            raise
        raise write_error(target, e) from None


@contextlib.contextmanager
def atomic_files(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Files that belong together (an ONNX graph and its weights): yields a hidden temp folder to fill
    with files named as they should end up next to ``path``; when the block completes they are moved
    there, ``path``'s own name last. The temp folder is always removed."""
    target = Path(os.fspath(path)).expanduser()
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        made: list[Path] = []
        try:
            tmp = _temp_path_for(target, made, folder=True)
            yield tmp
            for f in sorted(tmp.iterdir(), key=lambda f: (f.name == target.name, f.name)):
                os.replace(f, target.parent / f.name)
        finally:
            for folder in made:
                shutil.rmtree(folder, ignore_errors=True)


def _check_name_fits(target: Path) -> None:
    """ENAMETOOLONG unless ``target``'s name fits its folder's file system (its temp file's name always fits)."""
    try:
        limit = os.pathconf(target.parent, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or the file system cannot tell
        limit = NAME_MAX
    if len(os.fsencode(target.name)) > (limit if limit > 0 else NAME_MAX):
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(target))


class Staged:
    """Files of one unit of work that must appear together: :meth:`write` a temp file for each,
    :meth:`commit` moves them all into place (in that order), :meth:`discard` removes them."""

    def __init__(self) -> None:
        self._temps: list[Path] = []
        self._finals: list[Path] = []

    def write(self, target: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
        """``writer(temp file)`` for ``target`` (its folder created); a file-system error names ``target``."""
        final = Path(os.fspath(target)).expanduser()
        with _write_errors(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            _check_name_fits(final)  # here, not at commit: a unit's files must all move or none
            tmp = _temp_path_for(final, self._temps)
            self._finals.append(final)
            writer(tmp)
        return tmp

    def commit(self) -> None:
        for tmp, final in zip(self._temps, self._finals):
            with _write_errors(final):
                os.replace(tmp, final)
        self._temps.clear()
        self._finals.clear()

    def discard(self) -> None:
        _remove(self._temps)
        self._temps.clear()
        self._finals.clear()
