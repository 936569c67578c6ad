"""lseg.inference.folder: the segment command's batch writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from lseg.cli import main


def test_a_video_is_refused_with_an_ffmpeg_command_numbering_frames_as_features_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # ffmpeg's image files count from 1 and, for a variable frame rate, repeat or drop frames: the advised
    # folder's 000001_labels.png was frame 0, which `lseg features` writes as scan/000000.npy
    video = tmp_path / "scan.mp4"
    video.write_bytes(b"not decoded: refused by its name")
    assert main(["segment", str(video), "-l", "a, b", "-o", str(tmp_path / "o"), "--random-weights",
                 "lseg_tiny_test", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"ffmpeg -i {video} -fps_mode passthrough -start_number 0 scan/%06d.png" in err and len(err.splitlines()) == 1
