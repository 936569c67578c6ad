"""Decoding images: :func:`load_image` turns any supported input into one ``HxWx3 uint8 RGB`` array. Paths
are opened without ever blocking, ``max_pixels`` is checked from the header (no global Pillow state
changed), JPEG streams are checked for corruption; every failure is one :class:`ImageLoadError`."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
import struct
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import ExifTags, Image, ImageOps

from lseg.errors import ImageLoadError, one_line
from lseg.io.pixels import ALPHA_BACKGROUND, _array_to_rgb, _tensor_to_rgb, convert_mode

__all__ = [
    "ALPHA_BACKGROUND", "DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "ImageSource", "load_image",
]

#: Default pixel limit of :func:`load_image`: 16384 * 16384 = 268 M pixels (~805 MB as ``HxWx3 uint8``).
DEFAULT_MAX_PIXELS: int = 16384 * 16384

#: Lower-case file extensions recognised as still/animated images by :func:`list_images`.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".avif", ".heic", ".heif"}
)

#: Lower-case video file extensions (for messages: :func:`iter_frames` tries PyAV on any non-image).
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
)


# What Pillow's plugins raise identifying a file that is not theirs (PIL.Image.open tries the next one).
_IDENTIFY_ERRORS = (SyntaxError, IndexError, TypeError, struct.error)

ImageSource = Any
"""Anything :func:`load_image` accepts: ``str | os.PathLike`` (path), ``bytes | bytearray |
memoryview`` (encoded file content), a binary file object, ``PIL.Image.Image``, ``np.ndarray``
or ``torch.Tensor``."""


def load_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               frame: int | None = None) -> np.ndarray:
    """Any supported image input (docs/errors-and-limits.md: a path, encoded bytes, a binary file object
    read from its position, a PIL image, a numpy array or a torch tensor) as a new C-contiguous
    ``HxWx3 uint8 RGB`` array, alpha composited onto :data:`ALPHA_BACKGROUND`. ``max_pixels`` (``H * W``,
    checked from the header; ``None``: no limit) and ``frame`` (of a multi-frame file) as documented
    there (unset: a PIL image's current frame, else 0); :class:`ImageLoadError` for any unusable input,
    ``TypeError`` for a source of another type."""
    if max_pixels is not None and (isinstance(max_pixels, bool) or int(max_pixels) != max_pixels
                                   or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if frame is None:  # a PIL image seeked to frame i is that frame, as for np.asarray(image)
        frame = source.tell() if isinstance(source, Image.Image) else 0
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise TypeError(f"frame must be an int, got {type(frame).__name__}")
    frame = int(frame)

    if isinstance(source, (str, os.PathLike)):
        return _load_path(source, max_pixels=max_pixels, frame=frame)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _load_encoded(io.BytesIO(data), f"<{len(data)} bytes>", max_pixels=max_pixels, frame=frame)
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
    text = os.fsdecode(path)  # os.PathLike[bytes] too
    if text.startswith(("http://", "https://", "ftp://")):
        raise ImageLoadError(f"cannot load image '{text}': URLs are not supported; download the file "
                             "first and pass its local path")
    p = Path(text).expanduser()
    with _open_regular(p, "cannot load image") as f:
        return _load_encoded(f, str(p), max_pixels=max_pixels, frame=frame)


#: What a path that is not a regular file is, for messages (stat.S_IFMT -> words).
_SPECIAL_FILES = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
                  stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _open_regular(p: Path, doing: str) -> IO[bytes]:
    """``p`` opened for reading if it is a regular file, else :class:`ImageLoadError`; ``O_NONBLOCK``
    never waits on a FIFO or a device, then ``fstat`` on the open file decides (no race)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise ImageLoadError(f"image file not found: '{p}'; check the path and spelling") from None
    except PermissionError:
        raise ImageLoadError(f"{doing} '{p}': permission denied; check the file's read permissions") from None
    except (OSError, ValueError) as e:  # ValueError: embedded NUL byte; ENXIO: a socket
        kind = None
        with contextlib.suppress(OSError, ValueError):
            kind = _SPECIAL_FILES.get(stat.S_IFMT(os.stat(p).st_mode))
        if kind is not None:
            raise ImageLoadError(f"{doing} '{p}': it is {kind}, not a regular file; pass an image "
                                 "file") from None
        raise ImageLoadError(f"{doing} '{p}': cannot open the file ({one_line(e)}); check the path") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return os.fdopen(fd, "rb")
    os.close(fd)
    if stat.S_ISDIR(mode):
        raise ImageLoadError(f"{doing} '{p}': it is a directory, not an image file; "
                             "use list_images() to find the images inside it")
    kind = _SPECIAL_FILES.get(stat.S_IFMT(mode), "not a regular file")
    raise ImageLoadError(f"{doing} '{p}': it is {kind}, not a regular file; pass an image file")


def _load_file_object(f: IO[Any], *, max_pixels: int | None, frame: int) -> np.ndarray:
    name = getattr(f, "name", None)
    name = f"file object '{name}'" if isinstance(name, (str, os.PathLike)) else "file object"
    try:
        data = f.read()
    except OSError as e:
        raise ImageLoadError(f"cannot load image from {name}: read failed ({one_line(e)})") from None
    if isinstance(data, str):
        raise ImageLoadError(f"cannot load image from {name}: it is opened in text mode; open it "
                             "with mode 'rb'")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageLoadError(f"cannot load image from {name}: read() returned "
                             f"{type(data).__name__}, expected bytes")
    return _load_encoded(io.BytesIO(bytes(data)), name, max_pixels=max_pixels, frame=frame)


def _load_encoded(fp: IO[bytes], name: str, *, max_pixels: int | None, frame: int) -> np.ndarray:
    if fp.seek(0, io.SEEK_END) == 0:  # _identify reads from the start
        raise ImageLoadError(f"cannot load image '{name}': the file is empty (0 bytes); it was probably "
                             "not fully downloaded or written - re-create it")
    with _named_warnings(name):  # one re-issue of a warning both open and decode raise
        im = _open_checked(fp, name, max_pixels)
        try:
            _seek_frame(im, frame, name)
            return _pil_to_rgb(im, name, max_pixels=max_pixels)
        finally:
            im.close()


#: Held while Pillow's warnings are caught: catch_warnings swaps process-wide state (not thread-safe).
_WARNINGS_LOCK = threading.RLock()
_catching = False  # in this lock's holder: an outer _named_warnings re-issues


@contextlib.contextmanager
def _named_warnings(name: str) -> Iterator[None]:
    """Warnings raised while image ``name`` is read (Pillow's "Corrupt EXIF data", ours), re-issued after
    it, once each, naming the image (the command line shows them as ``warning: image '...': ...``)."""
    global _catching
    with _WARNINGS_LOCK:
        if _catching:
            yield
            return
        _catching = True
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield
        finally:
            _catching = False
        issued: set[tuple[type[Warning], str]] = set()
        for w in caught:
            key = (w.category, " ".join(str(w.message).split()))
            if key not in issued:
                issued.add(key)
                warnings.warn(f"image '{name}': {key[1]}", key[0], stacklevel=3)  # past contextlib


#: libjpeg's warnings about the compressed data (JWRN_*), which Pillow discards (a corrupt middle decodes
#: into a half-gray picture); others (a bad ICC profile) leave the pixels.
_JPEG_CORRUPTION = ("Corrupt JPEG data:", "Premature end of JPEG file", "Inconsistent progression")
_JPEG_METADATA_ONLY = ("Corrupt JPEG data: bad ICC marker",)


def _check_jpeg_stream(fp: IO[bytes], name: str) -> None:
    """Refuse a JPEG whose compressed data libjpeg reports as corrupt (simplejpeg, strict, at 1/8 scale:
    half of Pillow's time); files TurboJPEG does not take are left to Pillow."""
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


@functools.cache
def _register_heif() -> None:
    """HEIC/HEIF through the pillow-heif plugin."""
    try:
        import pillow_heif
    except ImportError:  # pragma: no cover - a dependency; a build without it reads everything else
        return
    pillow_heif.register_heif_opener()


def _open_checked(fp: IO[bytes], name: str, max_pixels: int | None) -> Image.Image:
    """:func:`_identify` ``fp``; refused (closed) over ``max_pixels`` or as a corrupt JPEG."""
    with _named_warnings(name):
        im = _identify(fp, name)
        try:
            _check_pixels(im.size, name, max_pixels)
            if im.format in ("JPEG", "MPO"):
                _check_jpeg_stream(fp, name)
        except BaseException:
            im.close()
            raise
        return im


def _identify(fp: IO[bytes], name: str) -> Image.Image:
    """``PIL.Image.open`` without its global ``MAX_IMAGE_PIXELS`` check (``max_pixels`` is per call)."""
    fp.seek(0)
    prefix = fp.read(16)
    Image.preinit()  # common formats first, like Image.open
    Image.init()
    _register_heif()
    claimed: list[tuple[str, BaseException]] = []  # formats whose signature matched but failed
    for fmt in list(Image.ID):
        factory, accept = Image.OPEN[fmt]
        try:
            verdict = accept(prefix) if accept is not None else True
        except _IDENTIFY_ERRORS:  # a file shorter than the signature test (`hi\n`): not this format
            continue
        try:
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
                                 f"({one_line(e)}); re-export or re-download the file") from e
    if claimed:
        fmt, err = claimed[0]
        raise ImageLoadError(f"cannot load image '{name}': it looks like {fmt} but its header is corrupt "
                             f"({one_line(err)}); re-export or re-download the file")
    raise ImageLoadError(f"cannot load image '{name}': {_describe_unknown(prefix, name)}")


