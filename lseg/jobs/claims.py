"""Claims: workers writing into one output folder split the work, each holding a
``.<output name>.claim`` file next to the output it computes (docs/cli.md, "Several jobs on one
folder"). Outputs are written atomically, so a lost race costs time, never a file."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from lseg.errors import LSegError
from lseg.io import create_exclusive, hidden_sibling, pid_exists, remove_stale_temp_files, write_error

__all__ = ["HEARTBEAT", "STALE_AFTER", "ClaimSet", "hold_recipe", "remove_stale_claims"]

#: Seconds between refreshes of the claims a worker holds (their mtime).
HEARTBEAT = 60.0
#: A claim not refreshed for this long is stale whoever holds it (another host's crashed job).
STALE_AFTER = 600.0

_SUFFIX = ".claim"


def _read_file(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(encoding="utf-8")
    return ""


def _host() -> str:
    """Host name and pid namespace: pids compare only within one (containers share host names)."""
    namespace = 0
    with contextlib.suppress(OSError):
        namespace = os.stat("/proc/self/ns/pid").st_ino
    return f"{socket.gethostname()}/{namespace}"


def _start_time(pid: int) -> str | None:
    """When ``pid`` started (boot id + clock ticks since boot), None where /proc cannot tell."""
    stat = _read_file(Path(f"/proc/{pid}/stat"))
    fields = stat.rsplit(")", 1)[1].split() if ")" in stat else []
    if len(fields) <= 19:
        return None
    return f"{_read_file(Path('/proc/sys/kernel/random/boot_id')).strip()}:{fields[19]}"  # field 22: starttime


def _stale(path: Path, content: str, host: str) -> bool:
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return False  # released meanwhile: the caller tries again
    with contextlib.suppress(ValueError, KeyError, TypeError):  # garbage, or (no hard links) not yet filled
        info = json.loads(content)
        if info["host"] == host:  # stale unless its process (not a reuse of its pid) is alive
            pid, start = int(info["pid"]), info.get("start")
            return not (pid_exists(pid) and (start is None or _start_time(pid) in (None, start)))
    return age > STALE_AFTER


def _remove_stale(path: Path, content: str) -> None:
    """Remove the stale claim ``path`` read as ``content``, unless a live one replaced it meanwhile."""
    # Named as a claim, so that if this process dies before unlinking it, remove_stale_claims does.
    grave = hidden_sibling(path, f".stale-{secrets.token_hex(4)}{_SUFFIX}")
    try:
        os.rename(path, grave)
    except OSError:
        return  # already removed or taken over by another worker
    if _read_file(grave) != content:
        # A worker took it over between our read and our rename: put its claim back (unless a third
        # one claimed the place meanwhile; then two may compute this output, atomically).
        with contextlib.suppress(OSError):
            os.link(grave, path)
    with contextlib.suppress(OSError):
        os.unlink(grave)


class ClaimSet(contextlib.AbstractContextManager):
    """The claims one batch job holds (their files refreshed every ``heartbeat`` s); as a context
    manager, releases those still held however the block ends (SIGKILL leaves them stale)."""

    def __init__(self, heartbeat: float = HEARTBEAT) -> None:
        self._host = _host()
        self._identity = {"host": self._host, "pid": os.getpid(), "start": _start_time(os.getpid())}
        self._held: dict[Path, tuple[Path, str]] = {}
        self._heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self, output: str | os.PathLike[str], extra: dict | None = None) -> bool:
        """Claim ``output`` (its folder is created; ``extra`` is stored in the claim): True if this job
        now holds it, False if a live worker does; :class:`OutputWriteError` if it cannot be created."""
        target = Path(os.fspath(output))
        path = hidden_sibling(target, _SUFFIX)
        mine = json.dumps({**self._identity, "token": secrets.token_hex(8), "output": target.name, **(extra or {})})
        for _ in range(5):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                created = create_exclusive(path, mine.encode("utf-8"))
            except OSError as e:
                raise write_error(target, e) from None
            if created:
                self._held[target] = (path, mine)
                if self._thread is None and self._heartbeat > 0:
                    self._stop.clear()
                    self._thread = threading.Thread(target=self._beat, name="lseg-claims", daemon=True)
                    self._thread.start()
                return True
            content = _read_file(path)
            if not _stale(path, content, self._host):
                if path.exists():
                    return False
                continue  # released meanwhile
            _remove_stale(path, content)
            remove_stale_temp_files(target.parent)  # the dead job's half-written files (a big .npy)
        return False  # contended on every try: leave it to the others

    def release(self, output: str | os.PathLike[str]) -> None:
        """Give up the claim on ``output`` (after writing it, or failing to)."""
        held = self._held.pop(Path(os.fspath(output)), None)
        if held is not None and _read_file(held[0]) == held[1]:  # still ours (not taken over as stale)
            with contextlib.suppress(OSError):
                os.unlink(held[0])

    def __exit__(self, *exc_info: object) -> None:
        """Release every claim still held and stop the heartbeat."""
        for target in list(self._held):
            self.release(target)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat):
            for path, _ in list(self._held.values()):
                with contextlib.suppress(OSError):
                    os.utime(path)


def remove_stale_claims(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the stale claims (of killed jobs) under ``folder``; returns the removed files."""
    root = Path(os.fspath(folder)).expanduser()
    host = _host()
    removed = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for fn in filenames:
            path = Path(dirpath) / fn
            if fn.startswith(".") and fn.endswith(_SUFFIX):
                content = _read_file(path)
                if _stale(path, content, host):
                    _remove_stale(path, content)
                    removed.append(path)
    return removed


_JOB_PREFIX = "lseg-job-"


def hold_recipe(claims: ClaimSet, folder: Path, recipe_digest: str, what: str) -> None:
    """Mark ``folder`` as written with ``recipe_digest`` by this job (a claim held by ``claims``);
    :class:`LSegError` if a live job with other settings writes there."""
    mine = folder / f"{_JOB_PREFIX}{secrets.token_hex(6)}"
    claims.take(mine, extra={"recipe": recipe_digest})
    host = _host()
    for path in sorted(folder.glob(f".{_JOB_PREFIX}*{_SUFFIX}")):
        content = _read_file(path)
        if path == hidden_sibling(mine, _SUFFIX) or _stale(path, content, host):
            continue
        try:
            theirs = json.loads(content)
        except ValueError:
            continue
        if theirs.get("recipe") != recipe_digest:
            claims.release(mine)
            raise LSegError(f"another lseg job (pid {theirs.get('pid')} on {str(theirs.get('host')).split('/')[0]}) "
                            f"is writing into {folder} with other settings: wait for it to finish, or {what} "
                            "into another folder")
