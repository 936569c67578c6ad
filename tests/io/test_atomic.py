"""Tests for lseg.io.atomic: atomic writes, and the stale-temp cleanup after a crash in any writer.

Faults of the machine, not of the input (issue 11, classes 2 and 4), from the user's side:

* special files (a FIFO, a socket, a device) given as an argument or found in a folder are refused
  without blocking;
* real disk faults - a full disk (a small tmpfs the test mounts), a read-only output folder (a
  read-only bind mount), a missing permission (root's permission override dropped with ``setpriv``), a
  file name too long for the temp file name - end in one line per file (``error: cannot write ...:
  No space left on device``), the batch goes on (one file's fault) or stops cleanly (a full or
  read-only disk), no temp file is left, and a re-run after the fault is fixed completes;
* ``features --resolution original`` writes no memory map, so a full disk is an error, not SIGBUS.

The tests mount file systems and so need root (CAP_SYS_ADMIN); where mounting is refused they skip
with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hostile_inputs import one_error_line, run_cli_commands, scene
from io_helpers import leftovers
from PIL import Image

from lseg.cli import main
from lseg.errors import ImageLoadError, OutputWriteError
from lseg.io import (
    atomic_files,
    atomic_write,
    check_writable,
    create_exclusive,
    iter_frames,
    list_images,
    load_image,
    remove_stale_temp_files,
)


def test_atomic_write_success_and_permissions(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "out.bin"
    result = atomic_write(target, lambda p: p.write_bytes(b"payload"))
    assert result == target and target.read_bytes() == b"payload"
    reference = tmp_path / "reference.bin"
    reference.write_bytes(b"")
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    assert leftovers(target.parent) == []


def test_atomic_write_failure_leaves_no_temp_and_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    seen: list[Path] = []

    def broken(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.suffix == ".png"
        tmp.write_bytes(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert not seen[0].exists() and leftovers(tmp_path) == []

    def interrupted(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "other.png", interrupted)
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_atomic_files_moves_every_file_main_one_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "graph.onnx"
    moved: list[str] = []
    real_replace = os.replace

    def spy(src: Path, dst: Path) -> None:
        moved.append(Path(dst).name)
        real_replace(src, dst)

    with atomic_files(target) as folder:
        assert folder.parent == target.parent and folder.is_dir()
        (folder / "graph.onnx").write_bytes(b"graph")
        (folder / "graph.onnx.data").write_bytes(b"weights")
        assert not target.exists()  # nothing visible until the block completes
        assert remove_stale_temp_files(tmp_path) == []  # a live process's temp folder is kept
        monkeypatch.setattr(os, "replace", spy)
    monkeypatch.undo()
    assert moved == ["graph.onnx.data", "graph.onnx"]  # the graph appears once its data is in place
    assert sorted(p.name for p in target.parent.iterdir()) == ["graph.onnx", "graph.onnx.data"]
    with pytest.raises(RuntimeError, match="export failed"), atomic_files(target) as folder:
        (folder / "graph.onnx").write_bytes(b"half")
        raise RuntimeError("export failed")
    assert target.read_bytes() == b"graph" and leftovers(target.parent) == []


# ------------------------------------------------------------------------- a crash in every writer

#: Each writer is killed (``os._exit``: no ``finally``, no cleanup) after its temp file holds part of
#: the output; the temp entry it leaves must be one that remove_stale_temp_files recognises.
CRASHES = {
    "atomic_write": """
from lseg.io import atomic_write
atomic_write(out / "a.png", lambda p: (p.write_bytes(b"half"), os._exit(0)))
""",
    "atomic_files": """
from lseg.io import atomic_files
with atomic_files(out / "g.onnx") as folder:
    (folder / "g.onnx").write_bytes(b"half")
    os._exit(0)
""",
    "save_pretrained": """
import lseg, lseg.pretrained.checkpoints
def save_file(tensors, path, metadata=None):
    Path(path).write_bytes(b"half")
    os._exit(0)
lseg.pretrained.checkpoints.save_file = save_file
lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), out)
""",
    "onnx_export": """
import torch
from lseg.export import onnx
class Program:
    def save(self, path, external_data):
        Path(path).write_bytes(b"half")
        Path(path + ".data").write_bytes(b"half")
        os._exit(0)
