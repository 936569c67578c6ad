"""Hostile and odd inputs for the tests (import as ``hostile_inputs``): good and bad image files,
CLI runners and output checks."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A small photo-like RGB image (smooth gradient + texture)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([200 * yy / max(h, 1), 200 * xx / max(w, 1), 128 + 0 * xx], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` (a decompression bomb)."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


@dataclass(frozen=True)
class GoodImage:
    path: Path
    size: tuple[int, int]  # (H, W) the loader must return (after EXIF rotation)


def write_good(folder: Path) -> dict[str, GoodImage]:
    folder.mkdir(parents=True, exist_ok=True)
    rgb = scene(36, 52)
    h, w = rgb.shape[:2]
    pil = Image.fromarray(rgb)
    out: dict[str, GoodImage] = {}

    def add(name: str, img: Image.Image, size: tuple[int, int] = (h, w), **kwargs: object) -> None:
        path = folder / name
        img.save(path, **kwargs)
        out[name] = GoodImage(path, size)

    add("rgb.jpg", pil, quality=90)
    add("rgb.png", pil)
    add("gray.png", pil.convert("L"))
    add("gray16.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).convert("I;16"))
    add("bw.png", pil.convert("1"))
    pal = pil.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    add("palette.png", pal, transparency=0)
    add("la.png", Image.merge("LA", (pil.convert("L"), Image.new("L", pil.size, 128))))
    rgba = pil.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))))
    add("rgba.png", rgba)
    add("cmyk.jpg", pil.convert("CMYK"), quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: the loader returns W x H
    add("exif_rotated.jpg", pil, size=(w, h), exif=exif, quality=90)
    frames = [Image.fromarray(scene(h, w, seed=s)).convert("P", palette=Image.Palette.ADAPTIVE) for s in range(3)]
    path = folder / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)
    out["animated.gif"] = GoodImage(path, (h, w))
    add("photo.webp", pil, quality=80)
    add("photo.bmp", pil)
    add("float.tiff", Image.fromarray(rgb[..., 1].astype(np.float32) / 255.0))
    add("one_pixel.png", Image.new("RGB", (1, 1), (200, 10, 10)), size=(1, 1))
    add("thin_strip.png", Image.fromarray(scene(1, 700)), size=(1, 700))
    add("tall_strip.png", Image.fromarray(scene(500, 2)), size=(500, 2))
    return out


def write_bad(folder: Path, good: dict[str, GoodImage]) -> dict[str, Path]:
    """Broken files, each named after what is wrong with it."""
    folder.mkdir(parents=True, exist_ok=True)
    jpg = good["rgb.jpg"].path.read_bytes()
    png = good["rgb.png"].path.read_bytes()
    corrupt = bytearray(png)
    start = png.index(b"IDAT") + 8
    corrupt[start : start + 40] = bytes(range(40))  # keeps the length, breaks the zlib stream / CRC
    files = {
        "zero_bytes.png": b"",
        "truncated.jpg": jpg[: len(jpg) // 2],
        "truncated.png": png[: len(png) // 2],
        "header_only.png": png[:40],
        "corrupt_data.png": bytes(corrupt),
        "text_file.jpg": b"this is not an image, it is a note\n",
        "html_page.png": b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
        "random_bytes.jpg": np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes(),
        "bomb.png": png_with_size(100_000, 100_000),
    }
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    (folder / "directory.jpg").mkdir(exist_ok=True)
    paths["directory.jpg"] = folder / "directory.jpg"
    return paths


def one_error_line(stderr: str) -> str:
    """The single ``error: ...`` line of a failed command; fails on tracebacks or extra lines."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


#: Several ``lseg`` commands in one fresh interpreter (one ``import torch`` for all): each command's
#: stdout and stderr end with a marker line that carries its exit code.
_SEVERAL = r"""
import json, sys
from lseg.cli import main
for args in json.loads(sys.argv[1]):
    rc = main(args)
    for stream in (sys.stdout, sys.stderr):
        print(f"\n\0lseg-exit {rc}", file=stream, flush=True)
"""


def run_cli_commands(*commands: list[str], prefix: tuple[str, ...] = (), env: dict[str, str] | None = None,
                     timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
    """Run ``lseg`` commands one after the other in one fresh process (real stderr, real exit codes):
    for tests of what a process shows (warnings, log lines, file names on a real stderr) or of a
    process started differently (``prefix``, e.g. ``setpriv ...``) that need no process of their own
    per command. One CompletedProcess per command; ``env`` defaults to :func:`cli_env`."""
    proc = subprocess.run([*prefix, sys.executable, "-c", _SEVERAL, json.dumps(list(commands))], env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
    (outs, _), (errs, codes) = _split(proc.stdout), _split(proc.stderr)
    assert proc.returncode == 0 and len(codes) == len(commands), proc.stderr[-3000:]
    return [subprocess.CompletedProcess(args, code, out, err)
            for args, code, out, err in zip(commands, codes, outs, errs, strict=True)]


def _split(text: str) -> tuple[list[str], list[int]]:
    """``"out0\\n\\0lseg-exit 0\\nout1\\n\\0lseg-exit 2\\n"`` -> (["out0", "out1"], [0, 2])."""
    parts = text.split("\n\0lseg-exit ")
    outputs, codes = [parts[0]], []
    for part in parts[1:]:
        code, _, rest = part.partition("\n")
        codes.append(int(code))
        outputs.append(rest)
    return outputs[:-1], codes


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TQDM_DISABLE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def signal_segment_midway(tmp_path: Path, signum: int) -> tuple[int, str]:
    """``lseg segment`` of 300 small images in a fresh process, sent ``signum`` once an image is written: its
    exit code and stderr. The child sets ``signum`` to its default and unblocks it: it inherits both from the
    test worker, and libraries the suite loads (Lightning's process-group teardown) change them."""
    import signal
    import time

    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(300):  # enough that a loaded machine cannot finish them all before the signal
        Image.fromarray(np.full((24, 24, 3), i % 250, np.uint8)).save(photos / f"p{i:03d}.png")
    name = signal.Signals(signum).name
    default = "signal.default_int_handler" if signum == signal.SIGINT else "signal.SIG_DFL"
    prelude = (f"import runpy, signal, sys; signal.signal(signal.{name}, {default}); "
               f"signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.{name}}}); sys.argv[0] = 'lseg'; "
               "runpy.run_module('lseg.cli', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", prelude, "segment", str(photos), "-l", "a, b", "-o",
                             str(tmp_path / "o"), "--random-weights", "lseg_tiny_test", "--size", "32",
                             "--batch-size", "1"], env=cli_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "o").glob("*_labels.json")):
        time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err
