"""Tests for lseg.io.frames (iter_frames: animated images and videos) and frame selection in load_image."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from io_helpers import RGB, RNG, animated_gif, assert_rgb, encode, error, write
from PIL import Image, features

from lseg.errors import ImageLoadError
from lseg.io import (
    iter_frames,
    load_image,
)

# ------------------------------------------------------------------------------------------ frames


def test_animated_gif_frame_selection(tmp_path: Path) -> None:
    path = animated_gif(tmp_path / "anim.gif")
    for i in range(5):
        arr = load_image(path, frame=i)
        assert_rgb(arr, (6, 8))
        assert abs(int(arr[0, 0, 0]) - 25 * i) <= 2
    message = error(path, frame=5)
    assert "frame 5" in message and "0..4" in message and "anim.gif" in message
    assert "frame -1" in error(path, frame=-1)


def test_frame_for_single_frame_inputs(tmp_path: Path) -> None:
    path = write(tmp_path / "still.png", encode(Image.fromarray(RGB), "PNG"))
    assert "only frame 0" in error(path, frame=1)
    assert "frame 2" in error(RGB, frame=2)


def test_pil_multiframe_position_restored(tmp_path: Path) -> None:
    with Image.open(animated_gif(tmp_path / "anim.gif")) as im:
        im.seek(1)
        arr = load_image(im, frame=3)
        assert abs(int(arr[0, 0, 0]) - 75) <= 2
        assert im.tell() == 1


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_animated_webp(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), (0, 60 * i, 0)) for i in range(3)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    assert abs(int(load_image(path, frame=2)[0, 0, 1]) - 120) <= 2
    assert [i for i, _, _ in iter_frames(path)] == [0, 1, 2]
    assert "0..2" in error(path, frame=3)


def test_iter_frames_gif_sampling(tmp_path: Path) -> None:
    path = animated_gif(tmp_path / "anim.gif", n=10, duration=100)
    all_frames = list(iter_frames(path))
    assert [i for i, _, _ in all_frames] == list(range(10))
    assert [t for _, t, _ in all_frames] == pytest.approx([0.1 * i for i in range(10)])
    for _, _, arr in all_frames:
        assert_rgb(arr, (6, 8))
    assert [i for i, _, _ in iter_frames(path, every_n=3)] == [0, 3, 6, 9]
    assert [i for i, _, _ in iter_frames(path, fps=5)] == [0, 2, 4, 6, 8]
    assert [i for i, _, _ in iter_frames(path, fps=100)] == list(range(10))  # faster than source


def test_iter_frames_still_image_and_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "still.png", encode(Image.fromarray(RGB), "PNG"))
    (frames,) = list(iter_frames(path))
    assert frames[:2] == (0, 0.0)
    np.testing.assert_array_equal(frames[2], RGB)
    with pytest.raises(ValueError, match="not both"):
        list(iter_frames(path, every_n=2, fps=1.0))
    with pytest.raises(ValueError, match="every_n"):
        list(iter_frames(path, every_n=0))
    with pytest.raises(ValueError, match="fps"):
        list(iter_frames(path, fps=-1.0))
    with pytest.raises(ImageLoadError, match="not found"):
        list(iter_frames(tmp_path / "missing.gif"))
    with pytest.raises(ImageLoadError, match="empty"):
        list(iter_frames(write(tmp_path / "empty.mp4", b"")))
    with pytest.raises(ImageLoadError, match=r"truncated|corrupt"):
        data = encode(Image.fromarray(RGB), "PNG")
        list(iter_frames(write(tmp_path / "cut.png", data[: len(data) // 2])))


def test_iter_frames_without_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(ImageLoadError, match="pip install av"):
        list(iter_frames(write(tmp_path / "clip.mp4", b"not really a video")))


def _write_video(path: Path, n_frames: int, rate: int, start: int = 0) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(n_frames):
            img = np.zeros((24, 32, 3), np.uint8)
            img[:] = (10 * i, 128, 255 - 10 * i)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = start + i  # in 1/rate ticks
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_iter_frames_video(tmp_path: Path) -> None:
    pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    _write_video(path, n_frames=20, rate=10)
    frames = list(iter_frames(path))
    assert [i for i, _, _ in frames] == list(range(20))
    assert [t for _, t, _ in frames] == pytest.approx([i / 10 for i in range(20)], abs=1e-3)
    for _, _, arr in frames:
        assert_rgb(arr, (24, 32))
    assert abs(int(frames[5][2][12, 16, 0]) - 50) < 12  # colours survive encoding
    sampled = list(iter_frames(path, fps=5))
    assert [i for i, _, _ in sampled] == list(range(0, 20, 2))
    assert [i for i, _, _ in iter_frames(path, every_n=7)] == [0, 7, 14]


def test_iter_frames_times_count_from_the_first_frame_as_documented(tmp_path: Path) -> None:
    # docs/features-3d.md: a clip whose first frame is at 2.5 s starts at 0.0 (the stream's pts are not kept)
    pytest.importorskip("av")
    path = tmp_path / "late.mp4"
    _write_video(path, n_frames=6, rate=10, start=25)
    assert [(i, t) for i, t, _ in iter_frames(path, fps=5)] == [(0, 0.0), (2, pytest.approx(0.2)),
                                                                 (4, pytest.approx(0.4))]


def test_iter_frames_fps_at_the_video_rate_keeps_every_frame_of_a_millisecond_time_base(tmp_path: Path) -> None:
    # Matroska/WebM store times in ms: frame 1 of 30 fps is at 0.033 s, just before 1/30 s; --fps 30 kept 13
    # of 20 frames and --fps 15 took frames 0, 2, 5, 6, 8, ...
    path = tmp_path / "clip.mkv"
    _write_video(path, n_frames=20, rate=30)
    assert [t for _, t, _ in iter_frames(path)][1] == pytest.approx(0.033, abs=1e-9)
    assert [i for i, _, _ in iter_frames(path, fps=30)] == list(range(20))
    assert [i for i, _, _ in iter_frames(path, fps=15)] == list(range(0, 20, 2))
    assert [i for i, _, _ in iter_frames(path, fps=10)] == list(range(0, 20, 3))


class _FakeVideoFrame:
    """Stands in for av.VideoFrame: a 2x3 frame whose display matrix says ``rotation``."""

    def __init__(self, rotation: int) -> None:
        self.rotation = rotation

    def to_ndarray(self, format: str) -> np.ndarray:  # PyAV names the parameter `format`
        assert format == "rgb24"
        return np.arange(18, dtype=np.uint8).reshape(2, 3, 3)


def test_video_rotation_metadata_applied() -> None:
    from lseg.io.frames import _video_frame_to_rgb

    raw = _FakeVideoFrame(0).to_ndarray("rgb24")
    np.testing.assert_array_equal(_video_frame_to_rgb(_FakeVideoFrame(0)), raw)
    # PyAV: rotation = degrees counter-clockwise to apply for display; phones write -90 (= CW).
    clockwise = _video_frame_to_rgb(_FakeVideoFrame(-90))
    assert clockwise.shape == (3, 2, 3) and clockwise.flags.c_contiguous
    np.testing.assert_array_equal(clockwise, np.rot90(raw, k=-1))
    np.testing.assert_array_equal(clockwise[0, -1], raw[0, 0])  # top-left moves to top-right
    np.testing.assert_array_equal(_video_frame_to_rgb(_FakeVideoFrame(180)), raw[::-1, ::-1])


def test_iter_frames_corrupt_video(tmp_path: Path) -> None:
    pytest.importorskip("av")
    path = write(tmp_path / "broken.mp4", bytes(RNG.integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(ImageLoadError, match=r"broken\.mp4"):
        list(iter_frames(path))


def test_truncated_animated_gif_is_refused_not_read_as_one_frame(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)  # noise: each frame is stored whole, so a cut loses the last ones
    frames = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(6)]
    full = tmp_path / "full.gif"
    frames[0].save(full, save_all=True, append_images=frames[1:], duration=100)
    data = full.read_bytes()
    path = write(tmp_path / "cut.gif", data[: int(len(data) * 0.7)])
    for read in (lambda: list(iter_frames(path)), lambda: load_image(path, frame=3)):
        with pytest.raises(ImageLoadError, match=r"cut\.gif.*truncated or corrupt"):
            read()


@pytest.mark.parametrize("ext", ["gif", pytest.param("webp", marks=pytest.mark.skipif(
    not features.check("webp"), reason="Pillow built without WebP"))])
def test_iter_frames_times_add_up_each_frames_own_duration(tmp_path: Path, ext: str) -> None:
    frames = [Image.new("RGB", (8, 8), (0, 60 * i, 0)) for i in range(4)]
    path = tmp_path / f"anim.{ext}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[500, 20, 30, 40], lossless=True)
    assert [t for _, t, _ in iter_frames(path)] == pytest.approx([0, 0.5, 0.52, 0.55])
    assert [i for i, _, _ in iter_frames(path, fps=2)] == [0, 1]


def test_pil_image_seeked_to_a_frame_is_that_frame(tmp_path: Path) -> None:
    """A PIL image at frame 3 (as np.asarray(im) sees it) was loaded as frame 0."""
    with Image.open(animated_gif(tmp_path / "anim.gif")) as im:
        im.seek(3)
        assert abs(int(load_image(im)[0, 0, 0]) - 75) <= 2 and im.tell() == 3
        assert abs(int(load_image(im, frame=0)[0, 0, 0])) <= 2 and im.tell() == 3


def test_iter_frames_video_skips_a_cover_picture_stored_as_the_first_stream(tmp_path: Path) -> None:
    # an MKV whose first video stream is a one-frame cover picture: lseg took that picture as the whole video
    av = pytest.importorskip("av")
    path = tmp_path / "covered.mkv"
    with av.open(str(path), mode="w") as container:
        cover = container.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 16, 16, "yuvj420p"
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        for stream, n in ((cover, 1), (video, 6)):
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(np.full((stream.height, stream.width, 3), 20 * i, np.uint8), "rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    frames = list(iter_frames(path))
    assert [i for i, _, _ in frames] == list(range(6)) and frames[0][2].shape == (24, 32, 3)
