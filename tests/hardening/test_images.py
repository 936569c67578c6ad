"""Every image kind through the predictor's front door: good files segment to a label map of the
original size, bad files raise one-line ImageLoadErrors; property tests and a byte-level fuzz run
of ``LSegPredictor.segment`` on generated images."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hardening.helpers import encode, scene
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import lseg
from lseg.errors import ImageLoadError, LSegError
from lseg.io import iter_frames, load_image

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


def test_missing_file(predictor, tmp_path):
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
def test_property_any_valid_array_gives_a_label_map_of_its_size(tiny_model, arr):
    r = lseg.LSegPredictor(tiny_model, size=32).segment(arr, LABELS)
    _check(r, arr.shape[:2])


@_FAST
@given(h=st.integers(1, 40), w=st.integers(1, 40), channels=st.sampled_from([1, 3, 4]), seed=st.integers(0, 99))
def test_property_chw_tensors(tiny_model, h, w, channels, seed):
    t = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (channels, h, w), dtype=np.uint8))
    _check(lseg.LSegPredictor(tiny_model, size=32).segment(t, LABELS), (h, w))


_VALID_FILES = {
    fmt: encode(Image.fromarray(scene(24, 32)), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
}
#: Fuzz length: examples per run of the predictor-level byte fuzz (env FUZZ_EXAMPLES overrides;
#: tests/io/test_images.py runs the same kind of fuzz on load_image alone).
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


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
def test_fuzz_encoded_bytes_through_the_predictor(tiny_model, data):
    """Mutated PNG/JPEG/GIF/BMP/WebP/TIFF bytes: a label map of the decoded size, or an
    ImageLoadError with a one-line message; never another exception, hang or crash."""
    predictor = lseg.LSegPredictor(tiny_model, size=32)
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
