"""lseg.console: one bar for every long job; into a log file it redraws every LOG_INTERVAL seconds,
not 10 times a second."""

from __future__ import annotations

import subprocess
import sys

from hostile_inputs import cli_env

LOOP = ("import time\nfrom lseg.console import progress_bar\n"
        "for _ in progress_bar(range(20), desc='work', unit='it'):\n    time.sleep(0.005)\n")


def _redraws(env: dict[str, str]) -> int:
    env = {k: v for k, v in env.items() if k != "TQDM_DISABLE"}  # the tests' environment hides bars
    proc = subprocess.run([sys.executable, "-c", LOOP], env=env, capture_output=True, check=True)  # bytes: keep \r
    assert b"work: 100%" in proc.stderr and b"20/20" in proc.stderr
    assert b"\r" not in proc.stderr  # outside a terminal each frame is a line of its own
    return sum(line.startswith(b"work:") for line in proc.stderr.splitlines())


def test_a_bar_into_a_pipe_redraws_at_the_start_and_the_end_only():
    assert _redraws(cli_env()) <= 3  # tqdm's default: one redraw per item here (~20)


def test_tqdm_mininterval_in_the_environment_wins():
    assert _redraws({**cli_env(), "TQDM_MININTERVAL": "0"}) >= 15


def test_tqdm_disable_in_the_environment_hides_the_bars():
    proc = subprocess.run([sys.executable, "-c", LOOP], env={**cli_env(), "TQDM_DISABLE": "1"}, capture_output=True,
                          check=True)
    assert b"work:" not in proc.stderr


def test_a_tqdm_mininterval_that_is_not_a_number_is_one_warning_and_the_default():
    env = {k: v for k, v in cli_env().items() if k != "TQDM_DISABLE"}
    loops = f"{LOOP}for _ in progress_bar(range(2), desc='more', unit='it'):\n    pass\n"
    proc = subprocess.run([sys.executable, "-c", loops], env={**env, "TQDM_MININTERVAL": "5s"},
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: ignoring TQDM_MININTERVAL='5s': not a number of seconds (e.g. TQDM_MININTERVAL=5)"]
    assert sum(line.startswith("work:") for line in proc.stderr.splitlines()) <= 3  # LOG_INTERVAL, as unset


def test_python_warnings_are_one_warning_line_once_logging_is_set_up():
    code = ("import warnings\nfrom lseg.console import setup_logging\nsetup_logging()\n"
            "warnings.warn('Corrupt EXIF data.  Expecting to read\\n12 bytes')\n")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=True)
    assert proc.stderr == "warning: Corrupt EXIF data. Expecting to read 12 bytes\n"
