"""Tests for lseg.io.atomic: atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from io_helpers import leftovers

from lseg.io import (
    atomic_open,
    atomic_write,
)

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
