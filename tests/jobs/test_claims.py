"""Several jobs on one output folder split the work (issue 11, class 7): each output is claimed by
one worker with a claim file created atomically and complete (``lseg.io.create_exclusive``), released when it is written,
and found stale when its process is gone - so two workers each compute about half, no output is
computed twice, and a worker killed with SIGKILL at any point leaves nothing that stops the next run."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_inputs import cli_env, scene
from PIL import Image

from lseg.cli import main
from lseg.io import remove_stale_temp_files
from lseg.jobs.claims import STALE_AFTER, ClaimSet, _host, remove_stale_claims

MODEL = ["--random-weights", "lseg_tiny_test", "--size", "32", "--batch-size", "2", "-q"]
N = 40


@pytest.fixture(scope="module")
def forty_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("forty")
    for i in range(N):
        Image.fromarray(scene(24 + i % 5, 32, seed=i)).save(folder / f"img{i:02d}.png")
    return folder


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# A worker that imports torch and builds the model (seconds, and uneven on a busy machine), then says
# it is ready and waits for the start signal: the workers start their loops together, as jobs started
# at once would if starting up took no time (the tiny model computes an image in milliseconds).
WORKER = r"""
import sys, time
from pathlib import Path
import lseg.cli
import lseg.cli.common
build = lseg.cli.common.make_predictor
def make_predictor(*args):
    predictor = build(*args)
    Path(sys.argv[1]).touch()
    while not Path(sys.argv[2]).exists():
        time.sleep(0.01)
    return predictor
lseg.cli.common.make_predictor = make_predictor
sys.exit(lseg.cli.main(sys.argv[3:]))
"""


def _start_together(n: int, tmp_path: Path, *args: str) -> list[subprocess.Popen[str]]:
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / f"ready{i}"), str(tmp_path / "go"), *args],
                                env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for i in range(n)]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready{i}").exists() for i in range(n)) and time.monotonic() < deadline:
        assert all(w.poll() is None for w in workers), [w.communicate()[1] for w in workers]
        time.sleep(0.02)
    (tmp_path / "go").touch()
    return workers


def _expected(command: str) -> set[str]:
    if command == "segment":
        return {f"img{i:02d}_{kind}" for i in range(N) for kind in ("labels.png", "overlay.png", "labels.json")}
    return {f"img{i:02d}.{e}" for i in range(N) for e in ("npy", "json")} | {"features.json"}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["segment", "features"])
def test_two_workers_split_the_work(command, forty_images, tmp_path):
    """Two workers started together on one folder both succeed, share the work, and leave exactly the
    outputs (no claim or temp file). [features] is also the engine's "concurrent features workers
    share a folder" (they start up side by side too: their own imports and set-up run unsynchronised)."""
    out = tmp_path / "out"
    args = [command, str(forty_images), "-o", str(out), *MODEL] + (["-l", "sky,grass"] if command == "segment" else [])
    workers = _start_together(2, tmp_path, *args)
    errs = [w.communicate(timeout=600)[1] for w in workers]
    written = []
    for w, err in zip(workers, errs):
        assert w.returncode == 0, err
        m = re.search(r"(\d+) written, (\d+) already done, 0 failed(?:, (\d+) left to other workers)?", err)
        assert m, err
        written.append(int(m.group(1)))
    print(f"{command}: the two workers computed {written} of {N}")  # shown with pytest -s
    assert sum(written) == N, errs  # every output computed once, by one of them
    # Both took part. How evenly they split depends on how the OS schedules two processes on a
    # loaded machine (20/20 and 22/18 when quiet, 8/32 seen under CI load), so it is reported, not
    # asserted; what must hold is above and below: every output computed once, nothing left over.
    assert all(n >= 1 for n in written), (written, errs)
    assert _files(out) == _expected(command)  # every output present once, no claim or temp file left