def _describe_unknown(prefix: bytes, name: str) -> str:
    if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
        return "this is a video, not an image; use lseg.io.iter_frames() for videos"
    if prefix.lstrip()[:1] == b"<":
        return ("not an image but HTML/XML text (a failed download or an SVG?); download the real "
                "image or convert it to PNG")
    text = prefix.decode("utf-8", errors="ignore")  # a cut multi-byte char at the end is fine
    if len(text) >= len(prefix) // 2 and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "not an image but a text file; check that the path points to the actual image"
    return (f"not a recognised image format (first bytes {prefix[:8].hex()}); check the file is a "
            "JPEG/PNG/BMP/GIF/WebP/TIFF image and re-export it if needed")


def _load_pil_object(im: Image.Image, *, max_pixels: int | None, frame: int) -> np.ndarray:
    name = f"PIL image ({im.format or 'in memory'}, mode {im.mode}, {im.width}x{im.height})"
    _check_pixels(im.size, name, max_pixels)
    position = im.tell()
    with _named_warnings(name):
        try:
            _seek_frame(im, frame, name)
            return _pil_to_rgb(im, name, max_pixels=max_pixels)
        finally:
            with contextlib.suppress(Exception):  # restoring the caller's frame position is best effort
                if im.tell() != position:
                    im.seek(position)


