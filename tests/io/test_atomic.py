"""Tests for lseg.io.atomic: atomic writes, and the stale-temp cleanup after a crash in any writer."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from io_helpers import leftovers

from lseg.io import atomic_files, atomic_open, atomic_write, remove_stale_temp_files

# ------------------------------------------------------------------------------------------ writing


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


def test_atomic_open(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with atomic_open(target, "w", encoding="utf-8") as f:
        f.write('{"ok": true}')
        assert not target.exists()  # nothing visible until the block completes
    assert target.read_text(encoding="utf-8") == '{"ok": true}'
    with pytest.raises(ValueError, match="boom"), atomic_open(target, "wb") as f:
        f.write(b"partial")
        raise ValueError("boom")
    assert target.read_text(encoding="utf-8") == '{"ok": true}' and leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="mode"), atomic_open(target, "a"):
        pass


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
    "atomic_open": """
from lseg.io import atomic_open
with atomic_open(out / "a.json", "w") as f:
    f.write("{")
    f.flush()
    os._exit(0)
""",
    "atomic_files": """
from lseg.io import atomic_files
with atomic_files(out / "g.onnx") as folder:
    (folder / "g.onnx").write_bytes(b"half")
    os._exit(0)
""",
    "save_pretrained": """
import lseg, lseg.checkpoints
def save_file(tensors, path, metadata=None):
    Path(path).write_bytes(b"half")
    os._exit(0)
lseg.checkpoints.save_file = save_file
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


@pytest.mark.parametrize("writer", sorted(CRASHES))
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