torch.onnx.export = lambda *args, **kwargs: Program()
onnx._export_graph(torch.nn.Identity(), torch.zeros(1), out / "image_encoder.onnx", "x", "y", None, 18)
""",
    "train_checkpoint": """
import torch
from lseg.train import state
class Fabric:
    is_global_zero = True
def save(obj, path):
    Path(path).write_bytes(b"half")
    os._exit(0)
torch.save = save
state.save_checkpoint(Fabric(), out / "last.ckpt", {})
""",
}


#: Writers whose script imports torch and builds or exports a model (seconds, not tenths).
_HEAVY = {"save_pretrained", "onnx_export", "train_checkpoint"}


@pytest.mark.parametrize("writer", [pytest.param(w, marks=pytest.mark.slow) if w in _HEAVY else w for w in sorted(CRASHES)])
def test_a_crashed_writer_leaves_only_what_the_cleanup_removes(tmp_path: Path, writer: str) -> None:
    if writer == "train_checkpoint":
        pytest.importorskip("lightning")
    out = tmp_path / "out"
    out.mkdir()
    script = f"import os\nfrom pathlib import Path\nout = Path({str(out)!r})\n" + CRASHES[writer]
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    left = sorted(out.iterdir())
    assert left and all(p.name.startswith(".") and ".tmp" in p.name for p in left), left  # no output
    assert sorted(remove_stale_temp_files(out)) == left
    assert list(out.iterdir()) == []


MODEL = ["--random-weights", "lseg_tiny_test", "--size", "32", "-q"]


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _hidden(root: Path) -> list[Path]:
    return list(root.rglob(".*"))


def _images(folder: Path, n: int, h: int = 40, w: int = 56) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(scene(h, w, seed=i)).save(folder / f"img{i:02d}.png")
    return [f"img{i:02d}" for i in range(n)]


def _mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if r.returncode:
        pytest.skip(f"cannot mount ({' '.join(args)}): {r.stderr.strip()} - these tests need root with CAP_SYS_ADMIN")


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` up to ``leave`` free bytes."""
    st = os.statvfs(folder)
    filler = folder / "filler.bin"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


# ------------------------------------------------------------------------------ class 2: special files

@pytest.mark.timeout(60)
def test_fifo_socket_and_device_are_refused_without_blocking(tmp_path):
    """A FIFO named like an image blocked ``open()`` forever; a socket or device is no image either."""
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.png"))
    (tmp_path / "zero.png").symlink_to("/dev/zero")  # a character device that never ends
    os.mkfifo(tmp_path / "v.mp4")
    try:
        for name, kind in [("x.jpg", "a FIFO"), ("s.png", "a socket"), ("zero.png", "a character device")]:
            with pytest.raises(ImageLoadError, match=f"it is {kind}.*not a regular file"):
                load_image(tmp_path / name)
            with pytest.raises(ImageLoadError, match=f"it is {kind}"):
                next(iter_frames(tmp_path / name))
        with pytest.raises(ImageLoadError, match="it is a FIFO"):
            next(iter_frames(tmp_path / "v.mp4"))
        # found in a folder: listed, so that it is reported (not silently left out)
        assert [p.name for p in list_images(tmp_path)] == ["s.png", "x.jpg", "zero.png"]
    finally:
        sock.close()


@pytest.mark.timeout(120)  # a FIFO opened for reading blocks until a writer comes: a hang here is the bug
def test_cli_reports_special_files_and_finishes(tmp_path, cli):
    """``lseg segment``/``features`` on a folder with a FIFO, a socket and a device among images, and
    a FIFO given as an argument: each is one failed input, the images are written, exit 1."""
    folder = tmp_path / "photos"
    _images(folder, 2)
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "arg.jpg")
    os.mkfifo(folder / "clip.mp4")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.png"))
    try:
        for command in (["segment", "-l", "sky,grass"], ["features"]):
            out = tmp_path / command[0]
            r = cli(*command, str(folder), str(tmp_path / "arg.jpg"), "-o", str(out), *MODEL)
            assert r.returncode == 1, r.stderr
            assert "Traceback" not in r.stderr
            for name, kind in [("pipe.jpg", "a FIFO"), ("zero.png", "a character device"), ("sock.png", "a socket")]:
                assert f"failed: {folder / name}: " in r.stderr and f"it is {kind}" in r.stderr
            assert f"failed: {tmp_path / 'arg.jpg'}: " in r.stderr
            if command[0] == "features":
                assert f"failed: {folder / 'clip.mp4'}: " in r.stderr
                assert {"img00.npy", "img01.npy"} <= _files(out)
            else:
                assert {"img00_labels.png", "img01_overlay.png"} <= _files(out)
    finally:
        sock.close()