def _n_frames(im: Image.Image, name: str) -> int:
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception as e:  # noqa: BLE001 - GIF/WebP count by reading every frame: a cut file fails here
        raise ImageLoadError(f"cannot read the frames of image '{name}': the file is truncated or corrupt "
                             f"({one_line(e)}); re-download or re-export it") from None


def _seek_frame(im: Image.Image, frame: int, name: str) -> None:
    n = _n_frames(im, name)
    if not 0 <= frame < n:
        valid = "only frame 0" if n == 1 else f"frames 0..{n - 1}"
        raise ImageLoadError(f"cannot load frame {frame} of image '{name}': it has {n} frame(s); use {valid}")
    if frame == 0 and im.tell() == 0:
        return
    try:
        im.seek(frame)
    except Exception as e:  # noqa: BLE001 - corrupt animations fail in many ways
        raise ImageLoadError(f"cannot load frame {frame} of image '{name}': the file is corrupt "
                             f"({one_line(e)}); re-export it") from None


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ImageLoadError(f"cannot load image '{name}': it has size {w}x{h} (no pixels); re-export it")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(
            f"image '{name}' is {w}x{h} = {w * h / 1e6:.1f} M pixels, above max_pixels={max_pixels} "
            f"(it would need ~{3 * w * h / 1e6:.0f} MB as HxWx3 uint8); downscale it (from Python, if the file is "
            "trusted: load_image(..., max_pixels=None))")


def _pil_to_rgb(im: Image.Image, name: str, *, max_pixels: int | None = None) -> np.ndarray:
    """``im``'s current frame decoded to ``HxWx3 uint8`` RGB, or :class:`ImageLoadError`."""
    _decode(im, name)
    try:
        im = _exif_upright(im)
        _check_pixels(im.size, name, max_pixels)  # decoders may change the size (e.g. ICO, MPO)
        return convert_mode(im, name)
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(f"cannot load image '{name}': out of memory while converting "
                             f"{im.width}x{im.height} pixels; downscale the image") from None
    except Exception as e:
        raise ImageLoadError(f"cannot load image '{name}': cannot convert mode {im.mode} to RGB "
                             f"({one_line(e)}); re-export it as 8-bit RGB") from e


def _decode(im: Image.Image, name: str) -> None:
    """``im``'s current frame decoded (Image.open and seek are lazy), or :class:`ImageLoadError`."""
    try:
        im.load()
    except Image.DecompressionBombError:
        raise ImageLoadError(f"cannot load image '{name}': a frame declares an absurd size "
                             "(decompression bomb guard); re-save the file") from None
    except MemoryError:
        raise ImageLoadError(f"cannot load image '{name}': out of memory while decoding "
                             f"{im.width}x{im.height} pixels; pass a smaller max_pixels or "
                             "downscale the image") from None
    except Exception as e:
        raise ImageLoadError(f"cannot load image '{name}': the file is truncated or corrupt "
                             f"({one_line(e)}); re-download or re-export it") from e


def _exif_upright(im: Image.Image) -> Image.Image:
    """``im`` turned by its EXIF Orientation (a corrupt EXIF block only loses the rotation)."""
    try:
        if im.getexif().get(ExifTags.Base.Orientation, 1) in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001 - the pixels are fine; only metadata is broken
        warnings.warn(f"ignoring unreadable EXIF orientation ({one_line(e)})", stacklevel=4)
    return im


def _check_no_frame(frame: int, what: str) -> None:
    if frame != 0:
        raise ImageLoadError(f"cannot load frame {frame} of a {what}: it has 1 frame; use frame=0")
