"""lseg.geometry: sizes, padding, windows, resizing back and the resized argmax (numpy and torch)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lseg.geometry import (
    SIZE_MULTIPLE,
    ResizedArgmax,
    argmax_resized,
    axis_weights,
    fit_size,
    half_size,
    pad_to,
    pad_to_multiple,
    pad_value,
    padded_size,
    reference_windows,
    resize,
    resize_bilinear,
    scaled_size,
    windows,
    working_size,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def test_imports_without_torch() -> None:
    code = "import sys, lseg.geometry; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("hw", "size", "expected"), [
    ((96, 128), 64, (48, 64)),
    ((128, 96), 64, (64, 48)),
    ((96, 128), 480, (360, 480)),     # upscaling
    ((50, 77), 64, (42, 64)),         # 41.56 rounds up
    ((1, 1000), 10, (1, 10)),         # never below one pixel
    ((33, 33), 480, (480, 480)),
    ((96, 128), None, (96, 128)),     # None: the image's own size
])
def test_working_size(hw: tuple[int, int], size: int | None, expected: tuple[int, int]) -> None:
    assert working_size(*hw, size) == expected


def test_fit_scaled_padded_half_sizes() -> None:
    assert fit_size(50, 77, (64, 64)) == (42, 64)
    assert fit_size(10, 20, (64, 64)) == (32, 64)   # scaled up to fill the box
    assert fit_size(100, 10, (64, 96)) == (64, 6)
    assert fit_size(42, 64, (64, 64)) == (42, 64)   # already fits: unchanged
    # the reference's resize: long side given, the other int(x * long / L + 0.5); a square counts as wide
    assert scaled_size(50, 70, 100) == (71, 100)
    assert scaled_size(70, 50, 100) == (100, 71)
    assert scaled_size(64, 64, 40) == (40, 40)
    assert scaled_size(2, 2000, 260) == (1, 260) and scaled_size(2000, 1, 260) == (260, 1)  # never 0 (a crash)
    assert SIZE_MULTIPLE == 32
    assert padded_size(49, 77) == (64, 96) and padded_size(64, 96) == (64, 96) and padded_size(1, 1) == (32, 32)
    assert padded_size(10, 10, 8) == (16, 16)
    assert half_size(49, 77) == (25, 39) and half_size(64, 96) == (32, 48)


def test_pad_value_is_normalised_black() -> None:
    assert pad_value((0.5,) * 3, (0.5,) * 3).tolist() == [-1.0, -1.0, -1.0]
    mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    # the same bits from sequences (float32) and from the model's float32 buffers (tensors in, tensor out)
    from_tensors = pad_value(mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1))
    assert isinstance(from_tensors, torch.Tensor) and from_tensors.shape == (1, 3, 1, 1)
    np.testing.assert_array_equal(pad_value(CLIP_MEAN, CLIP_STD), from_tensors.flatten().numpy())
    # what the normalisation makes of a black pixel
    np.testing.assert_array_equal(pad_value(CLIP_MEAN, CLIP_STD), ((0 - mean) / std).numpy())


def test_pad_to_numpy_and_torch_agree() -> None:
    x = np.random.default_rng(0).normal(size=(1, 3, 5, 7)).astype(np.float32)
    black = pad_value(CLIP_MEAN, CLIP_STD)
    a = pad_to(x, (8, 9), black)
    b = pad_to(torch.from_numpy(x), (8, 9), torch.from_numpy(black))
    assert a.shape == (1, 3, 8, 9) and isinstance(b, torch.Tensor)
    np.testing.assert_array_equal(a, b.numpy())
    np.testing.assert_array_equal(a[..., :5, :7], x)
    for c in range(3):  # bottom and right filled with the channel's value
        assert (a[0, c, 5:] == black[c]).all() and (a[0, c, :, 7:] == black[c]).all()
    assert pad_to(x, (4, 4), -1.0) is x  # already at least that size
    # a scalar value, a (C, H, W) array; to a multiple of 32
    y = pad_to_multiple(x[0], -1.0)
    assert y.shape == (3, 32, 32) and (y[:, 5:] == -1).all() and y.flags.c_contiguous
    t = pad_to_multiple(torch.from_numpy(x), -1.0)
    np.testing.assert_array_equal(t.numpy()[0], y)


@pytest.mark.parametrize(("h", "w", "crop", "stride"), [
    (96, 128, 64, 48), (100, 100, 64, 32), (64, 64, 64, 32), (30, 200, 64, 50), (481, 719, 480, 320), (7, 9, 4, 1),
    (65, 64, 64, 42), (267, 400, 64, 41), (101, 99, 33, 33), (96, 97, 32, 31),
])
def test_windows_cover_every_half_resolution_pixel(h: int, w: int, crop: int, stride: int) -> None:
    """A window from even corner ``y0`` of ``n`` rows gives embedding rows ``y0/2 .. y0/2 + ceil(n/2) - 1``:
    together they cover all ``ceil(h/2)`` rows (an odd ``h - crop`` once left the last row empty)."""
    covered = np.zeros((math.ceil(h / 2), math.ceil(w / 2)), int)
    corners = list(windows(h, w, crop, stride))
    assert len(set(corners)) == len(corners)
    for y0, x0 in corners:
        assert y0 % 2 == 0 and x0 % 2 == 0 and 0 <= y0 < h and 0 <= x0 < w
        rows, cols = min(crop, h - y0), min(crop, w - x0)
        assert rows >= min(crop, h) - 1 and cols >= min(crop, w) - 1  # at most a row/column short
        covered[y0 // 2 : y0 // 2 + math.ceil(rows / 2), x0 // 2 : x0 // 2 + math.ceil(cols / 2)] += 1
    assert covered.min() >= 1
    # the last windows are at the edge (shifted back, not padded)
    assert max(y for y, _ in corners) == max(0, h - crop + (h - crop) % 2)
    assert max(x for _, x in corners) == max(0, w - crop + (w - crop) % 2)


@pytest.mark.parametrize(("h", "w", "crop", "stride"), [(71, 100, 64, 42), (64, 64, 64, 42), (149, 85, 48, 32)])
def test_reference_windows_cover_every_pixel(h: int, w: int, crop: int, stride: int) -> None:
    covered = np.zeros((h, w), int)
    spans = list(reference_windows(h, w, crop, stride))
    for y0, y1, x0, x1 in spans:
        assert y0 % stride == 0 and x0 % stride == 0  # not shifted back ...
        assert y1 - y0 <= crop and x1 - x0 <= crop and y1 <= h and x1 <= w  # ... but cut at the edge
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    assert len(spans) == (-(-(h - crop) // stride) + 1) * (-(-(w - crop) // stride) + 1)


def test_axis_weights_and_resizes_agree_with_torch() -> None:
    lo, hi, t = axis_weights(5, 9)
    np.testing.assert_array_equal(lo + t, np.arange(9) * 0.5)
    assert t.dtype == np.float32 and (hi <= 4).all()
    assert [a.tolist() for a in axis_weights(4, 1)] == [[0], [1], [0.0]]
    x = np.random.default_rng(1).normal(size=(3, 7, 5)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x)[None], size=(15, 11), mode="bilinear", align_corners=True)[0]
    got = resize(torch.from_numpy(x)[None], (15, 11))[0]
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    np.testing.assert_allclose(resize_bilinear(x, (15, 11)), ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(resize_bilinear(x, (4, 3)), resize(torch.from_numpy(x)[None], (4, 3))[0].numpy(),
                               atol=1e-5)
    assert resize_bilinear(x, (7, 5)) is x


@pytest.mark.parametrize("size", [(37, 53), (12, 10), (6, 8)])
def test_strip_argmax_equals_full_argmax(size: tuple[int, int]) -> None:
    logits = torch.randn(7, 6, 8, generator=torch.Generator().manual_seed(2))
    full = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=True)[0]
    ref = full.argmax(0).to(torch.int32)
    for max_elems in (1, 100, 1 << 23):  # one row per strip ... one strip
        got = ResizedArgmax(size, max_elems=max_elems).add(logits).result()
        assert got.dtype == torch.int32
        # the same maps up to float ties between labels
        assert (got == ref).float().mean() > 0.995
        # label chunks (a running maximum) give the same map as all labels at once
        chunked = ResizedArgmax(size, max_elems=max_elems)
        for i in range(0, 7, 3):
            chunked.add(logits[i : i + 3], more=i + 3 < 7)
        torch.testing.assert_close(chunked.result(), got, rtol=0, atol=0)
        # numpy (the ONNX runtime): the same, in strips and in chunks
        arr = logits.numpy()
        np_full = resize_bilinear(arr, size).argmax(0)
        np_strips = ResizedArgmax(size, max_elems=max_elems).add(arr).result()
        assert np_strips.dtype == np.int32
        np.testing.assert_array_equal(np_strips, np_full)
        np_chunked = ResizedArgmax(size, max_elems=max_elems)
        for i in range(0, 7, 3):
            np_chunked.add(arr[i : i + 3], more=i + 3 < 7)
        np.testing.assert_array_equal(np_chunked.result(), np_full)
        assert (np_full == ref.numpy()).mean() > 0.995
    np.testing.assert_array_equal(argmax_resized(logits.numpy(), size), np_full)


def test_strips_resize_as_interpolate_places_the_rows() -> None:
    """The strips once took row positions from torch.linspace, off by up to 1.5e-5 rows from
    F.interpolate's: logits off by 3e-4, and label maps that disagreed with ``probs.argmax(0)``."""
    from lseg.geometry import _resized_row_strips

    logits = torch.randn(4, 240, 320, generator=torch.Generator().manual_seed(0)) * 3
    full = F.interpolate(logits[None], size=(1234, 987), mode="bilinear", align_corners=True)[0]
    strips = torch.cat([band for _, _, band in _resized_row_strips(logits, (1234, 987), 1 << 21)], 1)
    torch.testing.assert_close(strips, full, rtol=0, atol=1e-5)


def test_argmax_ties_go_to_the_lowest_label() -> None:
    logits = np.zeros((3, 4, 4), np.float32)
    for x in (logits, torch.from_numpy(logits)):
        chunked = ResizedArgmax((8, 8)).add(x[:1], more=True).add(x[1:])
        assert (np.asarray(chunked.result()) == 0).all()
        assert (np.asarray(argmax_resized(x, (4, 4))) == 0).all()
