"""Tests for lseg.io.images: load_image for every input kind and failure mode, size limits, modes.

Every fixture file is generated in ``tmp_path``. The fuzz tests at the end feed random and
mutated encoded images to :func:`lseg.io.load_image`; their length is :data:`FUZZ_EXAMPLES`.

Every image kind through the predictor's front door: good files segment to a label map of the
original size, bad files raise one-line ImageLoadErrors; property tests and a byte-level fuzz run
of ``LSegPredictor.segment`` on generated images.
"""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_inputs import scene
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from io_helpers import RGB, assert_rgb, encode, error, four_blocks, png_with_size, write
from PIL import Image, ImageFile, features

import lseg
from lseg.errors import ImageLoadError, LSegError
from lseg.io import (
    ALPHA_BACKGROUND,
    DEFAULT_MAX_PIXELS,
    iter_frames,
    load_image,
)

#: Examples per fuzz test (random bytes; mutated valid files). Each example decodes at most a
#: 16x16 image, so both tests together stay well under 20 s.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))  # env overrides


# ------------------------------------------------------------------------------------------ sources


def test_png_roundtrip_is_exact_and_fresh(tmp_path: Path) -> None:
    path = write(tmp_path / "a.png", encode(Image.fromarray(RGB), "PNG"))
    for source in (str(path), path):
        arr = load_image(source)
        assert_rgb(arr, (24, 32))
        np.testing.assert_array_equal(arr, RGB)
        assert arr.flags.owndata or arr.base is not None  # a real array, writable, ours
        arr[0, 0] = 0  # must not fail (not read-only)


def test_all_source_kinds_agree(tmp_path: Path) -> None:
    data = encode(Image.fromarray(RGB), "PNG")
    path = write(tmp_path / "a.png", data)
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
    data = encode(Image.fromarray(RGB), "PNG")
    buf = io.BytesIO(b"HEADER" + data)
    buf.seek(6)
    np.testing.assert_array_equal(load_image(buf), RGB)


def test_home_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "a.png", encode(Image.fromarray(RGB), "PNG"))
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
    message = error(tmp_path / "nope.jpg")
    assert "not found" in message and "nope.jpg" in message


def test_directory(tmp_path: Path) -> None:
    assert "directory" in error(tmp_path)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.png", b"")
    message = error(path)
    assert "empty" in message and "empty.png" in message
    assert "empty" in error(b"")
    assert "empty" in error(io.BytesIO())


def test_text_file_with_image_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n", encoding="utf-8")
    message = error(path)
    assert "notes.jpg" in message and "text" in message
    path.write_text("<!DOCTYPE html><html><body>404</body></html>", encoding="utf-8")
    assert "HTML" in error(path)
    assert "not a recognised image format" in error(bytes(range(256)))
    path.write_text("hi\n", encoding="utf-8")  # shorter than DIB's 4-byte test: not "it looks like DIB"
    assert "not an image but a text file" in error(path)


def test_video_given_to_load_image_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path / "clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    assert "iter_frames" in error(path)


def test_bad_path_string() -> None:
    assert "check the path" in error("bad\x00name.png")


