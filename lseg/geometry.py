"""Image geometry (sizes, padding, windows, resizing, the resized argmax); torch is imported only by
functions given tensors. Maps are ``(..., H, W)``, sizes ``(height, width)``; logits and embeddings are
resized bilinearly with ``align_corners=True``; padding is bottom/right with black (:func:`pad_value`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

#: The network's input sides are padded to a multiple of this (the decoder's coarsest stride).
SIZE_MULTIPLE = 32

Array = TypeVar("Array", np.ndarray, "torch.Tensor")


def working_size(h: int, w: int, size: int | None) -> tuple[int, int]:
    """The working resolution of an (h, w) image: long side ``size``, aspect kept (``None``: as is)."""
    if size is None:
        return h, w
    s = size / max(h, w)
    return max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))


def fit_size(h: int, w: int, box: tuple[int, int]) -> tuple[int, int]:
    """The largest aspect-kept size of an (h, w) image inside ``box`` (a fixed-size graph's letterbox)."""
    bh, bw = box
    s = min(bh / h, bw / w)
    return min(bh, max(1, int(h * s + 0.5))), min(bw, max(1, int(w * s + 0.5)))


def scaled_size(h: int, w: int, long_size: int) -> tuple[int, int]:
    """The reference evaluator's resize: long side ``long_size``, the other ``int(x * long / L + 0.5)``,
    at least 1 (the reference's 0 crashed; :func:`working_size` can round differently)."""
    if h > w:
        return long_size, max(1, int(1.0 * w * long_size / h + 0.5))
    return max(1, int(1.0 * h * long_size / w + 0.5)), long_size


def padded_size(h: int, w: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(h, w) rounded up to multiples of ``multiple``."""
    return -(-h // multiple) * multiple, -(-w // multiple) * multiple


def half_size(h: int, w: int) -> tuple[int, int]:
    """Size of the network's half-resolution output for an (h, w) input."""
    return math.ceil(h / 2), math.ceil(w / 2)


def pad_value(mean: Any, std: Any) -> Any:
    """The normalised value of black per channel, ``(0 - mean) / std``, what every input is padded with;
    sequences are computed in float32, as tensors are."""
    if isinstance(mean, (list, tuple)):
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return -mean / std


def pad_to(x: Array, size: tuple[int, int], value: Any) -> Array:
    """Pad ``x`` (..., C, h, w), array or tensor, at the bottom/right to at least ``size`` with ``value``
    (a scalar or one per channel)."""
    h, w = x.shape[-2:]
    big_h, big_w = max(h, size[0]), max(w, size[1])
    if (big_h, big_w) == (h, w):
        return x
    shape = (*x.shape[:-2], big_h, big_w)
    if isinstance(x, np.ndarray):
        out = np.empty(shape, x.dtype)
        out[...] = np.asarray(value, x.dtype).reshape(-1, 1, 1)
    else:
        import torch

        v = value if isinstance(value, torch.Tensor) else torch.tensor(value, dtype=torch.float32)
        out = v.to(device=x.device, dtype=x.dtype).reshape(-1, 1, 1).expand(shape).clone()
    out[..., :h, :w] = x
    return out


def pad_to_multiple(x: Array, value: Any, multiple: int = SIZE_MULTIPLE) -> Array:
    """Pad (..., H, W) at the bottom/right to multiples of ``multiple`` with ``value`` (the network's
    input contract; crop its output to :func:`half_size` of the unpadded input)."""
    h, w = x.shape[-2:]
    out = pad_to(x, padded_size(h, w, multiple), value)
    return np.ascontiguousarray(out) if isinstance(out, np.ndarray) else out


def windows(h: int, w: int, crop: int, stride: int) -> Iterator[tuple[int, int]]:
    """Top-left corners of the predictor's ``crop`` windows covering (h, w). Every corner is even, so a
    window's embeddings land on whole half-resolution pixels; the last one is at the edge, ``n - crop``
    rounded up to even (its window is then a row or column short), so it reaches row ``ceil(n/2) - 1``."""

    def starts(n: int) -> list[int]:
        last = max(0, n - crop + (n - crop) % 2)
        steps = range(max(1, math.ceil((n - crop) / stride) + 1))
        return list(dict.fromkeys([*(min(i * stride // 2 * 2, last) for i in steps), last]))

    return itertools.product(starts(h), starts(w))


def reference_windows(h: int, w: int, crop: int, stride: int) -> Iterator[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` of the reference evaluator's windows over an (h, w) image padded to at least
    ``crop``: steps of ``stride``, the last ones partial (the caller pads them), not shifted back."""
    for y0, x0 in itertools.product(range(0, h - crop + stride, stride), range(0, w - crop + stride, stride)):
        yield y0, min(y0 + crop, h), x0, min(x0 + crop, w)


def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``lo, hi`` and float32 weights ``t`` of a bilinear align_corners=True resize along
    one axis: output ``i`` = ``(1 - t) * x[lo] + t * x[hi]``. Positions are float64: in float32 one can
    round up onto the next integer and pick other neighbours."""
    pos = np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """numpy (K, h, w) -> (K, size[0], size[1]), bilinear align_corners=True (as :func:`resize`)."""
    if x.shape[1:] == tuple(size):
        return x
    ylo, yhi, ty = axis_weights(x.shape[1], size[0])
    xlo, xhi, tx = axis_weights(x.shape[2], size[1])
    rows = x[:, ylo] * (1 - ty)[None, :, None] + x[:, yhi] * ty[None, :, None]
    return rows[:, :, xlo] * (1 - tx) + rows[:, :, xhi] * tx


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Tensor (B, C, h, w) -> (B, C, size), bilinear align_corners=True (logits, embeddings)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    import torch.nn.functional as F

    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def resize_rgb(
    rgb: np.ndarray | torch.Tensor, size: tuple[int, int], device: Any, max_elems: int = 1 << 22
) -> torch.Tensor:
    """``HxWx3 uint8`` (array, or tensor on any device) -> (1, 3, h, w) float in [0, 1] on ``device``,
    bit for bit ``F.interpolate(image, size, mode="bilinear", antialias=True)``, but with only
    ``max_elems`` input floats at a time (the separable filter's width pass on row strips)."""
    import torch
    import torch.nn.functional as F

    src = torch.from_numpy(rgb) if isinstance(rgb, np.ndarray) else rgb
    H, W = src.shape[:2]
    h, w = size
    if (h, w) == (H, W):
        return src.to(device).permute(2, 0, 1)[None].float().div_(255.0)
    rows = max(1, max_elems // (3 * W))
    mid = torch.empty(1, 3, H, w, device=device)
    for r0 in range(0, H, rows):
        strip = src[r0 : r0 + rows].to(device).permute(2, 0, 1)[None].float().div_(255.0)
        if w != W:
            strip = F.interpolate(strip, size=(strip.shape[-2], w), mode="bilinear", align_corners=False,
                                  antialias=True)
        mid[..., r0 : r0 + strip.shape[-2], :] = strip
    if h == H:
        return mid
    return F.interpolate(mid, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


class ResizedArgmax:
    """Label map = argmax over labels of (K, h, w) logits (numpy or a tensor, on its device) bilinearly
    resized (align_corners=True) to ``size``, in row strips of about ``max_elems`` floats and label
    chunks (a running maximum): memory is the (H, W) result plus one strip. Ties go to the lowest label."""

    def __init__(self, size: tuple[int, int], max_elems: int | None = None) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.max_elems = max_elems  # None: by where the logits are (see add)
        self.index: Any = None  # (H, W) int32, allocated like the first logits; every row is written
        self.best: Any = None
        self.offset = 0

    def add(self, logits: Any, more: bool = False) -> ResizedArgmax:
        """Feed the next ``k`` labels' logits (k, h, w); ``more``: other chunks follow."""
        numpy = isinstance(logits, np.ndarray)
        if not numpy:
            import torch
        where = np.where if numpy else torch.where
        first = self.offset == 0
        if first:
            self.index = (np.empty(self.size, np.int32) if numpy
                          else torch.empty(self.size, dtype=torch.int32, device=logits.device))
        if more and self.best is None:
            self.best = (np.empty(self.size, logits.dtype) if numpy
                         else torch.empty(self.size, dtype=logits.dtype, device=logits.device))
        # Default: on the host, 8 MB strips stay in cache and leave glibc's heap little to fragment (a 96 MP
        # label map: peak 385-430 MB instead of 510-575, and ~10% faster); accelerators: 32 MB strips, as
        # each strip costs a few kernel launches.
        on_host = numpy or logits.device.type == "cpu"
        max_elems = (1 << 21 if on_host else 1 << 23) if self.max_elems is None else self.max_elems
        for r0, r1, band in _resized_row_strips(logits, self.size, max_elems):
            if numpy:
                idx = band.argmax(0).astype(np.int32)
                values = np.take_along_axis(band, idx[None].astype(np.intp), 0)[0] if self.best is not None else None
            else:
                values, idx = band.max(0)
                idx = idx.to(torch.int32)
            if self.offset:
                idx += self.offset
            if first:
                self.index[r0:r1] = idx
                if self.best is not None:
                    self.best[r0:r1] = values
            else:
                better = values > self.best[r0:r1]
                self.index[r0:r1] = where(better, idx, self.index[r0:r1])
                self.best[r0:r1] = where(better, values, self.best[r0:r1])
        self.offset += logits.shape[0]
        if not more:
            self.best = None
        return self

    def result(self) -> Any:
        """The (H, W) int32 label map (numpy, or a tensor on the logits' device)."""
        return self.index


def _resized_row_strips(logits: Any, size: tuple[int, int], max_elems: int) -> Iterator[tuple[int, int, Any]]:
    """``(r0, r1, band)``: rows r0:r1 of ``logits`` (K, h, w) resized to ``size`` (bilinear,
    align_corners=True), rows first; tensors with ``torch.lerp`` and ``F.interpolate`` (equal to F.interpolate
    up to rounding)."""
    k, h, w = logits.shape
    H, W = size
    # pixels per strip: the band holds k floats for each, the max() results 12 bytes.
    rows = max(1, max_elems // max(3, k) // max(1, W))
    if (h, w) == (H, W):
        for r0 in range(0, H, rows):
            yield r0, min(H, r0 + rows), logits[:, r0 : r0 + rows]
        return
    if isinstance(logits, np.ndarray):
        ylo, yhi, ty = axis_weights(h, H)
        xlo, xhi, tx = axis_weights(w, W)
        for r0 in range(0, H, rows):
            sl = slice(r0, r0 + rows)
            t = ty[sl][None, :, None]
            band = logits[:, ylo[sl]] * (1 - t) + logits[:, yhi[sl]] * t
            if w != W:
                band = band[:, :, xlo] * (1 - tx) + band[:, :, xhi] * tx
            yield r0, r0 + band.shape[1], band
        return
    import torch
    import torch.nn.functional as F

    # source rows as F.interpolate places them (float32 (h - 1) / (H - 1) times the row; linspace rounds otherwise)
    y = torch.arange(H, device=logits.device, dtype=torch.float32) * float(np.float32(h - 1) / np.float32(max(1, H - 1)))
    for r0 in range(0, H, rows):
        ys = y[r0 : r0 + rows]
        lo = ys.floor().long().clamp(max=h - 1)
        hi = (lo + 1).clamp(max=h - 1)
        t = (ys - lo.float()).view(1, -1, 1)
        band = torch.lerp(logits.index_select(1, lo), logits.index_select(1, hi), t)  # (K, rows, w)
        if w != W:
            n = band.shape[1]
            band = F.interpolate(band.reshape(1, k * n, w), size=W, mode="linear", align_corners=True).view(k, n, W)
        yield r0, r0 + band.shape[1], band


def argmax_resized(logits: Array, size: tuple[int, int]) -> Array:
    """argmax over K of (K, h, w) logits resized to ``size``: (H, W) int32 (see :class:`ResizedArgmax`)."""
    return ResizedArgmax(size).add(logits).result()
