"""``lseg`` command line (docs/cli.md): one module per command group, each with ``register(subparsers)``.
Every user error is one line on stderr (``error: ...``) and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from lseg.cli import bench, features, models, segment
from lseg.cli.parser import Parser
from lseg.errors import LSegError, one_line

__all__ = ["EXTENSIONS", "build_parser", "main"]

#: Modules of the commands of extras (Lightning, Gradio, ONNX: imported only when their command runs).
EXTENSIONS = ("lseg.cli.train", "lseg.cli.eval", "lseg.cli.demo", "lseg.cli.export")


def build_parser() -> argparse.ArgumentParser:
    """The ``lseg`` parser with every command (those of a missing extra left out); imports no torch."""
    from lseg import __version__

    parser = Parser(prog="lseg", description="Language-driven semantic segmentation (LSeg).")
    parser.add_argument("--version", action="version", version=f"lseg {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (segment, features, models, bench):
        group.register(sub)
    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is None or not name.startswith(e.name):  # a missing dependency is a real error
                raise
            continue
        module.register(sub)
    _add_verbose(sub)
    return parser


def _add_verbose(sub: argparse._SubParsersAction) -> None:
    """``-v`` after the command too; SUPPRESS keeps a ``-v`` given before it."""
    for p in sub.choices.values():
        if "--verbose" not in p._option_string_actions:
            p.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                           help="debug logging and full tracebacks")
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_verbose(action)


@contextlib.contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """SIGTERM (SLURM, Kubernetes, ``kill``, ``timeout``) stops a command as Ctrl-C does (KeyboardInterrupt);
    a second SIGINT or SIGTERM kills at once. Yields the signals received; handlers ignored or set by a caller are kept."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    ours = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    old = {s: signal.getsignal(s) for s in ours}
    mine = [s for s in ours if old[s] is ours[s]]
    chld = getattr(signal, "SIGCHLD", None)  # not on Windows
    deferred: list[int] = []

    def resend(signum: int) -> None:
        while _importing(sys._current_frames().get(threading.main_thread().ident)):
            time.sleep(0.01)
        deferred.clear()
        signal.raise_signal(signum)

    def stop(signum: int, frame: object) -> None:
        # a KeyboardInterrupt inside an import can be swallowed (torch's C init: the command went on) or break
        # the module (a traceback later): it is raised once the import is done
        if _importing(frame):
            if deferred:  # a second signal kills at once, also inside an import that never ends
                os._exit(128 + signum)
            deferred.append(signum)
            threading.Thread(target=resend, args=(signum,), daemon=True).start()
            return
        received.append(signum)
        # SLURM signals every process of a job: torch's SIGCHLD handler would raise on DataLoader workers it killed
        if chld is not None and chld not in old:
            old[chld] = signal.signal(chld, signal.SIG_DFL)
        for s in mine:  # the kernel ignores SIG_DFL signals to pid 1 (a container's first process)
            signal.signal(s, signal.SIG_DFL if os.getpid() != 1 else lambda n, f: os._exit(128 + n))
        raise KeyboardInterrupt

    try:
        for s in mine:
            signal.signal(s, stop)
        yield received
    finally:
        for s, handler in old.items():
            if s in mine or s == chld:
                signal.signal(s, handler)


def _importing(frame: Any) -> bool:
    while frame is not None and not frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back
    return frame is not None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``lseg`` command; the exit code (0, 1: some files failed, 2: an error, 130: interrupted by
    Ctrl-C, 143: by SIGTERM)."""
    with _stop_signals() as received:
        try:
            code = _run(argv)
        except KeyboardInterrupt:  # also before the command runs (its imports, the parser)
            print("interrupted", file=sys.stderr)
            code = 130
    return 128 + received[0] if received and code == 130 else code


def _run(argv: Sequence[str] | None) -> int:
    from lseg.console import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        from lseg.inference.allocator import tune_allocator

        tune_allocator()  # before any model is built
        return int(args.func(args) or 0)
    except LSegError as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:  # torch's CPU and CUDA allocators raise RuntimeErrors
        if args.verbose or not (isinstance(e, MemoryError) or "allocate" in str(e) or "out of memory" in str(e)):
            raise
        print(f"error: out of memory ({one_line(e)}); lower the sizes (--size, --resolution, --batch-size) or "
              "free memory", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader closed the pipe (`lseg weights list | head -1`): a normal end
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else the flush at exit fails
        return 0