# ------------------------------------------------------------------------------ class 4: disk faults

def test_segment_on_a_full_disk_stops_cleanly_and_a_rerun_completes(tmp_path, capsys):
    stems = _images(tmp_path / "photos", 20)
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "seg"
        # room for the claims the loader takes ahead (4 KiB each) and a few images (12 KiB each)
        filler = _fill(disk, leave=96 << 10)
        args = ["segment", str(tmp_path / "photos"), "-l", "sky,grass", "-o", str(out), *MODEL]
        assert main(args) == 2  # stopped early
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and re.fullmatch(r"error: cannot write .*: No space left on device; free some "
                                                 r"space and re-run \(finished outputs are kept\)", lines[0])
        done = int(re.search(r"(\d+) written, 0 already done, 1 failed; stopped early\n", err).group(1))
        assert 0 < done < len(stems)
        assert not _hidden(out)  # temp files removed, claims released
        # an image's files appear together or not at all (never a label map without its overlay)
        made = {f.split("_")[0] for f in _files(out)}
        assert _files(out) == {f"{s}_{kind}" for s in made for kind in ("labels.png", "overlay.png", "labels.json")}
        filler.unlink()  # the fault is fixed
        assert main(args) == 0
        assert f"{len(stems) - done} written, {done} already done, 0 failed" in capsys.readouterr().err
        assert _files(out) == {f"{s}_{kind}" for s in stems for kind in ("labels.png", "overlay.png", "labels.json")}
        assert not _hidden(out)


@pytest.mark.slow  # a process of its own: SIGBUS would kill pytest
def test_features_at_original_resolution_on_a_full_disk_is_an_error_not_sigbus(tmp_path, run_cli, cli):
    """The upsampled features were written through a memory map: on a full tmpfs the store died of
    SIGBUS, and so did every re-run. Now the write fails with ENOSPC like any other (the re-run, with
    room on the disk, runs in this process)."""
    stems = _images(tmp_path / "photos", 6, 64, 64)  # 32 x 64 x 64 fp16 = 256 KiB each
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "feats"
        args = ["features", str(tmp_path / "photos"), "-o", str(out), "--resolution", "original", *MODEL]
        r = run_cli(*args)
        assert r.returncode == 2, r.stderr  # not -SIGBUS
        assert "Traceback" not in r.stderr
        assert re.search(r"cannot write \S+\.npy: No space left on device", r.stderr)
        done = int(re.search(r"(\d+) written, 0 already done, 1 failed; stopped early", r.stderr).group(1))
        assert 0 < done < len(stems)
        assert not _hidden(out)
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)  # the fault is fixed
        r = cli(*args)
        assert r.returncode == 0, r.stderr
        assert f"{len(stems) - done} written, {done} already done, 0 failed" in r.stderr
        assert _files(out) == {f"{s}.{e}" for s in stems for e in ("npy", "json")} | {"features.json"}
        for s in stems:
            assert np.load(out / f"{s}.npy").shape == (32, 64, 64)


def test_features_npy_on_a_full_disk_is_one_error_line(tmp_path, cli):
    """The network's own resolution is written with numpy's format: on a full disk that was a
    traceback (``OSError: 55296 requested and 28608 written``); now one line, as every write."""
    stems = _images(tmp_path / "photos", 8, 64, 64)  # 32 x 32 x 32 fp16 = 64 KiB each at --size 64
    with _tmpfs(tmp_path / "disk", "256k") as disk:
        out = disk / "feats"
        r = cli("features", str(tmp_path / "photos"), "-o", str(out), *MODEL[:2], "--size", "64", "-q")
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and "requested and" not in r.stderr
        assert re.search(r"cannot write \S+\.npy: No space left on device", r.stderr)
        assert not _hidden(out) and len(stems) > len(list(out.glob("*.npy")))


