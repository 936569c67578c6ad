"""Batch jobs on messy folders: bad files are reported and skipped while the rest complete
(``lseg segment``, ``lseg features``, ``lseg eval``), and a job killed with SIGKILL mid-write,
then restarted, ends with every output present exactly once and no temporary or partial files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile_inputs import cli_env, scene
from PIL import Image

from lseg.cli import main
from lseg.io import remove_stale_temp_files
from lseg.io.atomic import _host_tag

GOOD_KINDS = ["rgb.jpg", "rgb.png", "gray16.png", "palette.png", "rgba.png", "cmyk.jpg", "exif_rotated.jpg",
              "animated.gif", "one_pixel.png"]
BAD_KINDS = ["zero_bytes.png", "truncated.jpg", "truncated.png", "corrupt_data.png", "text_file.jpg",
             "html_page.png", "random_bytes.jpg", "bomb.png"]
MODEL = ["--size", "32", "-q"]


@pytest.fixture
def messy_folder(tmp_path, good_images, bad_images) -> tuple[Path, dict[str, tuple[int, int]], list[str]]:
    """A photo folder with good images of every kind (one in a sub-folder) and broken files."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    sizes = {}
    for i, name in enumerate(GOOD_KINDS):
        stem = f"good_{Path(name).stem}"
        rel = Path("sub" if i == 0 else ".") / f"{stem}{Path(name).suffix}"
        shutil.copy(good_images[name].path, folder / rel)
        sizes[(rel.parent / stem).as_posix().removeprefix("./")] = good_images[name].size
    bad = []
    for name in BAD_KINDS:
        unique = f"bad_{Path(name).stem}_{Path(name).suffix[1:]}{Path(name).suffix}"  # a.jpg + a.png: one stem
        shutil.copy(bad_images[name], folder / unique)
        bad.append(unique)
    (folder / ".hidden.png").write_bytes(b"ignored: hidden files are not inputs")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    return folder, sizes, bad


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _hidden(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*")]


def _check_segment_outputs(out: Path, sizes: dict[str, tuple[int, int]]) -> None:
    expected = {f"{s}_{kind}" for s in sizes for kind in ("labels.png", "overlay.png", "labels.json")}
    assert _files(out) == expected  # every output and its record exactly once, nothing else (no temp files)
    for stem, (h, w) in sizes.items():
        lm = Image.open(out / f"{stem}_labels.png")
        assert lm.mode == "P" and lm.size == (w, h)
        assert np.array(lm).max() < 2
        ov = Image.open(out / f"{stem}_overlay.png")
        ov.load()
        assert ov.size[1] >= h


def _check_feature_outputs(out: Path, stems: list[str]) -> None:
    assert _files(out) == {f"{s}.{ext}" for s in stems for ext in ("npy", "json")} | {"features.json"}
    for s in stems:
        arr = np.load(out / f"{s}.npy")
        assert arr.dtype == np.float16 and arr.ndim == 3 and arr.shape[0] == 32
        assert np.isfinite(arr).all()
        np.testing.assert_allclose(np.linalg.norm(arr.astype(np.float32), axis=0), 1, atol=5e-3)


def test_segment_reports_and_skips_bad_files(messy_folder, tiny_dir, tmp_path, capsys):
    folder, sizes, bad = messy_folder
    out = tmp_path / "out"
    args = ["segment", str(folder), "-l", "sky,grass", "-c", str(tiny_dir), "-o", str(out), *MODEL]
    assert main(args) == 1  # some inputs failed
    err = capsys.readouterr().err
    assert f"{len(sizes)} written, 0 already done, {len(bad)} failed" in err
    for name in bad:
        assert f"skipping {folder / name}:" in err and f"failed: {folder / name}:" in err
    assert "Traceback" not in err
    _check_segment_outputs(out, sizes)
    # re-run: finished outputs are skipped, the bad files are reported again
    assert main(args) == 1
    assert f"0 written, {len(sizes)} already done, {len(bad)} failed" in capsys.readouterr().err
    # once the bad files are gone the job succeeds
    for name in bad:
        (folder / name).unlink()
    assert main(args) == 0


def test_features_reports_and_skips_bad_files(messy_folder, tiny_dir, tmp_path, capsys):
    folder, sizes, bad = messy_folder
    out = tmp_path / "feats"
    args = ["features", str(folder), "-c", str(tiny_dir), "-o", str(out), *MODEL]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{len(sizes)} written, 0 already done, {len(bad)} failed" in err
    for name in bad:
        assert f"failed: {folder / name}:" in err
    _check_feature_outputs(out, list(sizes))
    assert main(args) == 1
    assert f"0 written, {len(sizes)} already done, {len(bad)} failed" in capsys.readouterr().err


def test_eval_reports_and_skips_bad_files(tmp_path, good_images, bad_images, capsys):
    """``lseg eval`` on a folder dataset with a truncated image, an empty image and a broken mask."""
    pytest.importorskip("lseg.cli.eval")
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "labels.txt").write_text("sky\ngrass\n")
    for i in range(4):
        Image.fromarray(scene(24, 32, seed=i)).save(root / "images" / f"ok{i}.png")
        Image.fromarray((np.arange(24 * 32).reshape(24, 32) % 2).astype(np.uint8)).save(root / "masks" / f"ok{i}.png")
    shutil.copy(bad_images["truncated.jpg"], root / "images" / "cut.jpg")
    shutil.copy(bad_images["zero_bytes.png"], root / "images" / "empty.png")
    shutil.copy(good_images["rgb.png"].path, root / "images" / "badmask.png")
    for stem in ("cut", "empty"):
        Image.fromarray(np.zeros((24, 32), np.uint8)).save(root / "masks" / f"{stem}.png")
    (root / "masks" / "badmask.png").write_bytes(b"not a png")
    report_path = tmp_path / "report.json"
    rc = main(["eval", "--random-weights", "lseg_tiny_test", "--dataset", "folder", "--data-root", str(root),
               "--size", "32", "--crop-size", "32", "--num-workers", "0", "--device", "cpu", "--out",
               str(report_path), "-q"])
    err = capsys.readouterr().err
    # The skipped files are reported (stderr and the JSON report) and, as for segment/features,
    # the exit code is 1 when inputs failed.
    assert rc == 1
    report = json.loads(report_path.read_text())
    assert report["num_images"] == 4 and report["num_failed"] == 3
    assert sorted(Path(f["path"]).name for f in report["failed"]) == ["badmask.png", "cut.jpg", "empty.png"]
    assert all(f["error"] and "\n" not in f["error"] for f in report["failed"])
    for name in ("cut.jpg", "empty.png", "badmask.png"):
        assert name in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------ killed and restarted

