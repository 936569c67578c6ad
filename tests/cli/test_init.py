"""``lseg`` itself: ``main`` and the command list (``--help``)."""

from __future__ import annotations

import pytest

from lseg.cli import main


def test_random_weights_and_help(photos, tmp_path, capsys):
    assert main(["segment", str(photos / "b.png"), "-l", "a,b", "--random-weights", "lseg_tiny_test",
                 "-o", str(tmp_path / "o"), "-q"]) == 0
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "segment" in capsys.readouterr().out


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: you "
                                                                "tried to allocate 204800000000 bytes.")])
def test_out_of_memory_is_one_line(monkeypatch, capsys, error):
    import lseg.cli.models

    def exhausted(args):
        raise error

    monkeypatch.setattr(lseg.cli.models, "_cmd_weights", exhausted)  # bound when the parser is built
    assert main(["weights", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory (") and err.count("\n") == 1


@pytest.fixture
def default_signals():  # type: ignore[no-untyped-def]
    """SIGINT and SIGTERM as a fresh ``lseg`` process has them (libraries the suite loads change them)."""
    import signal

    old = {s: signal.signal(s, h) for s, h in ((signal.SIGINT, signal.default_int_handler),
                                                (signal.SIGTERM, signal.SIG_DFL))}
    yield
    for s, h in old.items():
        signal.signal(s, h)


def test_sigterm_stops_a_command_as_ctrl_c_does(default_signals, monkeypatch, capsys):
    """SIGTERM (SLURM, Kubernetes, kill) killed lseg outright: no summary, claims and temp files left."""
    import os
    import signal
    import time

    import lseg.cli.models

    seen = {}

    def preempted(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises at once
        except KeyboardInterrupt:
            seen["second"] = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
            raise

    monkeypatch.setattr(lseg.cli.models, "_cmd_weights", preempted)
    assert main(["weights", "list"]) == 143
    assert capsys.readouterr().err == "interrupted\n"
    assert seen["second"] == (signal.SIG_DFL, signal.SIG_DFL)  # a second signal kills at once
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the caller's handlers back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_to_every_process_of_a_job_is_no_dataloader_error(default_signals, monkeypatch, capsys):
    """scancel signals the DataLoader workers too: torch's SIGCHLD handler raised "worker killed by signal"
    while the command was stopping (a traceback, exit 1, no checkpoint saved)."""
    import os
    import signal
    import subprocess
    import time

    import torch
    from torch.utils.data import DataLoader

    import lseg.cli.models

    def preempted(args):
        batches = iter(DataLoader(list(range(100)), num_workers=1))
        next(batches)
        worker = batches._workers[0].pid  # type: ignore[attr-defined]
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:  # stopping (a checkpoint being saved) as the same signal kills the worker
            subprocess.run(["kill", "-TERM", str(worker)], check=True)  # not from its parent: it dies of it
            for _ in range(200):
                time.sleep(0.01)  # torch's SIGCHLD handler raised here
            raise

    assert torch.multiprocessing.get_start_method() == "fork"
    monkeypatch.setattr(lseg.cli.models, "_cmd_weights", preempted)
    assert main(["weights", "list"]) == 143
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.slow  # SIGTERM to a process
def test_the_cli_prints_the_summary_on_sigterm(tmp_path):
    import signal

    from hostile_inputs import signal_segment_midway

    code, err = signal_segment_midway(tmp_path, signal.SIGTERM)
    assert code == 143
    assert "segment (into" in err and "already done" in err and "; interrupted" in err
    assert not list((tmp_path / "o").glob(".*"))  # no claim or temp file left


def test_a_signal_during_an_import_stops_the_command_once_it_is_done(default_signals, tmp_path, monkeypatch, capsys):
    """torch's C init swallows a KeyboardInterrupt raised in it: a SIGTERM or Ctrl-C in the first seconds of a
    command was lost (it went on and exited 0) or left numpy half-imported (a traceback later)."""
    import sys

    import lseg.cli
    import lseg.cli.models

    (tmp_path / "swallower.py").write_text("import os, signal, time\ntry:  # as torch's C init\n"
                                           "    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(0.5)\n"
                                           "except BaseException:\n    pass\nDONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ran = []

    def command(args):
        import time

        import swallower

        ran.append(swallower.DONE)
        time.sleep(3)

    monkeypatch.setattr(lseg.cli.models, "_cmd_weights", command)
    try:
        assert main(["weights", "list"]) == 143
    finally:
        sys.modules.pop("swallower", None)
    assert ran == [True] and capsys.readouterr().err == "interrupted\n"


def test_a_signal_before_the_command_runs_is_one_line_and_its_exit_code(default_signals, monkeypatch, capsys):
    """A SIGTERM while lseg imported its console module or built the parser: a traceback and exit code 130."""
    import os
    import signal

    import lseg.cli

    def parser():
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(lseg.cli, "build_parser", parser)
    assert main(["weights", "list"]) == 143
    assert capsys.readouterr().err == "interrupted\n"


_SECOND_SIGNAL = """
import os, signal, sys, time
import lseg.cli.models
from lseg.cli import main
def preempted(args):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except KeyboardInterrupt:
        os.kill(os.getpid(), signal.SIGTERM)  # the second one, while stopping: kills at once
        time.sleep(60)
        raise
lseg.cli.models._cmd_weights = preempted
signal.signal(signal.SIGTERM, signal.SIG_DFL)
sys.exit(main(["weights", "list"]))
"""


@pytest.mark.parametrize("pid1", [False, True])
def test_a_second_sigterm_kills_at_once_also_as_pid_1(pid1):
    """As a container's first process (pid 1: ``docker run``, a Kubernetes pod), where the kernel ignores
    signals left to their default action, a second SIGTERM or Ctrl-C did nothing."""
    import shutil
    import subprocess
    import sys

    from hostile_inputs import cli_env

    command = [sys.executable, "-c", _SECOND_SIGNAL]
    if pid1:
        if not shutil.which("unshare") or subprocess.run(["unshare", "--pid", "--fork", "true"], check=False).returncode:
            pytest.skip("no pid namespace here (unshare --pid)")
        command = ["unshare", "--pid", "--fork", *command]
    done = subprocess.run(command, check=False, env=cli_env(), capture_output=True, text=True, timeout=50)
    assert done.returncode in (143, -15), done.stderr
    assert "interrupted" not in done.stderr  # killed, not stopped after the sleep


def test_a_platform_without_sigchld_runs_and_stops_commands(default_signals, monkeypatch, capsys):
    """Windows has no SIGCHLD: every command failed as it ended (the handlers put back named it)."""
    import signal

    monkeypatch.delattr(signal, "SIGCHLD")
    assert main(["weights", "list"]) == 0
    test_sigterm_stops_a_command_as_ctrl_c_does(None, monkeypatch, capsys)