def test_read_only_output_folder(tmp_path, capsys):
    """A read-only file system: one line before any work; a folder whose outputs are all done
    already is fine (nothing to write)."""
    _images(tmp_path / "photos", 2)
    out = tmp_path / "out"
    out.mkdir()
    _mount("--bind", str(out), str(out))
    try:
        _mount("-o", "remount,bind,ro", str(out))
        for command in (["segment", "-l", "sky,grass"], ["features"]):
            assert main([*command, str(tmp_path / "photos"), "-o", str(out), *MODEL]) == 2
            line = one_error_line(capsys.readouterr().err)
            assert line.startswith(f"error: cannot write {out}: Read-only file system; ")
        with pytest.raises(OutputWriteError, match="Read-only file system") as info:
            atomic_write(out / "x.txt", lambda p: p.write_text("x"))
        assert info.value.fatal and isinstance(info.value, OSError)
        subprocess.run(["mount", "-o", "remount,bind,rw", str(out)], check=True)
        assert main(["segment", str(tmp_path / "photos"), "-l", "sky,grass", "-o", str(out), *MODEL]) == 0
        subprocess.run(["mount", "-o", "remount,bind,ro", str(out)], check=True)
        assert main(["segment", str(tmp_path / "photos"), "-l", "sky,grass", "-o", str(out), *MODEL]) == 0
        assert "0 written, 2 already done, 0 failed" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


def _without_root_override(tmp_path: Path) -> list[str]:
    """A command prefix that runs as root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so that
    permission bits apply (the interpreter lives under /root, which another user could not read)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed: cannot drop root's permission override")
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o555)
    r = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')"], capture_output=True,
                       check=False)
    probe.rmdir()
    if r.returncode == 0:
        pytest.skip("permission bits are not enforced even without CAP_DAC_OVERRIDE here")
    return prefix


@pytest.mark.slow  # processes without root's permission override
def test_missing_permission_one_line_per_file_and_the_rest_is_written(tmp_path):
    prefix = tuple(_without_root_override(tmp_path))
    photos = tmp_path / "photos"
    _images(photos, 1)
    _images(photos / "sub", 2)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub").chmod(0o555)  # one sub-folder of the output is not writable
    args = ["segment", str(photos), "-l", "sky,grass", "-o", str(out), *MODEL]
    # and the output folder itself not writable: one line, before any work
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    r, r_locked = run_cli_commands(args, ["features", str(photos), "-o", str(locked), *MODEL], prefix=prefix)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert lines == [f"error: cannot write {out / 'sub' / s}_labels.png: Permission denied; no permission to write "
                     "there: fix the folder's permissions or write to another folder" for s in ("img00", "img01")]
    assert _files(out) == {"img00_labels.png", "img00_overlay.png", "img00_labels.json"}
    assert r_locked.returncode == 2
    assert one_error_line(r_locked.stderr).startswith(f"error: cannot write {locked}: Permission denied; ")
    (out / "sub").chmod(0o755)  # fixed
    (r,) = run_cli_commands(args, prefix=prefix)
    assert r.returncode == 0 and "2 written, 1 already done, 0 failed" in r.stderr, r.stderr


def test_file_name_too_long_for_the_temp_name(tmp_path, capsys):
    """An output whose own name fits (255 bytes) is written although its temp file's name would not;
    one whose own name is too long fails alone, in one line, and the others are written."""
    photos = tmp_path / "photos"
    photos.mkdir()
    fits, too_long = "a" * 236, "b" * 250  # a..._overlay.png: 248 bytes; b..._labels.png: 261
    for stem in (fits, too_long, "c"):
        Image.fromarray(scene(20, 24)).save(photos / f"{stem}.png")
    out = tmp_path / "out"
    assert main(["segment", str(photos), "-l", "sky,grass", "-o", str(out), *MODEL]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    # the first file an input writes is its pending record (b..._labels.json: 262 bytes)
    assert lines == [(f"error: cannot write {out / too_long}_labels.json: File name too long; the name is too long for "
                     "the file system: rename the input or use a shorter output folder")]
    assert _files(out) == {f"{s}_{kind}" for s in (fits, "c") for kind in ("labels.png", "overlay.png", "labels.json")}
    assert not _hidden(out)
    feats = tmp_path / "feats"  # b...b.npy is 254 bytes: fits, its temp name is shortened
    assert main(["features", str(photos), "-o", str(feats), *MODEL]) == 0
    assert _files(feats) == {f"{s}.{e}" for s in (fits, too_long, "c") for e in ("npy", "json")} | {"features.json"}


@pytest.mark.parametrize(("code", "fatal"), [
    (errno.ENOSPC, True), (errno.EDQUOT, True), (errno.EROFS, True), (errno.EIO, True),
    (errno.EACCES, False), (errno.EPERM, False), (errno.ENAMETOOLONG, False), (errno.EFBIG, False),
])
def test_which_write_faults_stop_a_batch(tmp_path, code, fatal):
    """The disk as a whole (full, over quota, read-only, failing) stops a batch; one file's fault does not."""

    def writer(_: Path) -> None:
        raise OSError(code, os.strerror(code))

    with pytest.raises(OutputWriteError) as info:
        atomic_write(tmp_path / "a.png", writer)
    assert info.value.fatal is fatal and info.value.errno == code
    assert str(info.value).startswith(f"cannot write {tmp_path / 'a.png'}: {os.strerror(code)}; ")
    assert not list(tmp_path.iterdir())  # the temp file is removed