HANGING_CLI = r"""
import os, sys, time
import lseg.io.atomic
hang_at, calls, original = int(os.environ["HANG_AT"]), [0], lseg.io.atomic.Staged.commit
def commit(self):
    calls[0] += 1
    if calls[0] == hang_at:  # a unit's files are complete temp files; killed before they are renamed
        print("HANGING", self._finals[0], flush=True)
        time.sleep(600)
    return original(self)
lseg.io.atomic.Staged.commit = commit
from lseg.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run_until_hang_then_kill(args: list[str], hang_at: int, tmp_path: Path) -> str:
    env = dict(cli_env(), HANG_AT=str(hang_at))
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", HANGING_CLI, *args], env=env, stdout=subprocess.PIPE,
                                stderr=err, text=True)
        try:
            line = proc.stdout.readline()
            assert line.startswith("HANGING"), (line, (tmp_path / "stderr.txt").read_text())
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
    return line.split(None, 1)[1].strip()


@pytest.fixture
def twenty_images(tmp_path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(scene(20 + i, 28, seed=i)).save(folder / f"img{i:02d}.png")
    return folder


@pytest.mark.slow  # SIGKILL to a process
def test_segment_killed_mid_write_and_restarted(twenty_images, tmp_path, capsys):
    out = tmp_path / "seg"
    args = ["segment", str(twenty_images), "-l", "sky,grass", "--random-weights", "lseg_tiny_test", "-o",
            str(out), *MODEL]
    # killed while img03's label map and overlay are complete temp files, not yet moved into place
    hanging = _run_until_hang_then_kill(args, hang_at=4, tmp_path=tmp_path)
    assert Path(hanging) == out / "img03_labels.png"
    assert not (out / "img03_labels.png").exists() and not (out / "img03_overlay.png").exists()  # together
    # what SIGKILL leaves: the temp files, and the claims of the images being computed (img03 and the
    # ones the loader had taken ahead), found stale by the next run
    claims = {p.name for p in _hidden(out) if p.name.endswith(".claim")}
    stale = sorted(p.name for p in _hidden(out) if p.name not in claims and not p.name.startswith(".lseg-job"))
    assert len(stale) == 2 and stale[0].startswith(".img03_labels.png.") and stale[1].startswith(".img03_overlay.png.")
    assert ".img03_labels.png.claim" in claims
    # 9 finished outputs (records included) + img03's pending record
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {
        f"img{i:02d}_{k}" for i in range(3) for k in ("labels.png", "overlay.png", "labels.json")} | {
        "img03_labels.json"}
    assert json.loads((out / "img03_labels.json").read_text())["complete"] is False
    assert main(args) == 0
    assert "17 written, 3 already done, 0 failed" in capsys.readouterr().err
    sizes = {f"img{i:02d}": (20 + i, 28) for i in range(20)}
    _check_segment_outputs(out, sizes)
    assert not _hidden(out)


@pytest.mark.slow  # SIGKILL to a process
def test_features_killed_mid_write_and_restarted(twenty_images, tmp_path, capsys):
    out = tmp_path / "feats"
    args = ["features", str(twenty_images), "--random-weights", "lseg_tiny_test", "-o", str(out), *MODEL]
    # killed while img06.npy is a complete temp file not yet moved into place
    hanging = _run_until_hang_then_kill(args, hang_at=7, tmp_path=tmp_path)
    assert Path(hanging) == out / "img06.npy"
    claim = out / ".img06.npy.claim"  # the killed job's claim on the output it was writing
    stale = [p for p in _hidden(out) if p != claim and not p.name.startswith(".lseg-job")]
    assert len(stale) == 1 and stale[0].name.startswith(".img06.npy.") and claim.is_file()
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {"features.json", "img06.json"} | {
        f"img{i:02d}.{e}" for i in range(6) for e in ("npy", "json")
    }  # img06.json: its pending record
    assert main(args) == 0
    assert "14 written, 6 already done, 0 failed" in capsys.readouterr().err
    _check_feature_outputs(out, [f"img{i:02d}" for i in range(20)])
    assert not _hidden(out)


def test_two_inputs_with_one_output_name_are_refused_before_any_work(tmp_path, capsys):
    """photo.jpg and photo.png in one folder would overwrite each other's outputs (and a re-run
    would skip the second as done): refused up front, naming both files."""
    folder = tmp_path / "dups"
    folder.mkdir()
    Image.fromarray(scene(20, 20)).save(folder / "photo.jpg")
    Image.fromarray(scene(20, 20)).save(folder / "photo.png")
    for command in (["segment", str(folder), "-l", "a,b"], ["features", str(folder)]):
        out = tmp_path / command[0]
        assert main([*command, "--random-weights", "lseg_tiny_test", "-o", str(out), *MODEL]) == 2
        err = capsys.readouterr().err
        assert "photo.jpg and " in err and "photo.png would both write" in err
        assert not out.exists() or not _files(out) - {"features.json"}


def test_outputs_never_replace_inputs_or_the_users_files(tmp_path, capsys):
    """Issue 11, class 1: ``lseg segment photos -o photos`` where the folder holds the user's own
    ``a_labels.png`` (an input there, and the output of ``a.png``), and a user's file in another
    --out folder: refused before any work, every clash listed, nothing written; ``--overwrite``
    replaces the user's file but never an input."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "a_labels.png", "b.png"):
        Image.fromarray(scene(20, 24, seed=len(name))).save(folder / name)
    mine = (folder / "a_labels.png").read_bytes()
    seg = ["segment", "-l", "sky,grass", "--random-weights", "lseg_tiny_test", *MODEL]
    for extra in ([], ["--overwrite"]):
        assert main([*seg, str(folder), "-o", str(folder), *extra]) == 2
        err = capsys.readouterr().err
        assert f"{folder / 'a_labels.png'} is an input and also an output of {folder / 'a.png'}" in err
        assert "--overwrite" not in err.split("nothing was written")[1]  # it would not help
        assert _files(folder) == {"a.png", "a_labels.png", "b.png"}
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_overlay.png").write_bytes(b"my own overlay")
    (out / "b_labels.json").write_text('{"mine": true}')
    assert main([*seg, str(folder / "a.png"), str(folder / "b.png"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 output clashes, nothing was written" in err
    assert f"{out / 'b_overlay.png'} exists and is not an lseg output" in err
    assert f"{out / 'b_labels.json'} exists and is not an lseg output" in err
    assert (out / "b_overlay.png").read_bytes() == b"my own overlay" and _files(out) == {"b_overlay.png", "b_labels.json"}
    assert main([*seg, str(folder / "a.png"), str(folder / "b.png"), "-o", str(out), "--overwrite"]) == 0
    assert (folder / "a_labels.png").read_bytes() == mine and (out / "b_overlay.png").read_bytes() != b"my own overlay"
    # lseg's own outputs (listed by their records) are not the user's: a re-run is fine
    assert main([*seg, str(folder / "a.png"), str(folder / "b.png"), "-o", str(out)]) == 0
    assert "0 written, 2 already done" in capsys.readouterr().err


def test_video_frames_and_images_never_share_an_output(tmp_path, capsys):
    """Issue 11, class 1: a video ``v.mp4`` writes ``v/000000.npy``..., which the image
    ``v/000000.png`` would also write: refused before any work; and a frame folder that already
    holds the user's files is refused too (until --overwrite)."""
    from features.helpers import write_video

    folder = tmp_path / "scan"
    write_video(folder / "v.mp4", n_frames=3)
    (folder / "v").mkdir()
    Image.fromarray(scene(20, 24)).save(folder / "v" / "000000.png")
    Image.fromarray(scene(20, 24)).save(folder / "other.png")
    feats = ["features", "--random-weights", "lseg_tiny_test", *MODEL]
    out = tmp_path / "feats"
    assert main([*feats, str(folder), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert (f"{folder / 'v' / '000000.png'} would write 000000.npy into {out / 'v'}, where the video "
            f"{folder / 'v.mp4'} writes its frames") in err
    assert not out.exists() or not _files(out) - {"features.json"}
    (folder / "v" / "000000.png").unlink()
    (out / "v").mkdir(parents=True, exist_ok=True)
    (out / "v" / "notes.txt").write_text("mine")
    assert main([*feats, str(folder), "-o", str(out)]) == 2
    assert f"{out / 'v'} (the frame folder of {folder / 'v.mp4'}) already holds files lseg did not write" in (
        capsys.readouterr().err)
    (out / "v" / "notes.txt").unlink()
    assert main([*feats, str(folder), "-o", str(out)]) == 0
    assert "4 written, 0 already done, 0 failed" in capsys.readouterr().err
    assert main([*feats, str(folder), "-o", str(out)]) == 0  # its own frames: done, not a clash
    assert "0 written, 4 already done" in capsys.readouterr().err


def test_remove_stale_temp_files_only_removes_dead_local_writers(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(dead.stdout)
    host = _host_tag()
    (tmp_path / "sub").mkdir()
    names = {
        f".a.png.{host}-{dead_pid}-0123abcd.tmp.png": False,  # killed writer on this host: removed
        f"sub/.b.npy.{host}-{dead_pid}-89abcdef.tmp.npy": False,
        f".c.png.{host}-{os.getpid()}-0123abcd.tmp.png": True,  # a live writer (this process)
        f".d.png.00000000-{dead_pid}-0123abcd.tmp.png": True,  # another host's writer: cannot tell
        ".e.png.0123456789ab.tmp.png": True,  # not ours (other naming)
        ".gitignore": True,
        "a.png": True,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == sorted(n for n, keep in names.items()
                                                                               if not keep)
    assert {n for n, keep in names.items() if keep} == _files(tmp_path)
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_a_unit_whose_record_lists_failed_items_is_not_done(tmp_path):
    from lseg.jobs.records import plan, write_record

    record, recipe = tmp_path / "u000000.json", {"size": 32}
    failed = [{"source": "broken.png", "error": "cannot load image"}]
    write_record(record, "store", "a.png", recipe, [], extra={"failed": failed})
    assert plan([], record, recipe) == ("new", set())  # retried, as a failed image of segment or npy
    write_record(record, "store", "a.png", recipe, [], extra={"failed": []})
    assert plan([], record, recipe) == ("done", set())


def test_a_store_retries_an_image_that_failed(tmp_path, capsys):
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"garbage")
    args = ["features", str(tmp_path / "a.png"), str(tmp_path / "broken.png"), "-o", str(tmp_path / "st"),
            "--format", "store", "--random-weights", "lseg_tiny_test", *MODEL]
    assert main(args) == 1
    assert main(args) == 1  # still broken: reported again
    assert "1 failed" in capsys.readouterr().err
    Image.fromarray(np.full((32, 32, 3), 30, np.uint8)).save(tmp_path / "broken.png")
    assert main(args) == 0
    index = json.loads((tmp_path / "st" / "index.json").read_text())
    assert [f["key"] for f in index["frames"]] == ["a", "broken"] and index["failed"] == []
