"""Robust image / video input and atomic output ("the front door").

Everything a user hands to lseg goes through :func:`load_image` (or :func:`iter_frames` for
animations and videos), which turns it into one canonical format: an ``HxWx3 uint8 RGB``
C-contiguous numpy array that owns its memory. Anything that cannot be turned into that raises
:class:`~lseg.errors.ImageLoadError` with a one-line message naming the input, what is wrong and
what to do about it.

Conventions (decided once, here):

* **Alpha** (RGBA, LA, palette with transparency, ...) is composited onto **white**
  (:data:`ALPHA_BACKGROUND`), the way image viewers and browsers show transparent images, then
  dropped.
* **High bit depth**: 16-bit data is reduced to 8 bits by ``>> 8``; 32-bit integer ('I') images by
  the bit range they actually use (see :func:`_int_to_uint8`); float data in ``[0, 1]`` is
  multiplied by 255.
* **Size limit**: images with more than ``max_pixels`` pixels are refused *before* decoding
  (:data:`DEFAULT_MAX_PIXELS` = 16384 * 16384 ~ 268 M pixels, i.e. ~805 MB as ``HxWx3 uint8``;
  memory is 3 bytes/pixel for the result, more transiently while decoding). Pillow's own global
  ``Image.MAX_IMAGE_PIXELS`` guard is not consulted for the main size check so that
  ``max_pixels`` is the single, per-call knob; no global Pillow state is ever modified.
* **Truncated files are errors**: pixels are fully decoded inside a ``try`` and Pillow's
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left untouched (default ``False``).

All writers in lseg go through :func:`atomic_write` so that a killed job never leaves a
half-written output file behind; the hidden temp files of a killed job are removed by
:func:`remove_stale_temp_files`, which the batch commands run when they start.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import math
import os
import re
import secrets
import socket
import stat
import struct
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
from PIL import ExifTags, Image, ImageOps

from lseg.errors import ImageLoadError, OutputWriteError

__all__ = [
    "ALPHA_BACKGROUND",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ImageSource",
    "atomic_open",
    "atomic_write",
    "check_writable",
    "hidden_sibling",
    "iter_frames",
    "list_images",
    "load_image",
    "remove_stale_temp_files",
    "save_png",
    "walk_files",
    "write_error",
]

#: Default pixel limit of :func:`load_image`: 16384 * 16384 = 268,435,456 pixels (~805 MB as
#: ``HxWx3 uint8``). Large photos (e.g. 12000x8000 = 96 M pixels) load; absurd or malicious
#: headers ("decompression bombs") are refused before any pixel memory is allocated.
DEFAULT_MAX_PIXELS: int = 16384 * 16384

#: Colour that transparent pixels are composited onto (white, as viewers and browsers show them).
ALPHA_BACKGROUND: tuple[int, int, int] = (255, 255, 255)

#: Lower-case file extensions recognised as still/animated images by :func:`list_images`.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".avif"}
)

#: Lower-case file extensions that :func:`iter_frames` decodes with PyAV (everything not in
#: :data:`IMAGE_EXTENSIONS` is also tried with PyAV; this set is only used for error hints).
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
)

#: GIF/WebP frames with a missing or zero duration are shown for 100 ms by browsers; we use the
#: same convention for frame timestamps.
_DEFAULT_FRAME_DURATION_MS = 100

# Exceptions Pillow's format plugins raise while *identifying* a file that is not theirs
# (the same set PIL.Image.open swallows before trying the next plugin).
_IDENTIFY_ERRORS = (SyntaxError, IndexError, TypeError, struct.error)

# Modes Pillow can convert to RGBA directly (used to honour transparency).
_ALPHA_CAPABLE_MODES = frozenset({"1", "L", "P", "RGB", "LA", "PA", "La", "RGBA", "RGBa"})

ImageSource = Any
"""Anything :func:`load_image` accepts: ``str | os.PathLike`` (path), ``bytes | bytearray |
memoryview`` (encoded file content), a binary file object, ``PIL.Image.Image``, ``np.ndarray``
or ``torch.Tensor``."""

_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------
# load_image
# --------------------------------------------------------------------------------------------


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    frame: int = 0,
) -> np.ndarray:
    """Load any supported image input as an ``HxWx3 uint8 RGB`` array.

    Args:
        source: One of

            * ``str`` / ``os.PathLike``: path to an image file (``~`` is expanded). Any format
              Pillow can decode (JPEG, PNG, BMP, GIF, WebP, TIFF, ...). EXIF orientation is
              applied, so the array is upright as a viewer would show it.
            * ``bytes`` / ``bytearray`` / ``memoryview``: the *encoded* content of an image file.
            * a binary file object (``read()`` returning bytes); read from its current position,
              never closed.
            * ``PIL.Image.Image`` in any mode (not modified; its frame position is restored).
            * ``np.ndarray``: ``HxW`` (gray), ``HxWx1``, ``HxWx3`` (RGB) or ``HxWx4`` (RGBA) of
              dtype ``uint8``, ``uint16`` (scaled by ``>> 8``), ``bool`` (0/255) or float
              (values must be finite and in ``[0, 1]``; scaled by 255 and rounded).
            * ``torch.Tensor``: ``CxHxW`` with C in {1, 3, 4}, or ``HxW``; dtype ``uint8``,
              ``bool`` or float in ``[0, 1]``; may live on any device.

        max_pixels: Refuse images with more than this many pixels (``H * W``) with an
            :class:`~lseg.errors.ImageLoadError`, checked from the file header before decoding.
            ``None`` disables the check (only for trusted inputs). The result needs
            3 bytes/pixel.
        frame: Frame index for multi-frame files (animated GIF/WebP/PNG, multi-page TIFF).
            Must be 0 for single-frame inputs.

    Returns:
        A new (never aliasing the input) C-contiguous ``HxWx3 uint8`` RGB array, ``H, W >= 1``.
        Alpha is composited onto white (:data:`ALPHA_BACKGROUND`).

    Raises:
        ImageLoadError: Missing/empty/unreadable file, not an image, truncated or corrupt data,
            too many pixels, frame out of range, unsupported array shape or dtype.
        TypeError: ``source`` is of an unsupported Python type.
        TypeError: ``frame`` is not an int.
        ValueError: ``max_pixels`` is not a positive int or None.
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or int(max_pixels) != max_pixels
                                   or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise TypeError(f"frame must be an int, got {type(frame).__name__}")
    frame = int(frame)

    if isinstance(source, (str, os.PathLike)):
        return _load_path(source, max_pixels=max_pixels, frame=frame)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _load_encoded(io.BytesIO(data), f"<{len(data)} bytes>", len(data),
                             max_pixels=max_pixels, frame=frame)
    if isinstance(source, Image.Image):
        return _load_pil_object(source, max_pixels=max_pixels, frame=frame)
    if isinstance(source, np.ndarray):
        _check_no_frame(frame, "numpy array")
        return _array_to_rgb(source, "numpy array", max_pixels=max_pixels)
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported already
    if torch is not None and isinstance(source, torch.Tensor):
        _check_no_frame(frame, "torch tensor")
        return _tensor_to_rgb(source, max_pixels=max_pixels)
    if hasattr(source, "read"):
        return _load_file_object(source, max_pixels=max_pixels, frame=frame)
    raise TypeError(
        f"load_image: unsupported source type {type(source).__name__}; pass a path, bytes, a binary "
        "file object, a PIL image, a numpy array or a torch tensor"
    )