@pytest.mark.slow
def test_a_worker_killed_at_random_points_leaves_nothing_that_stops_the_next_run(forty_images, tmp_path, capsys):
    """SIGKILL after a random number of outputs, twice, with a second worker running beside the
    first: the dead worker's claims are found stale (its pid is gone), the next run completes. The
    second round first deletes ten images' outputs, so that it has work whatever the first left."""
    rng = random.Random(int(os.environ.get("LSEG_TEST_SEED", "11")))
    out = tmp_path / "out"
    args = ["segment", str(forty_images), "-l", "sky,grass", "-o", str(out), *MODEL]
    for round_ in range(2):
        if round_:  # the other worker may have finished everything (it takes over the dead one's claims)
            for i in rng.sample(range(N), 10):
                for kind in ("labels.png", "overlay.png", "labels.json"):
                    (out / f"img{i:02d}_{kind}").unlink(missing_ok=True)
        # Started together (after their imports), so the other worker really runs beside the victim and
        # leaves it the images it claims: started apart, on a busy machine the victim could be killed
        # before the other one began, and the other did everything (the second round had nothing to do).
        (tmp_path / f"round{round_}").mkdir()
        victim, other = _start_together(2, tmp_path / f"round{round_}", *args)
        target = len(_files(out)) + rng.randint(2, 16)
        deadline = time.monotonic() + 300
        while len(_files(out)) < target and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) in (-signal.SIGKILL, 0)
        victim.stderr.close()
        other.communicate(timeout=600)
        assert other.returncode == 0
    assert main(args) == 0
    assert "0 failed" in capsys.readouterr().err
    assert _files(out) == _expected("segment")


@pytest.mark.slow
def test_a_run_with_nothing_left_to_do_still_removes_what_a_killed_worker_left(forty_images, tmp_path, capsys):
    """When the other worker finished everything, the re-runs above have nothing to do: the killed
    worker's job claim and temp file are removed all the same (they stayed until a run had work)."""
    from lseg.io.atomic import _host_tag

    out = tmp_path / "out"
    args = ["segment", str(forty_images / "img00.png"), "-l", "sky,grass", "-o", str(out), *MODEL]
    assert main(args) == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    _claim_file(out / "lseg-job-0123456789ab", host=_host(), pid=int(dead.stdout), start=None, recipe="x")
    (out / f".img00_overlay.png.{_host_tag()}-{int(dead.stdout)}-0123abcd.tmp.png").write_bytes(b"half")
    assert main(args) == 0
    assert "0 written, 1 already done" in capsys.readouterr().err
    assert _files(out) == {f"img00_{kind}" for kind in ("labels.png", "overlay.png", "labels.json")}


# ------------------------------------------------------------------------------ claims themselves

def _claim_file(target: Path, **info: object) -> Path:
    path = target.with_name(f".{target.name}.claim")
    path.write_text(json.dumps(info))
    return path


def test_claims_are_exclusive_and_released(tmp_path):
    target = tmp_path / "sub" / "a.npy"
    with ClaimSet() as one, ClaimSet() as two:
        assert one.take(target) and (tmp_path / "sub" / ".a.npy.claim").is_file()
        assert not two.take(target)  # held by a live worker (this process)
        one.release(target)
        assert two.take(target)
    assert not list(tmp_path.rglob("*.claim"))  # released on exit


