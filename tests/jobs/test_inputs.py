"""Inputs of a batch job: each file once, however often and however it was given."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from lseg.cli import main
from lseg.errors import LSegError
from lseg.io import IMAGE_EXTENSIONS
from lseg.jobs.inputs import collect, collect_media


def test_a_file_given_twice_is_one_input(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "in" / name)
    os.symlink("a.png", tmp_path / "in" / "link.png")
    monkeypatch.chdir(tmp_path)
    pairs = collect(["in/a.png", "in/a.png", str(tmp_path / "in" / "a.png"), "in", "./in/../in/b.png"],
                    IMAGE_EXTENSIONS)
    assert [(str(f), str(stem)) for f, stem in pairs] == [("in/a.png", "a"), ("in/b.png", "b"),
                                                          ("in/link.png", "link")]  # a link: its own name


def test_segment_of_one_image_given_twice_writes_it_once(tmp_path, capsys):
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "a.png")
    a = str(tmp_path / "a.png")
    assert main(["segment", a, a, "-o", str(tmp_path / "seg"), "-l", "cat,dog", "--random-weights",
                 "lseg_tiny_test", "--size", "32", "-q"]) == 0
    assert "1 written, 0 already done, 0 failed\n" in capsys.readouterr().err


def test_a_video_and_an_image_of_one_stem_write_apart_and_two_videos_clash_on_their_frames(tmp_path) -> None:
    # `lseg features clips/` with a.mp4 and its poster a.png was refused: "would both write a.npy", but
    # the video writes a/NNNNNN.npy (store keys a/NNNNNN) and the image a.npy (key a)
    for name in ("a.mp4", "a.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [(m.stem.as_posix(), m.is_video) for m in collect_media([tmp_path])] == [("a", True), ("a", False)]
    (tmp_path / "a.mkv").write_bytes(b"x")
    with pytest.raises(LSegError, match=r"a\.mkv and .*a\.mp4 would both write a/NNNNNN\.npy;"):
        collect_media([tmp_path])