def _load_path(path: str | os.PathLike[str], *, max_pixels: int | None, frame: int) -> np.ndarray:
    """Open a file path with helpful errors for the usual filesystem problems."""
    text = os.fspath(path)
    if isinstance(text, bytes):  # os.PathLike[bytes]
        text = os.fsdecode(text)
    if text.startswith(("http://", "https://", "ftp://")):
        raise ImageLoadError(f"cannot load image '{text}': URLs are not supported; download the file "
                             "first and pass its local path")
    p = Path(text).expanduser()
    with _open_regular(p, "cannot load image") as f:
        size = os.fstat(f.fileno()).st_size
        return _load_encoded(f, str(p), size, max_pixels=max_pixels, frame=frame)


#: What a path that is not a regular file is, for messages (stat.S_IFMT -> words).
_SPECIAL_FILES = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
                  stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _open_regular(p: Path, doing: str) -> IO[bytes]:
    """Open ``p`` for reading if it is a regular file (a symlink to one is fine), else one clear
    :class:`ImageLoadError` - without blocking: a FIFO named ``x.jpg`` would block ``open()`` until a
    writer appears, a device could stream forever.

    ``O_NONBLOCK`` makes the open itself return at once whatever ``p`` turns out to be (it could be
    swapped for a FIFO after any check), and ``fstat`` on the opened file decides; for a regular
    file the flag changes nothing.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise ImageLoadError(f"image file not found: '{p}'; check the path and spelling") from None
    except PermissionError:
        raise ImageLoadError(f"{doing} '{p}': permission denied; check the file's read "
                             "permissions") from None
    except (OSError, ValueError) as e:  # ValueError: embedded NUL byte; ENXIO: a socket
        kind = _special_kind(p)
        if kind is not None:
            raise ImageLoadError(f"{doing} '{p}': it is {kind}, not a regular file; pass an image "
                                 "file") from None
        raise ImageLoadError(f"{doing} '{p}': cannot open the file ({_one_line(e)}); "
                             "check the path") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return os.fdopen(fd, "rb")
    os.close(fd)
    if stat.S_ISDIR(mode):
        raise ImageLoadError(f"{doing} '{p}': it is a directory, not an image file; "
                             "use list_images() to find the images inside it")
    kind = _SPECIAL_FILES.get(stat.S_IFMT(mode), "not a regular file")
    raise ImageLoadError(f"{doing} '{p}': it is {kind}, not a regular file; pass an image file")


def _special_kind(p: Path) -> str | None:
    """``a FIFO (named pipe)`` etc. if ``p`` is such a file (``stat`` never blocks), else None."""
    try:
        return _SPECIAL_FILES.get(stat.S_IFMT(os.stat(p).st_mode))
    except (OSError, ValueError):
        return None


def _load_file_object(f: IO[Any], *, max_pixels: int | None, frame: int) -> np.ndarray:
    """Read a (binary) file object from its current position into memory and decode it."""
    name = getattr(f, "name", None)
    name = f"file object '{name}'" if isinstance(name, (str, os.PathLike)) else "file object"
    try:
        data = f.read()
    except OSError as e:
        raise ImageLoadError(f"cannot load image from {name}: read failed ({_one_line(e)})") from None
    if isinstance(data, str):
        raise ImageLoadError(f"cannot load image from {name}: it is opened in text mode; open it "
                             "with mode 'rb'")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageLoadError(f"cannot load image from {name}: read() returned "
                             f"{type(data).__name__}, expected bytes")
    data = bytes(data)
    return _load_encoded(io.BytesIO(data), name, len(data), max_pixels=max_pixels, frame=frame)


def _load_encoded(
    fp: IO[bytes], name: str, nbytes: int, *, max_pixels: int | None, frame: int
) -> np.ndarray:
    """Identify, size-check, fully decode and convert one frame of an encoded image."""
    if nbytes == 0:
        raise ImageLoadError(f"cannot load image '{name}': the file is empty (0 bytes); it was probably "
                             "not fully downloaded or written - re-create it")
    im = _identify(fp, name)
    try:
        _check_pixels(im.size, name, max_pixels)
        if im.format in ("JPEG", "MPO"):
            _check_jpeg_stream(fp, name)
        _seek_frame(im, frame, name)
        return _pil_to_rgb(im, name, max_pixels=max_pixels)
    finally:
        im.close()


#: libjpeg's warnings about the compressed data (jerror.h, JWRN_*): the decoder recovers by filling
#: the rest of the image with gray, and Pillow discards these warnings, so a JPEG with a corrupt
#: middle would decode "successfully" into a half-gray picture. Other warnings (an unknown JFIF
#: revision, a bad ICC profile) leave the pixels intact and are ignored.
_JPEG_CORRUPTION = ("Corrupt JPEG data:", "Premature end of JPEG file", "Inconsistent progression")
_JPEG_METADATA_ONLY = ("Corrupt JPEG data: bad ICC marker",)


def _check_jpeg_stream(fp: IO[bytes], name: str) -> None:
    """Refuse a JPEG whose compressed data libjpeg reports as corrupt.

    The whole stream is entropy-decoded by libjpeg-turbo (simplejpeg, strict: its warnings become
    errors) at 1/8 scale: every Huffman code is read, the inverse DCT works on 1/64 of the pixels
    (about half of Pillow's decoding time). Files that TurboJPEG's API does not take (unusual
    sampling factors, 12-bit) are left to Pillow: nothing to check them with. A flipped bit that
    still decodes cannot be detected (JPEG has no checksum).
    """
    import simplejpeg

    position = fp.tell()
    fp.seek(0)
    data = fp.read()
    fp.seek(position)
    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
        simplejpeg.decode_jpeg(data, colorspace="CMYK" if colorspace in ("CMYK", "YCCK") else "GRAY",
                               fastdct=True, min_height=1, min_width=1, strict=True)
    except ValueError as e:
        message = " ".join(str(e).split())
        if message.startswith(_JPEG_CORRUPTION) and not message.startswith(_JPEG_METADATA_ONLY):
            raise ImageLoadError(f"cannot load image '{name}': the file is truncated or corrupt "
                                 f"({message}); re-download or re-export it") from None


def _identify(fp: IO[bytes], name: str) -> Image.Image:
    """Identify the format of ``fp`` without decoding pixels.

    This mirrors what ``PIL.Image.open`` does, minus its global ``MAX_IMAGE_PIXELS`` check and
    warning (we apply ``max_pixels`` ourselves, per call, without touching global state).
    """
    fp.seek(0)
    prefix = fp.read(16)
    Image.preinit()  # common formats first, like Image.open
    Image.init()
    claimed: list[tuple[str, BaseException]] = []  # formats whose signature matched but failed
    for fmt in list(Image.ID):
        factory, accept = Image.OPEN[fmt]
        try:
            if accept is not None:
                verdict = accept(prefix)
                if not verdict or isinstance(verdict, str):  # a str is a "maybe, but..." warning
                    continue
            fp.seek(0)
            return factory(fp, name)  # type: ignore[no-any-return]
        except _IDENTIFY_ERRORS as e:
            if accept is not None:
                claimed.append((fmt, e))
            continue
        except Image.DecompressionBombError:
            raise ImageLoadError(
                f"cannot load image '{name}': its header declares an absurd size (decompression bomb "
                "guard); if the file is trusted, re-save it in a simpler format") from None
        except Exception as e:  # a plugin recognised the file but its header is broken
            raise ImageLoadError(f"cannot load image '{name}': truncated or corrupt {fmt} header "
                                 f"({_one_line(e)}); re-export or re-download the file") from e
    if claimed:
        fmt, err = claimed[0]
        raise ImageLoadError(f"cannot load image '{name}': it looks like {fmt} but its header is corrupt "
                             f"({_one_line(err)}); re-export or re-download the file")
    raise ImageLoadError(f"cannot load image '{name}': {_describe_unknown(prefix, name)}")


def _describe_unknown(prefix: bytes, name: str) -> str:
    """Explain an unidentified file as helpfully as one line allows."""
    suffix = Path(name).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "this is a video, not an image; use lseg.io.iter_frames() for videos"
    head = prefix.lstrip()
    if head[:1] == b"<":
        return ("not an image but HTML/XML text (a failed download or an SVG?); download the real "
                "image or convert it to PNG")
    text = prefix.decode("utf-8", errors="ignore")  # a cut multi-byte char at the end is fine
    if len(text) >= len(prefix) // 2 and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "not an image but a text file; check that the path points to the actual image"
    return (f"not a recognised image format (first bytes {prefix[:8].hex()}); check the file is a "
            "JPEG/PNG/BMP/GIF/WebP/TIFF image and re-export it if needed")


def _load_pil_object(im: Image.Image, *, max_pixels: int | None, frame: int) -> np.ndarray:
    """Convert a caller-owned PIL image (restoring its frame position afterwards)."""
    name = f"PIL image ({im.format or 'in memory'}, mode {im.mode}, {im.width}x{im.height})"
    _check_pixels(im.size, name, max_pixels)
    n_frames = _n_frames(im)
    if n_frames == 1 or (frame == 0 and im.tell() == 0):
        _seek_frame(im, frame, name)
        return _pil_to_rgb(im, name, max_pixels=max_pixels)
    position = im.tell()
    try:
        _seek_frame(im, frame, name)
        return _pil_to_rgb(im, name, max_pixels=max_pixels)
    finally:
        with contextlib.suppress(Exception):  # restoring the caller's position is best effort
            im.seek(position)


def _n_frames(im: Image.Image) -> int:
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - some plugins compute n_frames lazily and may fail
        return 1


def _seek_frame(im: Image.Image, frame: int, name: str) -> None:
    """Seek ``im`` to ``frame`` or raise a clear out-of-range error."""
    n = _n_frames(im)
    if not 0 <= frame < n:
        valid = "only frame 0" if n == 1 else f"frames 0..{n - 1}"
        raise ImageLoadError(f"cannot load frame {frame} of image '{name}': it has {n} frame(s); "
                             f"use {valid}")
    if frame == 0 and im.tell() == 0:
        return
    try:
        im.seek(frame)
    except Exception as e:  # noqa: BLE001 - corrupt animations fail in many ways
        raise ImageLoadError(f"cannot load frame {frame} of image '{name}': the file is corrupt "
                             f"({_one_line(e)}); re-export it") from None


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    """Refuse empty images and images above ``max_pixels`` (size from the header)."""
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ImageLoadError(f"cannot load image '{name}': it has size {w}x{h} (no pixels); "
                             "re-export it")
    if max_pixels is not None and w * h > max_pixels:
        mb = 3 * w * h / 1e6
        raise ImageLoadError(
            f"image '{name}' is {w}x{h} = {w * h / 1e6:.1f} M pixels, above max_pixels={max_pixels} "
            f"(it would need ~{mb:.0f} MB as HxWx3 uint8); downscale it, or pass a larger max_pixels "
            "(None = no limit) if the file is trusted")


def _pil_to_rgb(im: Image.Image, name: str, *, max_pixels: int | None = None) -> np.ndarray:
    """Fully decode ``im`` (current frame) and convert it to ``HxWx3 uint8`` RGB.

    Any decoding failure (truncated data, corrupt streams, broken EXIF) becomes an
    :class:`ImageLoadError`; nothing is silently accepted.
    """
    try:
        im.load()  # force the full decode here, inside the try (Image.open is lazy)
    except Image.DecompressionBombError:
        raise ImageLoadError(f"cannot load image '{name}': a frame declares an absurd size "
                             "(decompression bomb guard); re-save the file") from None
    except MemoryError:
        raise ImageLoadError(f"cannot load image '{name}': out of memory while decoding "
                             f"{im.width}x{im.height} pixels; pass a smaller max_pixels or "
                             "downscale the image") from None
    except Exception as e:
        raise ImageLoadError(f"cannot load image '{name}': the file is truncated or corrupt "
                             f"({_one_line(e)}); re-download or re-export it") from e
    try:
        im = _exif_upright(im)
        _check_pixels(im.size, name, max_pixels)  # decoders may change the size (e.g. ICO, MPO)
        return _convert_mode(im, name)
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(f"cannot load image '{name}': out of memory while converting "
                             f"{im.width}x{im.height} pixels; downscale the image") from None
    except Exception as e:
        raise ImageLoadError(f"cannot load image '{name}': cannot convert mode {im.mode} to RGB "
                             f"({_one_line(e)}); re-export it as 8-bit RGB") from e


def _exif_upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF Orientation tag. A corrupt EXIF block only loses the rotation.

    Without a rotation the image itself is returned (``exif_transpose`` would copy it: 4 bytes per
    pixel more at the peak for nothing).
    """
    try:
        if im.getexif().get(ExifTags.Base.Orientation, 1) not in (2, 3, 4, 5, 6, 7, 8):
            return im
        upright = ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001 - the pixels are fine; only metadata is broken
        warnings.warn(f"ignoring unreadable EXIF orientation ({_one_line(e)})", stacklevel=4)
        return im
    return upright if upright is not None else im


#: Large images are converted to RGB in row strips of this many pixels: the peak is then the
#: decoded image plus the result (12000x8000 RGB PNG: 384 + 288 MB), not several full-size copies.
_STRIP_PIXELS = 1 << 21


def _convert_mode(im: Image.Image, name: str) -> np.ndarray:
    """Convert a decoded PIL image of any mode to a fresh ``HxWx3 uint8`` RGB array (in row strips
    for large images, except 'I'/'F' modes, whose scaling depends on the whole image)."""
    w, h = im.size
    if w * h <= _STRIP_PIXELS or im.mode.startswith(("I", "F")):
        return _convert_whole(im, name)
    out = np.empty((h, w, 3), dtype=np.uint8)
    rows = max(1, _STRIP_PIXELS // w)
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        out[y0:y1] = _convert_whole(im.crop((0, y0, w, y1)), name)
    return out


def _convert_whole(im: Image.Image, name: str) -> np.ndarray:
    mode = im.mode
    if mode in _ALPHA_CAPABLE_MODES and (mode in {"LA", "PA", "La", "RGBA", "RGBa"}
                                          or im.has_transparency_data):
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
    """Composite an RGBA image onto :data:`ALPHA_BACKGROUND` and drop alpha."""
    background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
    return np.array(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8, order="C")


def _int_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale integer gray values to 8 bits by the bit range they occupy.

    ``uint16`` containers (Pillow 'I;16*' modes, 16-bit PNGs) are shifted by 8. For 32-bit 'I'
    images (which Pillow also uses for 16-bit data) the shift is chosen from the maximum value:
    ``<= 255`` is kept, ``<= 65535`` is treated as 16-bit, larger values shift by
    ``bit_length - 8``. Negative values are clipped to 0.
    """
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return (values.astype(np.uint16) >> 8).astype(np.uint8)
    v = np.clip(values.astype(np.int64), 0, None)
    vmax = int(v.max()) if v.size else 0
    if vmax <= 255:
        return v.astype(np.uint8)
    shift = 8 if vmax <= 0xFFFF else vmax.bit_length() - 8
    return (v >> shift).astype(np.uint8)


def _float_image_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float *image file* data ('F' mode) to 8 bits.

    A float file has no defined white level: ``[0, 1]`` data is scaled by 255, ``[0, 255]`` data
    is rounded, anything else is min-max normalised.
    """
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
    """Validate and convert an ``HxW``/``HxWx{1,3,4}`` array (see :func:`load_image`)."""
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
    if u8.ndim == 2:
        return _gray_to_rgb(u8)
    channels = u8.shape[2]
    if channels == 1:
        return _gray_to_rgb(u8[:, :, 0])
    if channels == 3:
        return np.array(u8, dtype=np.uint8, order="C", copy=True)
    return _composite_on_background(Image.fromarray(np.ascontiguousarray(u8)))


def _tensor_to_rgb(tensor: Any, *, max_pixels: int | None) -> np.ndarray:
    """Convert a ``CxHxW``/``HxW`` torch tensor (see :func:`load_image`)."""
    import torch  # already imported by the caller's process; local import for typing only

    shape = "x".join(str(s) for s in tensor.shape) or "scalar"
    t = tensor.detach()
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


def _check_no_frame(frame: int, what: str) -> None:
    if frame != 0:
        raise ImageLoadError(f"cannot load frame {frame} of a {what}: it has 1 frame; use frame=0")


def _one_line(e: BaseException) -> str:
    """An exception as a short single line (for embedding in our messages)."""
    kind = type(e).__name__
    text = " ".join(str(e).split())
    if not text:
        return kind
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{kind}: {text}"


# --------------------------------------------------------------------------------------------
# iter_frames
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# list_images
# --------------------------------------------------------------------------------------------


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """List image files in a folder.

    Args:
        folder: Directory to search.
        recursive: Also search sub-directories, as :func:`walk_files` does (symlinked folders
            are followed, each real folder once).

    Returns:
        Paths (``folder`` joined with the relative path) of files whose extension, compared
        case-insensitively, is in :data:`IMAGE_EXTENSIONS`, sorted lexicographically by path
        components. Hidden files and files inside hidden directories (name starting with
        ``.``, e.g. ``.git``, ``.ipynb_checkpoints``) are ignored. A FIFO, device or socket with an
        image name is listed: :func:`load_image` refuses it (without blocking), so it is reported,
        not silently left out.

    Raises:
        ImageLoadError: ``folder`` does not exist or is not a directory, or a folder inside it
            cannot be read (permission denied).
    """
    return [f for f in walk_files(folder, recursive) if f.suffix.lower() in IMAGE_EXTENSIONS]


def walk_files(
    folder: str | os.PathLike[str], recursive: bool = True, exclude: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Every non-hidden entry under ``folder`` that is not a folder, sorted by path components.

    Symlinked sub-folders are followed, except a link to a folder inside ``folder`` (its files are
    listed under their real path); each folder is visited once (by device and inode), so a link
    back to a parent cannot loop and a folder linked twice is listed under the first path in sorted
    order. Hidden files and folders (``.name``) and broken symlinks are left out. A folder that
    cannot be read raises instead of being skipped: a job must not report success while missing
    part of its input. The folder ``exclude`` (a job's output folder, wherever it is linked from)
    is left out.

    Raises:
        ImageLoadError: ``folder`` is missing or not a directory, or a folder under it is unreadable.
    """
    root = Path(os.fspath(folder)).expanduser()
    if not root.exists():
        raise ImageLoadError(f"image folder not found: '{root}'; check the path")
    if not root.is_dir():
        raise ImageLoadError(f"'{root}' is not a folder; pass a directory (or load the file directly)")

    def unreadable(e: OSError) -> None:
        raise ImageLoadError(f"cannot read folder '{e.filename}': {e.strerror or _one_line(e)}; fix its "
                             "permissions or move it out of the input folder")

    real_root = os.path.realpath(root)
    seen = {_dir_key(root)}
    skip = os.path.realpath(os.path.expanduser(exclude)) if exclude is not None else None
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        base = Path(dirpath)
        keep = []
        for d in sorted(dirnames) if recursive else []:
            key = _dir_key(base / d)
            inside = (base / d).is_symlink() and _is_within(os.path.realpath(base / d), real_root)
            excluded = skip is not None and os.path.realpath(base / d) == skip
            if not d.startswith(".") and key is not None and key not in seen and not inside and not excluded:
                seen.add(key)
                keep.append(d)
        dirnames[:] = keep
        found += [base / fn for fn in filenames if not fn.startswith(".") and os.path.exists(base / fn)]
    return sorted(found, key=lambda q: q.relative_to(root).parts)


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _dir_key(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the folder ``path`` resolves to; None if it vanished."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------


# Temp files of atomic_write: ``.<name>.<host>-<pid>-<random>.tmp<suffix>``; the host (hash of the
# host name) and pid let remove_stale_temp_files() recognise leftovers of killed processes.
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.[^.]*)?")


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


#: Longest file name (bytes) that the usual file systems take (ext4, XFS, btrfs, tmpfs, APFS, NTFS).
NAME_MAX = 255


def hidden_sibling(target: Path, tail: str) -> Path:
    """``.<target name><tail>`` next to ``target``, the name part shortened (with a hash of it, so
    names stay distinct) when the whole would exceed :data:`NAME_MAX` bytes: an output whose own name
    fits must not fail because of the longer name of its temp or claim file."""
    name = target.name
    room = NAME_MAX - 1 - len(os.fsencode(tail))
    if len(os.fsencode(name)) > room:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
        keep = os.fsencode(name)[: max(0, room - 9)].decode("utf-8", "ignore")  # whole characters only
        name = f"{keep}~{digest}"
    return target.with_name(f".{name}{tail}")


def _temp_path_for(target: Path) -> tuple[Path, int]:
    """Create (exclusively) a hidden temp file next to ``target``; return its path and fd.

    Created with mode 0o666 so the process umask applies, as for a normal ``open()`` (mkstemp
    would give 0o600). The suffix is kept so extension-sniffing writers (PIL) pick the format.
    """
    owner = f"{_host_tag()}-{os.getpid()}"
    for _ in range(100):
        tmp = hidden_sibling(target, f".{owner}-{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to '{target}'")


#: What to do about a failed write, by errno (the message starts with the system's own words).
_WRITE_REMEDIES = {
    errno.ENOSPC: "free some space and re-run (finished outputs are kept)",
    errno.EDQUOT: "the disk quota is exhausted: free some space and re-run (finished outputs are kept)",
    errno.EROFS: "the file system is read-only: write to another output folder",
    errno.EACCES: "no permission to write there: fix the folder's permissions or write to another folder",
    errno.EPERM: "no permission to write there: fix the folder's permissions or write to another folder",
    errno.ENAMETOOLONG: "the name is too long for the file system: rename the input or use a shorter "
                        "output folder",
    errno.EFBIG: "the file is too large for this file system (or the process's file size limit)",
}


def write_error(target: Path, e: OSError) -> OutputWriteError:
    """``cannot write <target>: <strerror>; <remedy>`` as an :class:`OutputWriteError` (same errno)."""
    reason = e.strerror or (os.strerror(e.errno) if e.errno else _one_line(e))
    remedy = _WRITE_REMEDIES.get(e.errno or 0, "check the output folder")
    error = OutputWriteError(f"cannot write {target}: {reason}; {remedy}")
    error.errno, error.strerror, error.filename = e.errno, reason, str(target)
    return error


def check_writable(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (with parents) and a temp file in it, or raise :class:`OutputWriteError`:
    a batch learns that it cannot write there before it loads a model or reads an image."""
    root = Path(os.fspath(folder)).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp, fd = _temp_path_for(root / "write-test")
        os.close(fd)
        tmp.unlink()
    except OSError as e:
        if isinstance(e, OutputWriteError):
            raise
        raise write_error(root, e) from None
    return root


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists (another user's), or cannot tell: keep its files
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files that :func:`atomic_write` / :func:`atomic_open` left behind in ``folder``
    (recursively) when their process was killed (SIGKILL, power loss) before it could clean up.

    Only files named like this module's temp files *and* created on this host by a process that
    no longer exists are removed, so jobs still writing into the same folder (other torchrun
    ranks, a second shard) are safe. Batch commands call this when they start.

    Returns:
        The removed paths.
    """
    root = Path(os.fspath(folder)).expanduser()
    if not root.is_dir():
        return []
    host = _host_tag()
    removed: list[Path] = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for fn in filenames:
            m = _TEMP_RE.fullmatch(fn) if fn.startswith(".") else None
            if m is None or m.group("host") != host or _pid_alive(int(m.group("pid"))):
                continue
            path = Path(dirpath) / fn
            with contextlib.suppress(OSError):  # gone already, or a read-only folder: leave it
                path.unlink()
                removed.append(path)
    return removed


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
    """Write a file atomically via a temporary file in the same directory.

    ``writer`` is called with the path of a fresh, empty temporary file next to ``path`` (same
    extension, hidden name) and must write the complete content there. On success the temp file
    atomically replaces ``path`` (``os.replace``); if ``writer`` raises (or the process is
    interrupted by an exception), the temp file is removed and ``path`` is left untouched - a
    reader never sees a half-written file. Parent directories are created.

    Args:
        path: Final destination.
        writer: ``writer(tmp_path)``, e.g. ``lambda p: image.save(p, format="PNG")``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputWriteError: the file system refused (disk full, read-only, permission, name too
            long, ...): one line naming ``path``; the temp file is removed.
    """
    target = Path(os.fspath(path)).expanduser()
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _temp_path_for(target)
        os.close(fd)
        try:
            writer(tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
    return target


@contextlib.contextmanager
def _write_errors(target: Path) -> Iterator[None]:
    """File-system errors while writing ``target`` -> :class:`OutputWriteError` naming it.

    Only errors with an errno are the file system's; others (PIL's "cannot write mode X as PNG")
    are bugs and keep their type.
    """
    try:
        yield
    except OutputWriteError:
        raise
    except OSError as e:
        if e.errno is None:
            raise
        raise write_error(target, e) from None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Context manager form of :func:`atomic_write` yielding an open file object.

    ``with atomic_open("out.json", "w", encoding="utf-8") as f: json.dump(obj, f)`` - the
    destination appears only when the ``with`` block completes without an exception.

    File-system errors become :class:`OutputWriteError`, as in :func:`atomic_write`.

    Args:
        path: Final destination (parent directories are created).
        mode: A write mode (``"w"``, ``"wb"``, ``"wt"``, ...); no reading or appending.
        **kwargs: Passed to :func:`open` (``encoding``, ``newline``, ...).
    """
    if not mode.startswith("w") or "+" in mode:
        raise ValueError(f"atomic_open: mode must be a write-only mode like 'w' or 'wb', got {mode!r}")
    target = Path(os.fspath(path)).expanduser()
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _temp_path_for(target)
        try:
            with open(fd, mode, **kwargs) as f:
                yield f
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise


def save_png(
    path: str | os.PathLike[str],
    array: np.ndarray | Image.Image,
    palette: np.ndarray | Sequence[Sequence[int]] | None = None,
) -> Path:
    """Save an image or label map as PNG, atomically (see :func:`atomic_write`).

    Args:
        path: Destination file (conventionally ``.png``; the format is always PNG).
        array: One of ``HxW uint8`` (label map or gray), ``HxW uint16`` (label map with more than
            256 ids, written as 16-bit gray), ``HxWx3 uint8`` RGB, ``HxWx4 uint8`` RGBA, ``HxW``
            bool (0/255 gray) or a ``PIL.Image``.
        palette: Optional ``(n, 3) uint8`` colours, ``n <= 256``, for an ``HxW uint8`` label map:
            the PNG is written in palette mode so pixel values stay class ids while viewers show
            colours (see :func:`lseg.viz.palette`).

    Returns:
        The destination path.

    Raises:
        ValueError: Unsupported shape/dtype, or a palette with an unsupported array.
    """
    if isinstance(array, Image.Image):
        if palette is not None:
            raise ValueError("save_png: palette is only supported for HxW uint8 label-map arrays")
        img = array
    else:
        arr = np.asarray(array)
        shape = "x".join(str(s) for s in arr.shape)
        if arr.ndim == 2 and arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * np.uint8(255)
        if palette is not None:
            if arr.ndim != 2 or arr.dtype != np.uint8:
                raise ValueError(f"save_png: palette needs an HxW uint8 label map, got {shape} {arr.dtype}")
            pal = np.asarray(palette)
            if pal.ndim != 2 or pal.shape[1] != 3 or not 1 <= pal.shape[0] <= 256:
                raise ValueError(f"save_png: palette must have shape (n, 3) with 1 <= n <= 256, got "
                                 f"{pal.shape}")
            if pal.dtype.kind not in "ui" or pal.min() < 0 or pal.max() > 255:
                raise ValueError("save_png: palette values must be integers in [0, 255]")
            if arr.size and int(arr.max()) >= pal.shape[0]:
                raise ValueError(f"save_png: label map has value {int(arr.max())} but the palette has only "
                                 f"{pal.shape[0]} colours")
            img = Image.fromarray(np.ascontiguousarray(arr))  # mode L
            img.putpalette(pal.astype(np.uint8).tobytes())  # L -> P, pixel values unchanged
        elif arr.ndim == 2 and arr.dtype == np.uint8:
            img = Image.fromarray(np.ascontiguousarray(arr))
        elif arr.ndim == 2 and arr.dtype == np.uint16:
            img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint16))
        elif arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype == np.uint8:
            img = Image.fromarray(np.ascontiguousarray(arr))
        else:
            raise ValueError(f"save_png: unsupported array {shape} {arr.dtype}; expected HxW uint8/uint16, "
                             "HxWx3 uint8 or HxWx4 uint8")
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
