"""Decoded PIL images of any mode, numpy arrays and torch tensors to the ``HxWx3 uint8 RGB`` array."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from lseg.errors import ImageLoadError

#: Colour that transparent pixels are composited onto (white, as viewers and browsers show them).
ALPHA_BACKGROUND: tuple[int, int, int] = (255, 255, 255)

_ALPHA_CAPABLE_MODES = frozenset({"1", "L", "P", "RGB", "LA", "PA", "La", "RGBA", "RGBa"})

#: Large images are converted in row strips of this many pixels: the peak is the decoded image plus the
#: result, not several full-size copies.
_STRIP_PIXELS = 1 << 21


def convert_mode(im: Image.Image, name: str) -> np.ndarray:
    """A decoded PIL image of any mode as a fresh ``HxWx3 uint8`` RGB array (in row strips, except 'I'/'F'
    modes, whose scaling depends on the whole image): :func:`lseg.io.load_image`'s conversion, without its
    EXIF rotation; :class:`ImageLoadError` for float data with NaN or inf."""
    w, h = im.size
    if w * h <= _STRIP_PIXELS or im.mode.startswith(("I", "F")):
        return _convert_whole(im, name)
    out = np.empty((h, w, 3), dtype=np.uint8)
    rows = max(1, _STRIP_PIXELS // w)
    for y0 in range(0, h, rows):
        out[y0 : y0 + rows] = _convert_whole(im.crop((0, y0, w, min(h, y0 + rows))), name)
    return out


def _convert_whole(im: Image.Image, name: str) -> np.ndarray:
    mode = im.mode
    if mode in _ALPHA_CAPABLE_MODES and im.has_transparency_data:  # an alpha channel or transparency info
        return _composite_on_background(im.convert("RGBA"))
    if mode == "RGB":
        return np.array(im, dtype=np.uint8, order="C")
    if mode.startswith("I;16") or mode == "I":
        return _gray_to_rgb(_int_to_uint8(np.asarray(im)))
    if mode == "F":
        values = np.asarray(im, dtype=np.float32)
        if not np.isfinite(values).all():
            raise ImageLoadError(f"cannot load image '{name}': float image contains NaN or inf values; "
                                 "fix the file")
        return _gray_to_rgb(_float_image_to_uint8(values))
    # 1, L, P, CMYK, YCbCr, HSV, RGBX, ...: Pillow's converters are exact for these.
    return np.array(im.convert("RGB"), dtype=np.uint8, order="C")


def _composite_on_background(rgba: Image.Image) -> np.ndarray:
    background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
    return np.array(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8, order="C")


def _int_to_uint8(values: np.ndarray) -> np.ndarray:
    """Integer gray values to 8 bits: ``uint16`` ``>> 8``; others (32-bit 'I', which Pillow also uses for
    16-bit data) clipped at 0, then kept up to 255, ``>> 8`` up to 65535, else by their bit length."""
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return (values.astype(np.uint16) >> 8).astype(np.uint8)
    v = np.clip(values.astype(np.int64), 0, None)
    vmax = int(v.max()) if v.size else 0
    if vmax <= 255:
        return v.astype(np.uint8)
    shift = 8 if vmax <= 0xFFFF else vmax.bit_length() - 8
    return (v >> shift).astype(np.uint8)


def _float_image_to_uint8(values: np.ndarray) -> np.ndarray:
    """'F' mode data (no defined white level) to 8 bits: ``[0, 1]`` times 255, ``[0, 255]`` rounded, else
    min-max normalised."""
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0.0 and hi <= 1.0:
        scaled = values * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = values
    else:
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2), dtype=np.uint8)


def _array_to_rgb(arr: np.ndarray, name: str, *, max_pixels: int | None) -> np.ndarray:
    shape = "x".join(str(s) for s in arr.shape) or "scalar"
    if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        raise ImageLoadError(f"cannot load {name} of shape {shape}: expected HxW, HxWx3 or HxWx4 "
                             "(channels last); this looks channels-first, use arr.transpose(1, 2, 0)")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ImageLoadError(f"cannot load {name} of shape {shape}: expected HxW (gray), HxWx3 (RGB) "
                             "or HxWx4 (RGBA)")
    h, w = int(arr.shape[0]), int(arr.shape[1])
    if h < 1 or w < 1:
        raise ImageLoadError(f"cannot load {name} of shape {shape}: it has no pixels")
    if max_pixels is not None and h * w > max_pixels:
        raise ImageLoadError(f"cannot load {name} of shape {shape}: {h * w} pixels is above "
                             f"max_pixels={max_pixels}; downscale it or pass a larger max_pixels")
    dtype = arr.dtype
    if dtype == np.bool_:
        u8 = arr.astype(np.uint8) * np.uint8(255)
    elif dtype.kind == "u" and dtype.itemsize == 1:
        u8 = arr.astype(np.uint8)
    elif dtype.kind == "u" and dtype.itemsize == 2:
        u8 = (arr.astype(np.uint16) >> 8).astype(np.uint8)
    elif dtype.kind == "f":
        # Validate in the input dtype: casting huge float64 values to float32 would overflow.
        if not np.isfinite(arr).all():
            raise ImageLoadError(f"cannot load {name}: float data contains NaN or inf; fix the values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageLoadError(f"cannot load {name}: float values must be in [0, 1], got "
                                 f"[{lo:.4g}, {hi:.4g}]; divide by 255 or cast 0-255 data to uint8")
        u8 = np.rint(arr.astype(np.float32) * 255.0).astype(np.uint8)
    else:
        raise ImageLoadError(f"cannot load {name}: unsupported dtype {dtype}; use uint8 (0-255), "
                             "uint16, bool or float in [0, 1] (e.g. arr.astype(np.uint8))")
    if u8.ndim == 2 or u8.shape[2] == 1:
        return _gray_to_rgb(u8.reshape(u8.shape[:2]))
    if u8.shape[2] == 3:
        return np.array(u8, dtype=np.uint8, order="C", copy=True)
    return _composite_on_background(Image.fromarray(np.ascontiguousarray(u8)))


def _tensor_to_rgb(tensor: Any, *, max_pixels: int | None) -> np.ndarray:
    import torch  # already imported: the caller holds a tensor

    shape = "x".join(str(s) for s in tensor.shape) or "scalar"
    t = tensor.detach()
    if t.is_meta or t.layout != torch.strided:  # no pixels to read, or not as a dense array
        kind = "meta" if t.is_meta else str(t.layout).replace("torch.", "")
        raise ImageLoadError(f"cannot load torch tensor of shape {shape}: a {kind} tensor holds no dense pixel "
                             "data; pass a dense tensor that holds the image (tensor.to_dense())")
    if t.ndim == 4:
        raise ImageLoadError(f"cannot load torch tensor of shape {shape}: expected one image CxHxW, got "
                             "a batch; pass tensor[i]")
    if t.ndim == 3:
        if t.shape[0] not in (1, 3, 4):
            raise ImageLoadError(f"cannot load torch tensor of shape {shape}: expected CxHxW with C in "
                                 "{1, 3, 4} (channels first); use tensor.permute(2, 0, 1)")
        t = t.permute(1, 2, 0)
    elif t.ndim != 2:
        raise ImageLoadError(f"cannot load torch tensor of shape {shape}: expected CxHxW or HxW")
    if t.dtype == torch.uint8 or t.dtype == torch.bool:
        arr = t.cpu().numpy()
    elif t.is_floating_point():
        arr = t.to(device="cpu", dtype=torch.float32).numpy()
    else:
        raise ImageLoadError(f"cannot load torch tensor: unsupported dtype {t.dtype}; use uint8 (0-255), "
                             "bool or float in [0, 1]")
    return _array_to_rgb(arr, f"torch tensor of shape {shape}", max_pixels=max_pixels)
