"""Tests for lseg.io: image loading (every input kind and failure mode), frames, listing, atomic writes.

Every fixture file is generated in ``tmp_path``. The fuzz tests at the end feed random and
mutated encoded images to :func:`lseg.io.load_image`; their length is :data:`FUZZ_EXAMPLES`.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageFile, features

from lseg.errors import ImageLoadError, LSegError
from lseg.io import (
    ALPHA_BACKGROUND,
    DEFAULT_MAX_PIXELS,
    atomic_open,
    atomic_write,
    iter_frames,
    list_images,
    load_image,
    save_png,
)

#: Examples per fuzz test (random bytes; mutated valid files). Each example decodes at most a
#: 16x16 image, so both tests together stay well under 20 s.
FUZZ_EXAMPLES = 300
#: Examples for the array / tensor property tests.
PROPERTY_EXAMPLES = 200

RNG = np.random.default_rng(1234)
RGB = RNG.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)  # H=24, W=32


# ------------------------------------------------------------------------------------------ helpers


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _blocks(h: int = 32, w: int = 48) -> np.ndarray:
    """A JPEG-friendly image: four flat colour quadrants."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (200, 30, 30)
    a[: h // 2, w // 2 :] = (30, 200, 30)
    a[h // 2 :, : w // 2] = (30, 30, 200)
    a[h // 2 :, w // 2 :] = (220, 220, 40)
    return a


def _assert_rgb(arr: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8
    assert arr.ndim == 3 and arr.shape[2] == 3
    assert arr.flags.c_contiguous and arr.flags.writeable
    if shape is not None:
        assert arr.shape[:2] == shape


def _error(source: object, **kwargs: object) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "error messages must be one line"
    return message


def _png_with_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims ``width x height`` (a decompression bomb)."""
    data = bytearray(_encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


# ------------------------------------------------------------------------------------------ sources


def test_png_roundtrip_is_exact_and_fresh(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.png", _encode(Image.fromarray(RGB), "PNG"))
    for source in (str(path), path):
        arr = load_image(source)
        _assert_rgb(arr, (24, 32))
        np.testing.assert_array_equal(arr, RGB)
        assert arr.flags.owndata or arr.base is not None  # a real array, writable, ours
        arr[0, 0] = 0  # must not fail (not read-only)


def test_all_source_kinds_agree(tmp_path: Path) -> None:
    data = _encode(Image.fromarray(RGB), "PNG")
    path = _write(tmp_path / "a.png", data)
    torch = pytest.importorskip("torch")
    sources = [
        str(path),
        path,
        data,
        bytearray(data),
        memoryview(data),
        io.BytesIO(data),
        Image.open(io.BytesIO(data)),
        Image.fromarray(RGB),
        RGB,
        torch.from_numpy(RGB.copy()).permute(2, 0, 1),
        torch.from_numpy(RGB.copy()).permute(2, 0, 1).float() / 255.0,
    ]
    for source in sources:
        np.testing.assert_array_equal(load_image(source), RGB, err_msg=type(source).__name__)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_image(f), RGB)
        assert not f.closed  # caller's file objects are never closed


def test_array_input_is_copied() -> None:
    arr = RGB.copy()
    out = load_image(arr)
    out[:] = 0
    np.testing.assert_array_equal(arr, RGB)


def test_file_object_read_from_current_position() -> None:
    data = _encode(Image.fromarray(RGB), "PNG")
    buf = io.BytesIO(b"HEADER" + data)
    buf.seek(6)
    np.testing.assert_array_equal(load_image(buf), RGB)


def test_home_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _write(tmp_path / "a.png", _encode(Image.fromarray(RGB), "PNG"))
    np.testing.assert_array_equal(load_image("~/a.png"), RGB)


def test_unsupported_source_type_is_type_error() -> None:
    with pytest.raises(TypeError, match="unsupported source type"):
        load_image(12345)
    with pytest.raises(TypeError):
        load_image(RGB, frame=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(RGB, max_pixels=0)


# ------------------------------------------------------------------------------------------ file errors


def test_missing_file(tmp_path: Path) -> None:
    message = _error(tmp_path / "nope.jpg")
    assert "not found" in message and "nope.jpg" in message


def test_directory(tmp_path: Path) -> None:
    assert "directory" in _error(tmp_path)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.png", b"")
    message = _error(path)
    assert "empty" in message and "empty.png" in message
    assert "empty" in _error(b"")
    assert "empty" in _error(io.BytesIO())


def test_text_file_with_image_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n", encoding="utf-8")
    message = _error(path)
    assert "notes.jpg" in message and "text" in message
    path.write_text("<!DOCTYPE html><html><body>404</body></html>", encoding="utf-8")
    assert "HTML" in _error(path)
    assert "not a recognised image format" in _error(bytes(range(256)))


def test_video_given_to_load_image_gets_a_hint(tmp_path: Path) -> None:
    path = _write(tmp_path / "clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    assert "iter_frames" in _error(path)


def test_bad_path_string() -> None:
    assert "check the path" in _error("bad\x00name.png")


def test_lazy_truncated_pil_image_is_refused() -> None:
    data = _encode(Image.fromarray(RGB), "PNG")
    with Image.open(io.BytesIO(data[: len(data) // 2])) as im:  # Image.open is lazy: no error yet
        assert "truncated" in _error(im)


def test_url_is_refused() -> None:
    assert "URL" in _error("https://example.com/cat.jpg")


def test_text_mode_file_object(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("hello", encoding="utf-8")
    with open(path, encoding="utf-8") as f:
        assert "text mode" in _error(f)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.95])
def test_truncated_files_are_refused(tmp_path: Path, fmt: str, fraction: float) -> None:
    data = _encode(Image.fromarray(RGB), fmt)
    path = _write(tmp_path / f"cut.{fmt.lower()}", data[: int(len(data) * fraction)])
    message = _error(path)
    assert "cut." in message and ("truncated" in message or "corrupt" in message)


def test_jpeg_missing_only_its_end_marker_is_refused() -> None:
    data = _encode(Image.fromarray(RGB), "JPEG")
    assert "truncated" in _error(data[:-2])


def test_corrupt_png_data_is_refused(tmp_path: Path) -> None:
    data = bytearray(_encode(Image.fromarray(RGB), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 32] = b"\xff" * 32
    assert "corrupt" in _error(_write(tmp_path / "bad.png", bytes(data)))


def test_corrupt_headers_name_the_format() -> None:
    png = bytearray(_encode(Image.fromarray(RGB), "PNG"))
    png[12:16] = b"XXXX"  # IHDR chunk type destroyed
    assert "PNG" in _error(bytes(png))
    assert "JPEG" in _error(b"\xff\xd8\xff" + bytes(40))


def test_global_pil_state_untouched(tmp_path: Path) -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    data = _encode(Image.fromarray(RGB), "JPEG")
    load_image(data)
    _error(data[: len(data) // 2])
    _error(_png_with_size(100_000, 100_000))
    after = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    assert after == before


# ------------------------------------------------------------------------------------------ size limits


def test_default_max_pixels() -> None:
    assert DEFAULT_MAX_PIXELS == 16384 * 16384


def test_max_pixels_boundary() -> None:
    data = _encode(Image.new("RGB", (10, 10), (1, 2, 3)), "PNG")
    assert load_image(data, max_pixels=100).shape == (10, 10, 3)
    message = _error(data, max_pixels=99)
    assert "max_pixels=99" in message and "10x10" in message
    assert load_image(data, max_pixels=None).shape == (10, 10, 3)
    assert "max_pixels" in _error(np.zeros((10, 10, 3), np.uint8), max_pixels=99)


def test_decompression_bomb_refused_before_decoding() -> None:
    bomb = _png_with_size(100_000, 100_000)  # 10 G pixels declared, 70 bytes of data
    start = time.perf_counter()
    message = _error(bomb)
    assert time.perf_counter() - start < 1.0
    assert "100000x100000" in message and "max_pixels" in message and "MB" in message


@pytest.fixture(scope="module")
def large_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12000x8000 (96 M pixels) solid-colour PNG: ~1 MB on disk, created once."""
    path = tmp_path_factory.mktemp("large") / "large.png"
    Image.new("RGB", (12000, 8000), (10, 200, 30)).save(path, compress_level=1)
    return path


def test_large_image_loads_without_pil_bomb_warning(large_png: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        arr = load_image(large_png)
    _assert_rgb(arr, (8000, 12000))
    assert (arr[::997, ::991] == (10, 200, 30)).all()
    del arr


def test_large_image_refused_below_its_size(large_png: Path) -> None:
    message = _error(large_png, max_pixels=12000 * 8000 - 1)
    assert "12000x8000" in message and "large.png" in message


# ------------------------------------------------------------------------------------------ modes


def test_cmyk_jpeg(tmp_path: Path) -> None:
    blocks = _blocks()
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(blocks).convert("CMYK").save(path, quality=95)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    arr = load_image(path)
    _assert_rgb(arr, blocks.shape[:2])
    assert np.abs(arr.astype(int) - blocks).mean() < 6


def test_palette_png_and_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (3 * 253))
    img.putdata([0, 1, 2, 0, 1, 2, 0, 1])
    path = tmp_path / "pal.png"
    img.save(path)
    arr = load_image(path)
    np.testing.assert_array_equal(arr[0, :3], [[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    img.save(path, transparency=1)  # index 1 (green) fully transparent
    arr = load_image(path)
    np.testing.assert_array_equal(arr[0, 1], ALPHA_BACKGROUND)
    np.testing.assert_array_equal(arr[0, 0], [255, 0, 0])


def test_rgba_and_la_composite_onto_white(tmp_path: Path) -> None:
    assert ALPHA_BACKGROUND == (255, 255, 255)
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # transparent -> white
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black -> mid gray
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    arr = load_image(path)
    np.testing.assert_array_equal(arr[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(arr[0, 1], [255, 255, 255])
    assert np.all(np.abs(arr[0, 2].astype(int) - 127) <= 1)
    np.testing.assert_array_equal(load_image(rgba), arr)  # arrays follow the same rule
    la = Image.merge("LA", [Image.fromarray(rgba[..., 0].copy()), Image.fromarray(rgba[..., 3].copy())])
    la.save(tmp_path / "la.png")
    arr = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(arr[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(arr[0, 1], [255, 255, 255])
    assert np.all(np.abs(arr[0, 2].astype(int) - 127) <= 1)


def test_16bit_png_scaled_by_shift(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 4096], [32768, 40000, 65280, 65535]], np.uint16)
    path = tmp_path / "16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    arr = load_image(path)
    _assert_rgb(arr, (2, 4))
    np.testing.assert_array_equal(arr[..., 0], values >> 8)
    assert (arr == arr[..., :1]).all()  # gray -> R = G = B


def test_16bit_big_endian_and_int32_modes() -> None:
    values = np.array([[0, 1000, 65535]], np.uint16)
    big = Image.frombytes("I;16B", (3, 1), values.astype(">u2").tobytes())
    np.testing.assert_array_equal(load_image(big)[0, :, 0], values[0] >> 8)
    as_i = Image.fromarray(values.astype(np.int32))  # mode I holding 16-bit data
    assert as_i.mode == "I"
    np.testing.assert_array_equal(load_image(as_i)[0, :, 0], values[0] >> 8)
    small = Image.fromarray(np.array([[0, 7, 255]], np.int32))  # 8-bit data in an I image
    np.testing.assert_array_equal(load_image(small)[0, :, 0], [0, 7, 255])


def test_grayscale_bilevel_and_float_modes(tmp_path: Path) -> None:
    gray = RGB[..., 0].copy()
    Image.fromarray(gray).save(tmp_path / "g.png")
    arr = load_image(tmp_path / "g.png")
    np.testing.assert_array_equal(arr, np.repeat(gray[..., None], 3, axis=2))
    bilevel = Image.fromarray(gray > 127).convert("1")
    bilevel.save(tmp_path / "b.png")
    assert set(np.unique(load_image(tmp_path / "b.png"))) <= {0, 255}
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert f.mode == "F"
    np.testing.assert_array_equal(load_image(f)[0, :, 0], [0, 128, 255])
    f.save(tmp_path / "f.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "f.tif")[0, :, 0], [0, 128, 255])
    wide = Image.fromarray(np.array([[-10.0, 0.0, 30.0]], np.float32))  # no white level: min-max
    np.testing.assert_array_equal(load_image(wide)[0, :, 0], [0, 64, 255])
    nan = Image.fromarray(np.array([[np.nan, 0.0]], np.float32))
    assert "NaN" in _error(nan)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    blocks = _blocks(32, 48)  # H=32, W=48; top-left quadrant red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(blocks).save(path, exif=exif, quality=95)
    arr = load_image(path)
    _assert_rgb(arr, (48, 32))  # upright: portrait
    # After a clockwise quarter turn the red top-left quadrant is at the top-right.
    assert np.abs(arr[2, -3].astype(int) - (200, 30, 30)).max() < 20
    np.testing.assert_array_equal(arr.shape, load_image(path.read_bytes()).shape)


def test_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "px.png"
    Image.new("RGB", (1, 1), (9, 8, 7)).save(path)
    np.testing.assert_array_equal(load_image(path), [[[9, 8, 7]]])
    np.testing.assert_array_equal(load_image(np.array([[5]], np.uint8)), [[[5, 5, 5]]])


# ------------------------------------------------------------------------------------------ frames


def _animated_gif(path: Path, n: int = 5, duration: int = 100) -> Path:
    frames = [Image.new("RGB", (8, 6), (25 * i, 0, 0)) for i in range(n)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return path


def test_animated_gif_frame_selection(tmp_path: Path) -> None:
    path = _animated_gif(tmp_path / "anim.gif")
    for i in range(5):
        arr = load_image(path, frame=i)
        _assert_rgb(arr, (6, 8))
        assert abs(int(arr[0, 0, 0]) - 25 * i) <= 2
    message = _error(path, frame=5)
    assert "frame 5" in message and "0..4" in message and "anim.gif" in message
    assert "frame -1" in _error(path, frame=-1)


def test_frame_for_single_frame_inputs(tmp_path: Path) -> None:
    path = _write(tmp_path / "still.png", _encode(Image.fromarray(RGB), "PNG"))
    assert "only frame 0" in _error(path, frame=1)
    assert "frame 2" in _error(RGB, frame=2)


def test_pil_multiframe_position_restored(tmp_path: Path) -> None:
    with Image.open(_animated_gif(tmp_path / "anim.gif")) as im:
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
    assert "0..2" in _error(path, frame=3)


def test_iter_frames_gif_sampling(tmp_path: Path) -> None:
    path = _animated_gif(tmp_path / "anim.gif", n=10, duration=100)
    all_frames = list(iter_frames(path))
    assert [i for i, _, _ in all_frames] == list(range(10))
    assert [t for _, t, _ in all_frames] == pytest.approx([0.1 * i for i in range(10)])
    for _, _, arr in all_frames:
        _assert_rgb(arr, (6, 8))
    assert [i for i, _, _ in iter_frames(path, every_n=3)] == [0, 3, 6, 9]
    assert [i for i, _, _ in iter_frames(path, fps=5)] == [0, 2, 4, 6, 8]
    assert [i for i, _, _ in iter_frames(path, fps=100)] == list(range(10))  # faster than source


def test_iter_frames_still_image_and_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "still.png", _encode(Image.fromarray(RGB), "PNG"))
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
        list(iter_frames(_write(tmp_path / "empty.mp4", b"")))
    with pytest.raises(ImageLoadError, match=r"truncated|corrupt"):
        data = _encode(Image.fromarray(RGB), "PNG")
        list(iter_frames(_write(tmp_path / "cut.png", data[: len(data) // 2])))


def test_iter_frames_without_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(ImageLoadError, match="pip install av"):
        list(iter_frames(_write(tmp_path / "clip.mp4", b"not really a video")))


def _write_video(path: Path, n_frames: int, rate: int) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(n_frames):
            img = np.zeros((24, 32, 3), np.uint8)
            img[:] = (10 * i, 128, 255 - 10 * i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
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
        _assert_rgb(arr, (24, 32))
    assert abs(int(frames[5][2][12, 16, 0]) - 50) < 12  # colours survive encoding
    sampled = list(iter_frames(path, fps=5))
    assert [i for i, _, _ in sampled] == list(range(0, 20, 2))
    assert [i for i, _, _ in iter_frames(path, every_n=7)] == [0, 7, 14]


class _FakeVideoFrame:
    """Stands in for av.VideoFrame: a 2x3 frame whose display matrix says ``rotation``."""

    def __init__(self, rotation: int) -> None:
        self.rotation = rotation

    def to_ndarray(self, format: str) -> np.ndarray:  # PyAV names the parameter `format`
        assert format == "rgb24"
        return np.arange(18, dtype=np.uint8).reshape(2, 3, 3)


def test_video_rotation_metadata_applied() -> None:
    from lseg.io import _video_frame_to_rgb

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
    path = _write(tmp_path / "broken.mp4", bytes(RNG.integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(ImageLoadError, match=r"broken\.mp4"):
        list(iter_frames(path))


# ------------------------------------------------------------------------------------------ arrays


def test_array_dtypes_and_shapes() -> None:
    gray = np.array([[0, 65535], [256, 32768]], np.uint16)
    np.testing.assert_array_equal(load_image(gray)[..., 1], gray >> 8)
    np.testing.assert_array_equal(load_image(np.array([[True, False]]))[0, :, 2], [255, 0])
    floats = np.array([[0.0, 0.5, 1.0]], np.float64)
    np.testing.assert_array_equal(load_image(floats)[0, :, 0], [0, 128, 255])
    np.testing.assert_array_equal(load_image(RGB[..., :1])[..., 2], RGB[..., 0])
    assert "[0, 1]" in _error(floats * 255)
    assert "NaN" in _error(np.array([[np.nan]], np.float32))
    assert "int64" in _error(np.zeros((4, 4), np.int64))
    assert "transpose" in _error(np.zeros((3, 16, 16), np.uint8))
    assert "no pixels" in _error(np.zeros((0, 4, 3), np.uint8))
    assert "shape" in _error(np.zeros((2, 2, 2, 3), np.uint8))
    assert "shape" in _error(np.zeros(5, np.uint8))


def test_tensor_inputs() -> None:
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(RGB.copy()).permute(2, 0, 1)
    np.testing.assert_array_equal(load_image(t.float().div(255).requires_grad_()), RGB)
    np.testing.assert_array_equal(load_image(t[0])[..., 0], RGB[..., 0])  # HxW
    np.testing.assert_array_equal(load_image(t.to(torch.bfloat16) / 255)[..., 0].shape, (24, 32))
    assert "batch" in _error(t[None])
    assert "permute" in _error(torch.zeros(16, 16, 3))
    assert "dtype" in _error(t.long())


_ARRAY_DTYPES = st.sampled_from(
    [np.uint8, np.uint16, ">u2", np.bool_, np.float16, np.float32, np.float64, np.int8, np.int32,
     np.int64, np.uint32, np.complex64]
)


def _expected_valid(arr: np.ndarray) -> bool:
    """Oracle: should load_image accept this array?"""
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        return False
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        return False
    if arr.dtype == np.bool_ or (arr.dtype.kind == "u" and arr.dtype.itemsize in (1, 2)):
        return True
    if arr.dtype.kind == "f":
        return bool(np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1)
    return False


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    arr=st.one_of(
        hnp.arrays(_ARRAY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)),
        hnp.arrays(st.sampled_from([np.float32, np.float64]),
                   st.tuples(st.integers(1, 5), st.integers(1, 5), st.sampled_from([1, 3, 4])),
                   elements=st.floats(0, 1, width=32)),
    )
)
def test_property_arrays_load_or_raise(arr: np.ndarray) -> None:
    try:
        out = load_image(arr)
    except ImageLoadError:
        assert not _expected_valid(arr), f"valid array refused: {arr.dtype} {arr.shape}"
        return
    assert _expected_valid(arr)
    _assert_rgb(out, arr.shape[:2])
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        np.testing.assert_array_equal(out, arr)


@settings(max_examples=50, deadline=None, database=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
    dtype=st.sampled_from(["uint8", "float32", "bool", "int64", "float16"]),
    scale=st.sampled_from([1.0, 255.0]),
)
def test_property_tensors_load_or_raise(shape: list[int], dtype: str, scale: float) -> None:
    torch = pytest.importorskip("torch")
    t = (torch.rand(shape) * scale).to(getattr(torch, dtype))
    try:
        out = load_image(t)
    except ImageLoadError:
        return
    _assert_rgb(out)


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


# ------------------------------------------------------------------------------------------ writing


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_atomic_write_success_and_permissions(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "out.bin"
    result = atomic_write(target, lambda p: p.write_bytes(b"payload"))
    assert result == target and target.read_bytes() == b"payload"
    reference = tmp_path / "reference.bin"
    reference.write_bytes(b"")
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    assert _leftovers(target.parent) == []


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
    assert not seen[0].exists() and _leftovers(tmp_path) == []

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
    assert target.read_text(encoding="utf-8") == '{"ok": true}' and _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="mode"), atomic_open(target, "a"):
        pass


def test_save_png(tmp_path: Path) -> None:
    save_png(tmp_path / "rgb.png", RGB)
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.png"), RGB)
    labels = RNG.integers(0, 4, size=(5, 7), dtype=np.uint8)
    pal = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]], np.uint8)
    save_png(tmp_path / "labels.png", labels, palette=pal)
    with Image.open(tmp_path / "labels.png") as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), labels)  # ids preserved
        np.testing.assert_array_equal(np.array(im.getpalette()[:12]).reshape(4, 3), pal)
    wide = RNG.integers(0, 1000, size=(3, 3)).astype(np.uint16)
    save_png(tmp_path / "wide.png", wide)
    with Image.open(tmp_path / "wide.png") as im:
        np.testing.assert_array_equal(np.asarray(im), wide)
    save_png(tmp_path / "pil.png", Image.fromarray(RGB))
    np.testing.assert_array_equal(load_image(tmp_path / "pil.png"), RGB)
    with pytest.raises(ValueError, match="palette"):
        save_png(tmp_path / "bad.png", RGB, palette=pal)
    with pytest.raises(ValueError, match="only 4 colours"):
        save_png(tmp_path / "bad.png", labels + 4, palette=pal)
    with pytest.raises(ValueError, match="unsupported"):
        save_png(tmp_path / "bad.png", np.zeros((2, 2), np.float32))
    assert not (tmp_path / "bad.png").exists() and _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------ fuzzing


def _seed_files() -> list[bytes]:
    """Small valid files in several formats for the mutation fuzzer."""
    small = Image.fromarray(RGB[:12, :16])
    seeds = [
        _encode(small, "PNG"),
        _encode(small, "JPEG", quality=80),
        _encode(small.convert("P"), "GIF"),
        _encode(small, "BMP"),
        _encode(small, "TIFF"),
        _encode(small.convert("RGBA"), "PNG"),
        _encode(Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000), "PNG"),
    ]
    if features.check("webp"):
        seeds.append(_encode(small, "WEBP", quality=80))
    frames = [small.convert("P"), Image.fromarray(RGB[12:, 16:]).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    seeds.append(buf.getvalue())
    return seeds


SEEDS = _seed_files()


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "overwrite"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            data = data[:pos] + data[pos + draw(st.integers(1, 64)) :]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos : pos + len(chunk)] = chunk
    return bytes(data)


def _load_or_error(data: bytes, frame: int = 0) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about some corrupt metadata; irrelevant here
        try:
            out = load_image(data, max_pixels=1 << 16, frame=frame)
        except ImageLoadError as e:
            assert isinstance(e, LSegError) and "\n" not in str(e)
            return
    _assert_rgb(out)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None)
@given(data=st.binary(min_size=0, max_size=512))
def test_fuzz_random_bytes(data: bytes) -> None:
    _load_or_error(data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutated(), frame=st.sampled_from([0, 0, 0, 1]))
def test_fuzz_mutated_images(data: bytes, frame: int) -> None:
    _load_or_error(data, frame)
