"""Frames of animated images (Pillow) and videos (PyAV), sampled by ``every_n`` or ``fps``."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lseg.errors import ImageLoadError, one_line
from lseg.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    _check_pixels,
    _decode,
    _n_frames,
    _named_warnings,
    _open_checked,
    _open_regular,
    _pil_to_rgb,
    _seek_frame,
)

__all__ = ["iter_frames"]

#: Browsers show GIF/WebP frames with a missing or zero duration for 100 ms; so do our timestamps.
_DEFAULT_FRAME_DURATION_MS = 100


def iter_frames(path: str | os.PathLike[str], *, every_n: int | None = None, fps: float | None = None,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(frame_index, timestamp_seconds, HxWx3 uint8 RGB)`` of an animated image (an extension in
    :data:`IMAGE_EXTENSIONS`, via Pillow; a still image is one frame) or a video (PyAV; turned upright),
    keeping frames ``0, n, 2n, ...`` (``every_n``) or the first of each ``1/fps`` seconds of media time
    (``fps``), or all. The index counts skipped frames; GIF/WebP times add up the durations (a missing
    one 100 ms). :class:`ImageLoadError` for an unreadable file, also mid-iteration."""
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
    frames = (_iter_image_frames if p.suffix.lower() in IMAGE_EXTENSIONS else _iter_video_frames)(p, max_pixels)
    last_bucket: int | None = None
    for index, timestamp, slack, get_frame in frames:
        if every_n is not None and index % every_n:
            continue
        if fps is not None:
            # Bucket k covers [k/fps, (k+1)/fps); ``slack`` (half a time-base tick: WebM's 0.033 s is 1/30 s)
            # and the epsilon (float error as in 0.30000000000000004) keep a frame on its boundary in its bucket.
            bucket = math.floor((timestamp + slack) * fps + 1e-6)
            if last_bucket is not None and bucket <= last_bucket:
                continue
            last_bucket = bucket
        yield index, timestamp, get_frame()


def _iter_image_frames(p: Path, max_pixels: int | None) -> Iterator[tuple[int, float, float, Callable[[], np.ndarray]]]:
    """Frames of an (animated) image file via Pillow (exact times, no slack), decoded by the callback."""
    name = str(p)
    with _open_regular(p, "cannot read frames from") as f:
        im = _open_checked(f, name, max_pixels)
        try:
            t_ms = 0.0
            with _named_warnings(name):
                count = _n_frames(im, name)
            for index in range(count):
                with _named_warnings(name):  # never around a yield: the caller's warnings are its own
                    _seek_frame(im, index, name)
                    _decode(im, name)  # Pillow's WebP reader sets info["duration"] only when a frame is decoded
                duration = im.info.get("duration") or _DEFAULT_FRAME_DURATION_MS
                yield index, t_ms / 1000.0, 0.0, functools.partial(_frame_rgb, im, name, max_pixels)
                t_ms += float(duration)
        finally:
            im.close()


def _frame_rgb(im: Any, name: str, max_pixels: int | None) -> np.ndarray:
    """The current frame of ``im`` as RGB, Pillow's warnings naming the file."""
    with _named_warnings(name):
        return _pil_to_rgb(im, name, max_pixels=max_pixels)


def _iter_video_frames(p: Path, max_pixels: int | None) -> Iterator[tuple[int, float, float, Callable[[], np.ndarray]]]:
    """Frames of a video file via PyAV with half a time-base tick of slack, converted by the callback."""
    try:
        import av
    except ImportError:
        raise ImageLoadError(f"cannot read video '{p}': PyAV is not installed; install it with "
                             "`pip install av` (or `pip install lseg[video]`)") from None
    try:
        container = av.open(str(p))
    except Exception as e:  # noqa: BLE001 - FFmpeg reports many error types
        raise ImageLoadError(f"cannot read video '{p}': not a readable video or animated image "
                             f"({one_line(e)}); check the file") from None
    try:
        stream = container.streams.best("video")  # as a player picks it: not a cover picture stored first
        if stream is None:
            raise ImageLoadError(f"cannot read video '{p}': it has no video stream")
        stream.thread_type = "AUTO"  # frame-level threading: decode order is unchanged
        rate = stream.average_rate or stream.guessed_rate
        fallback_fps = float(rate) if rate else 25.0
        slack = float(stream.time_base) / 2 if stream.time_base else 0.0
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
                                     f"({one_line(e)}); the file may be truncated") from None
            _check_pixels((frame.width, frame.height), f"{p} frame {index}", max_pixels)
            if frame.time is not None:
                # Timestamps relative to the first frame: streams often start at a non-zero pts.
                first_pts_time = frame.time if first_pts_time is None else first_pts_time
                timestamp = float(frame.time - first_pts_time)
            else:
                timestamp = index / fallback_fps
            yield index, timestamp, slack if frame.time is not None else 0.0, functools.partial(_video_frame_to_rgb, frame)
            index += 1
        if index == 0:
            raise ImageLoadError(f"cannot read video '{p}': no frames could be decoded; check the file")
    finally:
        container.close()


def _video_frame_to_rgb(frame: Any) -> np.ndarray:
    """A PyAV VideoFrame to an upright ``HxWx3 uint8`` RGB array."""
    rotation = int(getattr(frame, "rotation", 0) or 0)  # counter-clockwise degrees (display matrix)
    rgb = np.rot90(frame.to_ndarray(format="rgb24"), k=round(rotation / 90) % 4)
    return np.ascontiguousarray(rgb, dtype=np.uint8)