def test_stale_claims_are_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os, lseg.jobs.claims as c; print(os.getpid(), c._start_time(os.getpid()))"],
                          capture_output=True, text=True, env=cli_env(), check=True)
    dead_pid, dead_start = int(dead.stdout.split()[0]), dead.stdout.split()[1]  # (stale even if the pid is reused)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = _host()
        cases = {
            "dead.npy": {"host": host, "pid": dead_pid, "start": dead_start},  # its process is gone: stale
            "reused.npy": {"host": host, "pid": sleeper.pid, "start": "another-boot:1"},  # pid reused: stale
            "live.npy": {"host": host, "pid": sleeper.pid, "start": None},  # a live process: kept
            "remote.npy": {"host": f"{socket.gethostname()}-elsewhere/1", "pid": 1, "start": "x"},  # another host: kept
            "remote_old.npy": {"host": "elsewhere/1", "pid": 1, "start": "x"},  # another host, not refreshed: stale
        }
        for name, info in cases.items():
            _claim_file(tmp_path / name, **info)
        old = time.time() - STALE_AFTER - 60
        os.utime(tmp_path / ".remote_old.npy.claim", (old, old))
        # unreadable (only a file system without hard links leaves a claim half-written): judged by age
        (tmp_path / ".half_written.npy.claim").write_text("")
        with ClaimSet() as claims:
            taken = {name for name in [*cases, "half_written.npy"] if claims.take(tmp_path / name)}
        assert taken == {"dead.npy", "reused.npy", "remote_old.npy"}
        assert sorted(p.name for p in remove_stale_claims(tmp_path)) == []  # the live ones stay
        os.utime(tmp_path / ".half_written.npy.claim", (old, old))
        assert [p.name for p in remove_stale_claims(tmp_path)] == [".half_written.npy.claim"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_holder_refreshes_its_claims(tmp_path):
    """Another host's claim is judged by its age: a live holder keeps it fresh (heartbeat)."""
    target = tmp_path / "a.npy"
    with ClaimSet(heartbeat=0.05) as claims:
        assert claims.take(target)
        claim = tmp_path / ".a.npy.claim"
        old = time.time() - STALE_AFTER - 60
        os.utime(claim, (old, old))
        deadline = time.monotonic() + 10
        while claim.stat().st_mtime < time.time() - 60 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert claim.stat().st_mtime > time.time() - 60


def test_a_worker_killed_while_taking_a_claim_leaves_no_claim(tmp_path):
    """SIGKILL at the worst moment of ``take`` (its claim's content written, not yet in place)
    leaves only a temp file: the next job claims the output at once and its start-up cleanup
    removes the temp file. (An empty claim file, as ``O_EXCL`` + write left it, blocked the output
    for STALE_AFTER seconds: CI saw a re-run skip it.)"""
    target = tmp_path / "a.npy"
    code = ("import os, signal, lseg.jobs.claims as c\n"
            "os.link = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
            f"c.ClaimSet().take({str(target)!r})\n")
    killed = subprocess.run([sys.executable, "-c", code], env=cli_env(), check=False)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / ".a.npy.claim").exists()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith("..a.npy.claim.") and ".tmp" in left[0]
    with ClaimSet() as claims:
        assert claims.take(target)
    assert [p.name for p in remove_stale_temp_files(tmp_path)] == left


def test_claims_on_a_file_system_without_hard_links(tmp_path, monkeypatch):
    """``link()`` refused (FAT, some FUSE/SMB mounts): claims fall back to ``O_EXCL`` + write."""
    def no_links(*args):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "a.npy"
    with ClaimSet() as one, ClaimSet() as two:
        assert one.take(target) and not two.take(target)
        assert json.loads((tmp_path / ".a.npy.claim").read_text())["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []  # released, no temp file left


def test_a_stale_claim_being_removed_when_its_remover_is_killed_is_removed_next_time(tmp_path):
    """Removing a stale claim renames it away first; a remover killed before the unlink leaves the
    renamed file, which is named as a claim, so the next start-up cleanup removes it."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = _claim_file(tmp_path / "a.npy", host=_host(), pid=int(dead.stdout), start=None)
    code = ("import os, signal, lseg.jobs.claims as c\n"
            "os.unlink = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
            f"c.remove_stale_claims({str(tmp_path)!r})\n")
    assert subprocess.run([sys.executable, "-c", code], env=cli_env(), check=False).returncode == -signal.SIGKILL
    (grave,) = tmp_path.iterdir()
    assert grave != path and grave.name.endswith(".claim")
    assert remove_stale_claims(tmp_path) == [grave] and list(tmp_path.iterdir()) == []


def test_taking_over_a_dead_workers_claim_removes_its_temp_files(tmp_path):
    """A worker killed mid-write while another runs on: the survivor, taking over its unit, removes its
    half-written file at once (not at the next run: a big .npy would fill the disk meanwhile)."""
    from lseg.io.atomic import _host_tag

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    _claim_file(tmp_path / "a.npy", host=_host(), pid=dead, start=None)
    half = tmp_path / f".a.npy.{_host_tag()}-{dead}-0123abcd.tmp.npy"
    half.write_bytes(b"half")
    with ClaimSet(heartbeat=0) as claims:
        assert claims.take(tmp_path / "a.npy") and not half.exists()
