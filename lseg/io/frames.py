"""Frames of animated images (Pillow) and videos (PyAV), sampled by ``every_n`` or ``fps``."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lseg.errors import ImageLoadError
from lseg.io._text import one_line as _one_line
from lseg.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    _check_jpeg_stream,
    _check_pixels,
    _identify,
    _n_frames,
    _open_regular,
    _pil_to_rgb,
    _seek_frame,
)

__all__ = ["iter_frames"]

#: GIF/WebP frames with a missing or zero duration are shown for 100 ms by browsers; we use the
#: same convention for frame timestamps.
_DEFAULT_FRAME_DURATION_MS = 100

_T = TypeVar("_T")


def iter_frames(
    path: str | os.PathLike[str],
    *,
    every_n: int | None = None,
    fps: float | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode frames of an animated image or a video, sampled at a requested rate.

    Animated images (extensions in :data:`IMAGE_EXTENSIONS`: GIF, WebP, APNG, multi-page TIFF;
    still images yield one frame) are decoded with Pillow; anything else (mp4, mov, mkv, webm,
    avi, ...) with PyAV (``pip install av``), imported only when needed. Video frames are
    rotated upright according to the stream's display matrix (phone videos).

    Args:
        path: Path to the file.
        every_n: Keep frames ``0, n, 2n, ...`` (by decoded frame index).
        fps: Keep at most ``fps`` frames per second of media time: the first frame of each
            ``1/fps`` interval. If the source has fewer frames per second, all are kept.
            Give at most one of ``every_n`` / ``fps``; with neither, every frame is yielded.
        max_pixels: Per-frame pixel limit, as in :func:`load_image`.

    Yields:
        ``(frame_index, timestamp_seconds, frame)`` with ``frame_index`` the index of the frame
        in the file (0-based, counting skipped frames), ``timestamp_seconds`` its presentation
        time (GIF/WebP: cumulative frame durations; missing/zero durations count as 100 ms) and
        ``frame`` an ``HxWx3 uint8`` RGB array.

    Raises:
        ImageLoadError: The file is missing, empty, corrupt, not decodable, or PyAV is missing
            for a video. Errors can also surface mid-iteration (a truncated video).
        ValueError: ``every_n`` / ``fps`` are invalid or both given.
    """
    if every_n is not None and fps is not None:
        raise ValueError("iter_frames: give every_n or fps, not both")
    if every_n is not None and (isinstance(every_n, bool) or not isinstance(every_n, (int, np.integer))
                                or every_n < 1):
        raise ValueError(f"iter_frames: every_n must be a positive int, got {every_n!r}")
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"iter_frames: fps must be a positive finite number, got {fps!r}")
    p = Path(os.fspath(path)).expanduser()
    with _open_regular(p, "cannot read frames from") as f:  # never block on a FIFO or a device
        if os.fstat(f.fileno()).st_size == 0:
            raise ImageLoadError(f"cannot read frames from '{p}': the file is empty (0 bytes); re-create it")
    sampler = _FrameSampler(every_n=every_n, fps=fps)
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        frames = _iter_image_frames(p, max_pixels)
    else:
        frames = _iter_video_frames(p, max_pixels)
    for index, timestamp, get_frame in frames:
        if sampler.keep(index, timestamp):
            yield index, timestamp, get_frame()


class _FrameSampler:
    """Decides which frames to keep for ``every_n`` / ``fps`` sampling."""

    def __init__(self, *, every_n: int | None, fps: float | None) -> None:
        self.every_n = every_n
        self.fps = fps
        self._last_bucket: int | None = None

    def keep(self, index: int, timestamp: float) -> bool:
        if self.every_n is not None:
            return index % self.every_n == 0
        if self.fps is None:
            return True
        # Bucket k covers [k/fps, (k+1)/fps); the epsilon absorbs float error in timestamps
        # like 0.30000000000000004 that are meant to sit exactly on a bucket boundary.
        bucket = math.floor(timestamp * self.fps + 1e-6)
        if self._last_bucket is not None and bucket <= self._last_bucket:
            return False
        self._last_bucket = bucket
        return True


def _iter_image_frames(
    p: Path, max_pixels: int | None
) -> Iterator[tuple[int, float, Callable[[], np.ndarray]]]:
    """Frames of an (animated) image file via Pillow; decoding is deferred to the callback."""
    name = str(p)
    with _open_regular(p, "cannot read frames from") as f:
        im = _identify(f, name)
        try:
            _check_pixels(im.size, name, max_pixels)
            if im.format in ("JPEG", "MPO"):
                _check_jpeg_stream(f, name)
            n = _n_frames(im)
            t_ms = 0.0
            for index in range(n):
                _seek_frame(im, index, name)
                duration = im.info.get("duration") or _DEFAULT_FRAME_DURATION_MS
                yield index, t_ms / 1000.0, _bind(_pil_to_rgb, im, name, max_pixels=max_pixels)
                t_ms += float(duration)
        finally:
            im.close()


def _bind(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> Callable[[], _T]:
    return lambda: fn(*args, **kwargs)


def _iter_video_frames(
    p: Path, max_pixels: int | None
) -> Iterator[tuple[int, float, Callable[[], np.ndarray]]]:
    """Frames of a video file via PyAV; conversion to RGB is deferred to the callback."""
    try:
        import av
    except ImportError:
        raise ImageLoadError(f"cannot read video '{p}': PyAV is not installed; install it with "
                             "`pip install av` (or `pip install lseg[video]`)") from None
    try:
        container = av.open(str(p))
    except Exception as e:  # noqa: BLE001 - FFmpeg reports many error types
        raise ImageLoadError(f"cannot read video '{p}': not a readable video or animated image "
                             f"({_one_line(e)}); check the file") from None
    try:
        if not container.streams.video:
            raise ImageLoadError(f"cannot read video '{p}': it has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-level threading: decode order is unchanged
        rate = stream.average_rate or stream.guessed_rate
        fallback_fps = float(rate) if rate else 25.0
        first_pts_time: float | None = None
        index = 0
        decoded = container.decode(stream)
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except Exception as e:  # noqa: BLE001
                raise ImageLoadError(f"cannot read video '{p}': decoding failed at frame {index} "
                                     f"({_one_line(e)}); the file may be truncated") from None
            _check_pixels((frame.width, frame.height), f"{p} frame {index}", max_pixels)
            if frame.time is not None:
                # Timestamps relative to the first frame: streams often start at a non-zero pts.
                first_pts_time = frame.time if first_pts_time is None else first_pts_time
                timestamp = float(frame.time - first_pts_time)
            else:
                timestamp = index / fallback_fps
            yield index, timestamp, _bind(_video_frame_to_rgb, frame)
            index += 1
        if index == 0:
            raise ImageLoadError(f"cannot read video '{p}': no frames could be decoded; check the file")
    finally:
        container.close()


def _video_frame_to_rgb(frame: Any) -> np.ndarray:
    """A PyAV VideoFrame to an upright ``HxWx3 uint8`` RGB array."""
    rgb = frame.to_ndarray(format="rgb24")
    rotation = int(getattr(frame, "rotation", 0) or 0)  # counter-clockwise degrees (display matrix)
    k = round(rotation / 90) % 4
    if k:
        rgb = np.rot90(rgb, k=k)
    return np.ascontiguousarray(rgb, dtype=np.uint8)
