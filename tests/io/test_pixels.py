"""Tests for lseg.io.pixels: numpy arrays and torch tensors to HxWx3 uint8 RGB."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from io_helpers import RGB, assert_rgb, error

from lseg.errors import ImageLoadError
from lseg.io import (
    load_image,
)

#: Examples for the array / tensor property tests.
PROPERTY_EXAMPLES = 200


# ------------------------------------------------------------------------------------------ arrays


def test_array_dtypes_and_shapes() -> None:
    gray = np.array([[0, 65535], [256, 32768]], np.uint16)
    np.testing.assert_array_equal(load_image(gray)[..., 1], gray >> 8)
    np.testing.assert_array_equal(load_image(np.array([[True, False]]))[0, :, 2], [255, 0])
    floats = np.array([[0.0, 0.5, 1.0]], np.float64)
    np.testing.assert_array_equal(load_image(floats)[0, :, 0], [0, 128, 255])
    np.testing.assert_array_equal(load_image(RGB[..., :1])[..., 2], RGB[..., 0])
    assert "[0, 1]" in error(floats * 255)
    assert "NaN" in error(np.array([[np.nan]], np.float32))
    assert "int64" in error(np.zeros((4, 4), np.int64))
    assert "transpose" in error(np.zeros((3, 16, 16), np.uint8))
    assert "no pixels" in error(np.zeros((0, 4, 3), np.uint8))
    assert "shape" in error(np.zeros((2, 2, 2, 3), np.uint8))
    assert "shape" in error(np.zeros(5, np.uint8))


def test_tensor_inputs() -> None:
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(RGB.copy()).permute(2, 0, 1)
    np.testing.assert_array_equal(load_image(t.float().div(255).requires_grad_()), RGB)
    np.testing.assert_array_equal(load_image(t[0])[..., 0], RGB[..., 0])  # HxW
    np.testing.assert_array_equal(load_image(t.to(torch.bfloat16) / 255)[..., 0].shape, (24, 32))
    assert "batch" in error(t[None])
    assert "permute" in error(torch.zeros(16, 16, 3))
    assert "dtype" in error(t.long())
    # a meta or sparse tensor raised NotImplementedError / TypeError, not ImageLoadError (segment_batch's
    # errors="return" raised it instead of returning it in the image's place)
    assert "a meta tensor holds no dense pixel data" in error(torch.empty(3, 8, 8, device="meta"))
    assert "a sparse_coo tensor" in error(t.to_sparse())


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
    assert_rgb(out, arr.shape[:2])
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
    assert_rgb(out)