def test_a_writer_that_replaces_its_file_still_gets_the_umask_mode(tmp_path):
    """safetensors writes its own 0600 file over the temp path: the output gets 0o666 less the umask,
    as a plain open() would give (model.safetensors next to 0644 config.json in a shared folder)."""
    import torch
    from safetensors.torch import save_file

    target = atomic_write(tmp_path / "w.safetensors", lambda p: save_file({"x": torch.zeros(2)}, str(p)))
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # open(): 0o666 less the umask
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_no_free_temp_name_is_a_write_error_everywhere(tmp_path, monkeypatch):
    """Every temp name taken (100 tries) is reported as a write error by every caller, not a bare
    FileExistsError (a traceback from the command line)."""
    from lseg.io import atomic

    taken = tmp_path / ".taken"
    taken.touch()
    monkeypatch.setattr(atomic, "hidden_sibling", lambda target, tail: taken)
    with pytest.raises(OutputWriteError, match="could not create a temporary file next to it"):
        check_writable(tmp_path)
    with pytest.raises(OutputWriteError, match="could not create a temporary file next to it"):
        atomic_write(tmp_path / "a.txt", lambda p: p.write_text("x"))


def test_staged_refuses_a_name_too_long_before_any_file_moves(tmp_path):
    """A unit whose last file's name is too long (``lseg segment --heatmaps`` of an image with a
    243-byte stem) failed only at commit, after its first files had replaced the old ones: the files
    of a failed unit appeared, not none of them."""
    from lseg.io import Staged

    (tmp_path / "a_labels.png").write_text("old")
    staged = Staged()
    staged.write(tmp_path / "a_labels.png", lambda p: p.write_text("new"))
    with pytest.raises(OutputWriteError, match="File name too long; the name is too long") as info:
        staged.write(tmp_path / ("a" * 250 + "_heat_00_dog.png"), lambda p: p.write_text("new"))
    staged.discard()
    assert info.value.errno == errno.ENAMETOOLONG and not info.value.fatal  # that input fails, the job goes on
    assert (tmp_path / "a_labels.png").read_text() == "old" and os.listdir(tmp_path) == ["a_labels.png"]


def _staged(path: Path) -> None:
    from lseg.io import Staged

    staged = Staged()
    try:
        staged.write(path, lambda p: p.write_text("x"))
    finally:
        staged.discard()


@pytest.mark.parametrize("write", [
    lambda p: atomic_write(p, lambda t: t.write_text("x")), _staged, lambda p: create_exclusive(p, b"x"),
    lambda p: check_writable(p.parent), lambda p: contextlib.ExitStack().enter_context(atomic_files(p)),
])
def test_ctrl_c_as_a_temp_file_is_created_leaves_none(tmp_path, monkeypatch, write):
    """Ctrl-C or SIGTERM handled just after the temp file was created, before its name reached the caller,
    left it behind (``lseg segment`` stopped by SIGTERM: a hidden .tmp.png in the output folder)."""
    touch, mkdir = Path.touch, Path.mkdir

    def interrupted(original):  # type: ignore[no-untyped-def]
        def call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            original(self, *args, **kwargs)
            if ".tmp" in self.name:
                raise KeyboardInterrupt
        return call

    monkeypatch.setattr(Path, "touch", interrupted(touch))
    monkeypatch.setattr(Path, "mkdir", interrupted(mkdir))
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "out.png")
    assert os.listdir(tmp_path) == []