def test_lazy_truncated_pil_image_is_refused() -> None:
    data = encode(Image.fromarray(RGB), "PNG")
    with Image.open(io.BytesIO(data[: len(data) // 2])) as im:  # Image.open is lazy: no error yet
        assert "truncated" in error(im)


def test_url_is_refused() -> None:
    assert "URL" in error("https://example.com/cat.jpg")


def test_text_mode_file_object(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("hello", encoding="utf-8")
    with open(path, encoding="utf-8") as f:
        assert "text mode" in error(f)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.95])
def test_truncated_files_are_refused(tmp_path: Path, fmt: str, fraction: float) -> None:
    data = encode(Image.fromarray(RGB), fmt)
    path = write(tmp_path / f"cut.{fmt.lower()}", data[: int(len(data) * fraction)])
    message = error(path)
    assert "cut." in message and ("truncated" in message or "corrupt" in message)


def test_jpeg_missing_only_its_end_marker_is_refused() -> None:
    data = encode(Image.fromarray(RGB), "JPEG")
    assert "truncated" in error(data[:-2])


def test_corrupt_png_data_is_refused(tmp_path: Path) -> None:
    data = bytearray(encode(Image.fromarray(RGB), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 32] = b"\xff" * 32
    assert "corrupt" in error(write(tmp_path / "bad.png", bytes(data)))


def test_corrupt_headers_name_the_format() -> None:
    png = bytearray(encode(Image.fromarray(RGB), "PNG"))
    png[12:16] = b"XXXX"  # IHDR chunk type destroyed
    assert "PNG" in error(bytes(png))
    assert "JPEG" in error(b"\xff\xd8\xff" + bytes(40))


def test_global_pil_state_untouched(tmp_path: Path) -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    data = encode(Image.fromarray(RGB), "JPEG")
    load_image(data)
    error(data[: len(data) // 2])
    error(png_with_size(100_000, 100_000))
    after = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    assert after == before


# ------------------------------------------------------------------------------------------ size limits


def test_default_max_pixels() -> None:
    assert DEFAULT_MAX_PIXELS == 16384 * 16384


def test_max_pixels_boundary() -> None:
    data = encode(Image.new("RGB", (10, 10), (1, 2, 3)), "PNG")
    assert load_image(data, max_pixels=100).shape == (10, 10, 3)
    message = error(data, max_pixels=99)
    assert "max_pixels=99" in message and "10x10" in message
    assert load_image(data, max_pixels=None).shape == (10, 10, 3)
    assert "max_pixels" in error(np.zeros((10, 10, 3), np.uint8), max_pixels=99)


def test_decompression_bomb_refused_before_decoding() -> None:
    bomb = png_with_size(100_000, 100_000)  # 10 G pixels declared, 70 bytes of data
    start = time.perf_counter()
    message = error(bomb)
    assert time.perf_counter() - start < 1.0
    assert "100000x100000" in message and "max_pixels" in message and "MB" in message


def _solid_png(path: Path, width: int, height: int, rgb: tuple[int, int, int], rows: int = 100) -> Path:
    """A solid-colour RGB PNG written without encoding every row: ``rows`` rows are deflated once and
    end with a full flush (an empty window), so the block repeats byte for byte (Pillow takes ~1 s
    to encode 12000x8000)."""
    assert height % rows == 0
    line = b"\x00" + bytes(rgb) * width  # filter type 0 (None), then the pixels
    c = zlib.compressobj(1)
    header = c.compress(b"")  # the zlib header comes with the first output
    block = c.compress(line * rows) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush()  # an empty final block; its adler32 would be the first block's only, so recompute
    adler = 1
    for _ in range(height // rows):
        adler = zlib.adler32(line * rows, adler)
    data = header + block * (height // rows) + tail[:-4] + struct.pack(">I", adler)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def large_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12000x8000 (96 M pixels) solid-colour PNG: ~1 MB on disk, created once."""
    return _solid_png(tmp_path_factory.mktemp("large") / "large.png", 12000, 8000, (10, 200, 30))


@pytest.mark.slow  # decodes 96 M pixels
def test_large_image_loads_without_pil_bomb_warning(large_png: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        arr = load_image(large_png)
    assert_rgb(arr, (8000, 12000))
    assert (arr[::997, ::991] == (10, 200, 30)).all()
    del arr


def test_large_image_refused_below_its_size(large_png: Path) -> None:
    message = error(large_png, max_pixels=12000 * 8000 - 1)
    assert "12000x8000" in message and "large.png" in message


# ------------------------------------------------------------------------------------------ modes


def test_cmyk_jpeg(tmp_path: Path) -> None:
    blocks = four_blocks()
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(blocks).convert("CMYK").save(path, quality=95)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    arr = load_image(path)
    assert_rgb(arr, blocks.shape[:2])
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
    assert_rgb(arr, (2, 4))
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
    assert "NaN" in error(nan)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    blocks = four_blocks(32, 48)  # H=32, W=48; top-left quadrant red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(blocks).save(path, exif=exif, quality=95)
    arr = load_image(path)
    assert_rgb(arr, (48, 32))  # upright: portrait
    # After a clockwise quarter turn the red top-left quadrant is at the top-right.
    assert np.abs(arr[2, -3].astype(int) - (200, 30, 30)).max() < 20
    np.testing.assert_array_equal(arr.shape, load_image(path.read_bytes()).shape)


def test_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "px.png"
    Image.new("RGB", (1, 1), (9, 8, 7)).save(path)
    np.testing.assert_array_equal(load_image(path), [[[9, 8, 7]]])
    np.testing.assert_array_equal(load_image(np.array([[5]], np.uint8)), [[[5, 5, 5]]])


# ------------------------------------------------------------------------------------------ fuzzing


def _seed_files() -> list[bytes]:
    """Small valid files in several formats for the mutation fuzzer."""
    small = Image.fromarray(RGB[:12, :16])
    seeds = [
        encode(small, "PNG"),
        encode(small, "JPEG", quality=80),
        encode(small.convert("P"), "GIF"),
        encode(small, "BMP"),
        encode(small, "TIFF"),
        encode(small.convert("RGBA"), "PNG"),
        encode(Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000), "PNG"),
    ]
    if features.check("webp"):
        seeds.append(encode(small, "WEBP", quality=80))
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
    assert_rgb(out)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None)
@given(data=st.binary(min_size=0, max_size=512))
def test_fuzz_random_bytes(data: bytes) -> None:
    _load_or_error(data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutated(), frame=st.sampled_from([0, 0, 0, 1]))
def test_fuzz_mutated_images(data: bytes, frame: int) -> None:
    _load_or_error(data, frame)


LABELS = ["sky", "grass", "other"]
GOOD = [
    "rgb.jpg", "rgb.png", "gray.png", "gray16.png", "bw.png", "palette.png", "la.png", "rgba.png", "cmyk.jpg",
    "exif_rotated.jpg", "animated.gif", "photo.webp", "photo.bmp", "float.tiff", "one_pixel.png", "thin_strip.png",
    "tall_strip.png",
]
BAD = {  # file -> words the one-line message must contain
    "zero_bytes.png": ["empty", "0 bytes"],
    "truncated.jpg": ["truncated"],
    "truncated.png": ["truncated"],
    "header_only.png": ["corrupt"],
    "corrupt_data.png": ["corrupt"],
    "text_file.jpg": ["text file"],
    "html_page.png": ["HTML"],
    "random_bytes.jpg": ["not a recognised image format"],
    "bomb.png": ["100000x100000", "max_pixels"],
    "directory.jpg": ["directory"],
}


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return lseg.LSegPredictor(tiny_model, size=64)


@pytest.fixture(scope="module")
def predictor32(tiny_model):
    """One predictor for every example of the property and fuzz tests: building one per example (a
    copy of the model, the labels encoded again) cost 20x the segmentation itself."""
    return lseg.LSegPredictor(tiny_model, size=32)


def _check(result, size: tuple[int, int], k: int = len(LABELS)) -> None:
    lm = result.label_map
    assert lm.shape == size and lm.dtype == np.int32
    assert 0 <= lm.min() and lm.max() < k


@pytest.mark.parametrize("name", GOOD)
def test_every_image_kind_segments_at_its_original_size(predictor, good_images, name):
    item = good_images[name]
    _check(predictor.segment(item.path, LABELS), item.size)
    # the same through the other doors: a loaded array and an open binary file
    _check(predictor.segment(load_image(item.path), LABELS), item.size)
    with open(item.path, "rb") as f:
        _check(predictor.segment(f, LABELS), item.size)


@pytest.mark.parametrize("name", GOOD)
def test_large_images_convert_in_strips_exactly(good_images, name, monkeypatch):
    """Large images are converted to RGB in row strips (bounded memory): same pixels as whole."""
    import lseg.io.pixels

    whole = load_image(good_images[name].path)
    monkeypatch.setattr(lseg.io.pixels, "_STRIP_PIXELS", 97)  # every test image is "large" now
    np.testing.assert_array_equal(load_image(good_images[name].path), whole)


def test_exif_rotation_reaches_the_label_map(predictor, good_images):
    rotated = predictor.segment(good_images["exif_rotated.jpg"].path, LABELS).label_map
    h, w = good_images["rgb.jpg"].size
    assert rotated.shape == (w, h)  # portrait: the EXIF orientation was applied before inference


def test_animated_gif_every_frame(predictor, good_images):
    path = good_images["animated.gif"].path
    frames = [frame for _, _, frame in iter_frames(path)]
    assert len(frames) == 3
    maps = [predictor.segment(f, LABELS).label_map for f in frames]
    assert all(m.shape == good_images["animated.gif"].size for m in maps)
    np.testing.assert_array_equal(frames[1], load_image(path, frame=1))
    with pytest.raises(ImageLoadError, match="frames 0..2"):
        load_image(path, frame=3)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_raise_one_line_image_errors(predictor, bad_images, name):
    path = bad_images[name]
    with pytest.raises(ImageLoadError) as e:
        predictor.segment(path, LABELS)
    message = str(e.value)
    assert "\n" not in message and len(message) < 400
    assert path.name in message
    for word in BAD[name]:
        assert word in message, message
    with pytest.raises(ImageLoadError):
        predictor.embed_image(path)


def test_missing_file_through_the_predictor(predictor, tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        predictor.segment(tmp_path / "nope.jpg", LABELS)


def test_bad_arrays_and_tensors_are_refused_clearly(predictor):
    cases = [
        np.zeros((0, 5, 3), np.uint8),
        np.zeros((3, 20, 30), np.uint8),  # channels first
        np.full((8, 8, 3), np.nan, np.float32),
        np.full((8, 8, 3), 2.0, np.float32),  # floats must be in [0, 1]
        np.zeros((8, 8, 3), np.int64),
        np.zeros((8, 8, 2), np.uint8),
        torch.zeros(2, 8, 8),
    ]
    for arr in cases:
        with pytest.raises(LSegError) as e:
            predictor.segment(arr, LABELS)
        assert "\n" not in str(e.value)


def test_one_pixel_image_all_paths(tiny_model):
    one = np.array([[[10, 200, 30]]], np.uint8)
    for kwargs in ({}, {"size": None}, {"size": 512, "crop_size": 64, "stride": 48}):
        r = lseg.LSegPredictor(tiny_model, **kwargs).segment(one, LABELS)
        _check(r, (1, 1))
        assert r.probs.shape == (3, 1, 1)


def test_input_array_is_not_modified_or_aliased(predictor):
    img = scene(30, 40)
    before = img.copy()
    r = predictor.segment(img, LABELS, return_embeddings=True)
    np.testing.assert_array_equal(img, before)
    assert not np.shares_memory(r.label_map, img)


# ------------------------------------------------------------------------------------ property tests

_FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                 derandomize=True, database=None)


@st.composite
def image_arrays(draw):
    h = draw(st.integers(1, 48))
    w = draw(st.integers(1, 48))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    shape = (h, w) if channels is None else (h, w, channels)
    kind = draw(st.sampled_from(["uint8", "uint16", "bool", "float32"]))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    if kind == "uint8":
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
    elif kind == "uint16":
        arr = rng.integers(0, 65536, shape, dtype=np.uint16)
    elif kind == "bool":
        arr = rng.random(shape) > 0.5
    else:
        arr = rng.random(shape, dtype=np.float32)
    return arr


@_FAST
@given(arr=image_arrays())
def test_property_any_valid_array_gives_a_label_map_of_its_size(predictor32, arr):
    r = predictor32.segment(arr, LABELS)
    _check(r, arr.shape[:2])


@_FAST
@given(h=st.integers(1, 40), w=st.integers(1, 40), channels=st.sampled_from([1, 3, 4]), seed=st.integers(0, 99))
def test_property_chw_tensors(predictor32, h, w, channels, seed):
    t = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (channels, h, w), dtype=np.uint8))
    _check(predictor32.segment(t, LABELS), (h, w))


_VALID_FILES = {
    fmt: encode(Image.fromarray(scene(24, 32)), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
}


@st.composite
def mutated_files(draw):
    fmt = draw(st.sampled_from(sorted(_VALID_FILES)))
    data = bytearray(_VALID_FILES[fmt])
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "zero":
            data[pos : pos + draw(st.integers(1, 64))] = bytes(min(64, len(data) - pos))
    return bytes(data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True, database=None)
@given(data=mutated_files())
def test_fuzz_encoded_bytes_through_the_predictor(predictor32, data):
    """Mutated PNG/JPEG/GIF/BMP/WebP/TIFF bytes: a label map of the decoded size, or an
    ImageLoadError with a one-line message; never another exception, hang or crash."""
    predictor = predictor32
    try:
        expected = load_image(data).shape[:2]
    except ImageLoadError as e:
        event("refused with ImageLoadError")
        assert "\n" not in str(e)
        with pytest.raises(ImageLoadError):
            predictor.segment(data, LABELS)
        return
    event("decoded and segmented")
    _check(predictor.segment(data, LABELS), expected)


#: An EXIF block whose one entry points past its end: Pillow warns "Corrupt EXIF data" when reading it.
CORRUPT_EXIF = (b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00"
                b"\xff\xff\xff\xff")


def test_pillow_warnings_are_reissued_once_naming_the_image(tmp_path: Path) -> None:
    path = tmp_path / "bad_exif.jpg"
    Image.fromarray(RGB).save(path, exif=CORRUPT_EXIF)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_rgb(load_image(path))
    assert [str(w.message) for w in caught] == [
        f"image '{path}': Corrupt EXIF data. Expecting to read 12 bytes but only got 4."]
    assert caught[0].category is UserWarning
