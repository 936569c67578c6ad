"""Tests for lseg.io.files: listing input folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from lseg.errors import ImageLoadError
from lseg.io import (
    file_fragment,
    list_images,
)

# ------------------------------------------------------------------------------------------ listing


def test_list_images(tmp_path: Path) -> None:
    for rel in ["b.png", "a.JPG", "sub/c.jpeg", "sub/deeper/d.webp", "z.tiff", "x.gif", "y.bmp",
                "w.tif", ".hidden.png", ".git/e.png", "sub/.cache/f.png", "notes.txt", "g.mp4"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()  # a directory with an image extension is not an image
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.JPG", "b.png", "sub/c.jpeg", "sub/deeper/d.webp", "w.tif", "x.gif", "y.bmp",
                     "z.tiff"]
    flat = [p.name for p in list_images(tmp_path, recursive=False)]
    assert flat == ["a.JPG", "b.png", "w.tif", "x.gif", "y.bmp", "z.tiff"]
    assert all(isinstance(p, Path) for p in list_images(str(tmp_path)))
    with pytest.raises(ImageLoadError, match="not found"):
        list_images(tmp_path / "missing")
    with pytest.raises(ImageLoadError, match="not a folder"):
        list_images(tmp_path / "b.png")
    assert list_images(tmp_path / "sub" / "deeper") == [tmp_path / "sub" / "deeper" / "d.webp"]


# ------------------------------------------------------------------------------------------ names


def test_file_fragment_keeps_safe_characters_only() -> None:
    assert file_fragment("big tree") == "big_tree"
    assert file_fragment("café crème") == "café_crème"  # letters of any script are letters
    assert file_fragment("../etc/passwd") == "etc_passwd"  # no path, no hidden file
    assert file_fragment("a/b\\c:d*e") == "a_b_c_d_e"
    assert file_fragment("x" * 100) == "x" * 40 and file_fragment("x" * 100, 80) == "x" * 80
    assert file_fragment("...") == "label" and file_fragment("", default="image") == "image"
