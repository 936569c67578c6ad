"""The ``npy`` feature layout (one (D, H, W) array per image or sampled video frame, and a
``features.json`` manifest: docs/features-3d.md), its resizing and the sharding helpers."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lseg.errors import LSegError
from lseg.features.options import FeaturesOptions, Resolution, parse_resolution, parse_shard
from lseg.geometry import axis_weights
from lseg.inference.folder import weights_identity
from lseg.inference.predictor import LSegPredictor, to_numpy
from lseg.io import Staged, atomic_write, iter_frames
from lseg.jobs.engine import Report, Unit, Writer, finished, run_job
from lseg.jobs.inputs import Media, collect_media

__all__ = [
    "DTYPES", "FRAMES_INDEX", "MANIFEST", "NpyWriter", "combine_shards", "export_features",
    "iter_resized_embeddings", "job_part", "parse_resolution", "parse_shard", "resize_embeddings", "torchrun_rank",
]

MANIFEST = "features.json"
FRAMES_INDEX = "frames.json"
DTYPES = {"float16": np.float16, "float32": np.float32}
#: Floats per strip when upsampling embeddings (bounds the working memory to ~256 MB).
_STRIP_ELEMS = 1 << 26


def torchrun_rank() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` from the environment (set by torchrun), ``(0, 1)`` if unset."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise LSegError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise LSegError(f"invalid RANK={rank} / WORLD_SIZE={world}")
    return rank, world


def combine_shards(machine: tuple[int, int] | None, process: tuple[int, int]) -> tuple[int, int]:
    """Part ``k * W + r`` of ``M * W`` for machine shard ``(k, M)`` and process ``(r, W)``."""
    k, m = machine or (0, 1)
    r, w = process
    return k * w + r, m * w


def job_part(shard: tuple[int, int] | None, write_manifest: bool | None) -> tuple[int, int, bool]:
    """``(k, M, write_manifest)``: ``shard``, by default torchrun's ``(RANK, WORLD_SIZE)``; the manifest,
    by default, on rank 0."""
    part, parts = shard if shard is not None else torchrun_rank()
    if not 0 <= part < parts:
        raise LSegError(f"shard must be (k, M) with 0 <= k < M, got {(part, parts)}")
    return part, parts, torchrun_rank()[0] == 0 if write_manifest is None else write_manifest


def iter_resized_embeddings(pixels: np.ndarray, input_size: tuple[int, int], size: tuple[int, int],
                            rows: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
    """(D, h', w') half-resolution embeddings of an ``input_size`` working image -> ``(row_slice,
    strip)`` of the (D, H, W) map at ``size``, as LSeg upsamples its logits (x2 bilinear,
    align_corners=True, cropped to ``input_size``, then bilinear to ``size``), L2-normalised over D;
    ``rows`` per strip (default: about 64 M floats)."""
    d, h2, w2 = pixels.shape
    h, w = input_size
    big_h, big_w = size
    y1lo, y1hi, y1t = (a[:h] for a in axis_weights(h2, 2 * h2))
    x1lo, x1hi, x1t = (a[:w] for a in axis_weights(w2, 2 * w2))
    y2lo, y2hi, y2t = axis_weights(h, big_h)
    x2lo, x2hi, x2t = axis_weights(w, big_w)
    step = rows or max(1, _STRIP_ELEMS // max(1, d * max(big_w, w) * 2))
    src = pixels.astype(np.float32, copy=False)
    for r0 in range(0, big_h, step):
        sl = slice(r0, min(big_h, r0 + step))
        need = np.unique(np.concatenate([y2lo[sl], y2hi[sl]]))  # working-resolution rows used
        a = src[:, y1lo[need]] * (1 - y1t[need])[None, :, None] + src[:, y1hi[need]] * y1t[need][None, :, None]
        a = a[:, :, x1lo] * (1 - x1t) + a[:, :, x1hi] * x1t  # (D, len(need), w)
        ia, ib = np.searchsorted(need, y2lo[sl]), np.searchsorted(need, y2hi[sl])
        t = y2t[sl][None, :, None]
        b = a[:, ia] * (1 - t) + a[:, ib] * t
        b = b[:, :, x2lo] * (1 - x2t) + b[:, :, x2hi] * x2t  # (D, rows, W)
        b /= np.maximum(np.linalg.norm(b, axis=0, keepdims=True), 1e-12)
        yield sl, b


def resize_embeddings(pixels: np.ndarray, input_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(D, h', w') -> (D, H, W) float32 in one array (see :func:`iter_resized_embeddings`)."""
    out = np.empty((pixels.shape[0], *size), np.float32)
    for sl, strip in iter_resized_embeddings(pixels, input_size, size):
        out[:, sl] = strip
    return out


#: A video frame's files in its folder (``000012.npy``, ``000012_pca.png``).
_FRAME_FILE = re.compile(r"\d{6}(\.npy|_pca\.png)")


class NpyWriter(Writer):
    """The ``npy`` layout as a batch writer: a unit per image or video."""

    kind = "features"
    unit_name = "input"

    def __init__(self, inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, dtype: str,
                 resolution: Resolution, pca: bool, fps: float | None, every_n: int | None,
                 predictor: LSegPredictor | Callable[[], LSegPredictor], model: Mapping[str, Any],
                 recipe: Mapping[str, Any], write_manifest: bool = True) -> None:
        self.inputs, self.out = list(inputs), Path(out).expanduser()
        self.dtype, self.res, self.pca = dtype, parse_resolution(resolution), pca
        self.fps, self.every_n = fps, every_n
        self._predictor, self.model, self._recipe = predictor, dict(model), dict(recipe)
        self.write_manifest = write_manifest
        self.predictor: LSegPredictor | None = predictor if isinstance(predictor, LSegPredictor) else None

    def _files(self, stem: Path) -> list[Path]:
        base = self.out / stem
        return [base.with_name(base.name + ".npy")] + ([base.with_name(base.name + "_pca.png")] if self.pca else [])

    def units(self) -> list[Unit]:
        units = []
        for m in collect_media(self.inputs, out=self.out):
            if m.is_video:
                folder = self.out / m.stem
                units.append(Unit(m.path, [], folder / FRAMES_INDEX, folder=folder, data=m))
            else:
                targets = self._files(m.stem)
                units.append(Unit(m.path, targets, targets[0].with_suffix(".json"), data=m))
        return units

    def recipe(self) -> dict[str, Any]:
        return {**self._recipe, "dtype": self.dtype, "resolution": self.res,  # --pca adds a file, as --scores
                "video_sampling": {"fps": self.fps, "every_n": self.every_n}, "model": self.model}

    def unit_recipe(self, unit: Unit, recipe: dict[str, Any]) -> dict[str, Any]:
        return recipe if unit.folder is not None else {**recipe, "video_sampling": {"fps": None, "every_n": None}}

    def setup(self) -> None:
        if self.predictor is None:
            self.predictor = self._predictor()
        if not self.write_manifest:
            return
        notes = {"half": "half of the working size (long side = size)",
                 "input": "working size (x2 bilinear, align_corners=True, as the logits), re-normalised",
                 "original": "original image size (bilinear, align_corners=True), re-normalised"}
        note = notes.get(str(self.res), "fixed HxW (bilinear, align_corners=True), re-normalised")
        manifest = {  # describes the latest run; each output's record says what made it
            "format": "lseg-features", "version": 1, "layout": "CHW", "dtype": self.dtype, "normalized": True,
            "resolution": self.res, "resolution_note": note, "size": self.predictor.size,
            "video_sampling": {"fps": self.fps, "every_n": self.every_n}, "pca": self.pca,
            "model": self.predictor.model.config.to_dict()}
        atomic_write(self.out / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))

    def compute_one(self, unit: Unit) -> Any:
        assert self.predictor is not None
        return None if unit.folder is not None else self.predictor.embed_image(unit.source)

    def write(self, unit: Unit, result: Any, staged: Staged) -> dict[str, Any]:
        assert self.predictor is not None
        if unit.folder is None:
            return {"shape": self._save(result, unit.targets, staged.write)}
        # a video: each frame written as it is computed (a re-run skips those its pending record lists)
        item: Media = unit.data
        frames: list[dict[str, float]] = []
        resume = unit.status == "new"
        for index, t, frame in iter_frames(item.path, fps=self.fps, every_n=self.every_n):
            targets = self._files(item.stem / f"{index:06d}")
            frames.append({"index": index, "time": round(float(t), 6)})
            unit.targets += targets
            if resume and all(p.exists() for p in targets):
                continue
            self._save(self.predictor.embed_image(frame), targets, atomic_write)
        if not frames:
            raise LSegError("no frames decoded")
        # A killed run's frames under other settings are not in any record (listing each frame as it is
        # written would rewrite the record per frame: quadratic). They are this folder's frame files that
        # this run did not make and that no record of their own (an image's NNNNNN.json) claims.
        made = set(unit.targets)
        for p in sorted(unit.folder.iterdir()):
            if _FRAME_FILE.fullmatch(p.name) and p not in made and not p.with_name(p.name[:6] + ".json").exists():
                p.unlink(missing_ok=True)
        return {"fps": self.fps, "every_n": self.every_n, "frames": frames}

    def _save(self, emb: Any, targets: list[Path], write: Any) -> list[int]:
        """Write one embedding (and its PCA picture) with ``write(target, writer)``; returns its shape."""
        pixels = to_numpy(emb.pixels)  # (D, h', w') float32
        sizes = {"half": tuple(pixels.shape[1:]), "input": tuple(emb.input_size), "original": tuple(emb.image_size)}
        size = sizes[self.res] if isinstance(self.res, str) else self.res
        # the half map itself at its own size (as the store's), re-normalised (averaged overlapping windows are shorter)
        strips: Any = ([(slice(0, size[0]), pixels / np.maximum(np.linalg.norm(pixels, axis=0), 1e-12))]
                       if tuple(size) == pixels.shape[1:]
                       else iter_resized_embeddings(pixels, tuple(emb.input_size), size))
        write(targets[0], lambda p: _save_npy(p, (pixels.shape[0], *size), DTYPES[self.dtype], strips))
        if self.pca:
            write(targets[1], lambda p: _save_pca(p, pixels, size))
        return [int(pixels.shape[0]), *size]


def export_features(predictor: LSegPredictor | Callable[[], LSegPredictor],
                    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                    out_dir: str | os.PathLike[str], *, dtype: str = "float16", overwrite: bool = False,
                    progress: bool = True, resolution: Resolution = "half", pca: bool = False,
                    fps: float | None = None, every_n: int | None = None,
                    shard: tuple[int, int] | None = None, write_manifest: bool | None = None,
                    model_id: Mapping[str, Any] | None = None, recipe: Mapping[str, Any] | None = None) -> Report:
    """``lseg features`` (the ``npy`` layout) in Python, with the settings of
    :class:`~lseg.features.options.FeaturesOptions` (``resolution`` also ``(H, W)``): the embeddings
    of every image / sampled video frame under ``inputs``. ``predictor``: an :class:`LSegPredictor`, or
    a function building it once some input is to be written (then ``model_id`` and ``recipe`` are
    needed); ``shard``: ``(k, M)``, by default torchrun's ``(RANK, WORLD_SIZE)``; ``write_manifest``: by
    default on rank 0; ``model_id``: what identifies the weights in the records (default: config and
    weights hash); ``recipe``: the predictor's size, crop_size, stride and precision. Returns this
    process's report (bad inputs listed in ``failed``)."""
    FeaturesOptions(out=str(out_dir), dtype=dtype, fps=fps, every_n=every_n,  # type: ignore[arg-type]
                    resolution=resolution if isinstance(resolution, str) else None)
    if not hasattr(predictor, "model") and (recipe is None or model_id is None):
        raise TypeError("export_features: a function building the predictor needs model_id and recipe")
    part, parts, write_manifest = job_part(shard, write_manifest)
    if recipe is None:
        recipe = {"size": predictor.size, "crop_size": predictor.crop_size, "stride": predictor.stride,
                  "precision": predictor.precision}
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    writer = NpyWriter(items, out_dir, dtype=dtype, resolution=resolution, pca=pca, fps=fps, every_n=every_n,
                       predictor=predictor, recipe=recipe, write_manifest=write_manifest,
                       model=weights_identity(predictor.model) if model_id is None else model_id)
    return finished(run_job(writer, overwrite=overwrite, progress=progress, shard=(part, parts)))


def _save_npy(path: Path, shape: tuple[int, int, int], dtype: Any,
              strips: Iterable[tuple[slice, np.ndarray]]) -> None:
    """A (D, H, W) ``.npy`` written from ``(row_slice, (D, rows, W) strip)`` s with seeks and Python's
    file writes: a full disk is an ``OSError`` with its errno (ENOSPC), not the SIGBUS of a memory
    map nor numpy's ``N requested and M written``."""
    d, big_h, big_w = shape
    row_bytes = big_w * np.dtype(dtype).itemsize
    need, free = d * big_h * row_bytes, shutil.disk_usage(path.parent).free
    if need > free:  # before the seeks below make a sparse file that fills the disk
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} for {_size(need)} ({_size(free)} free)")
    with open(path, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        start = f.tell()
        for sl, strip in strips:
            block = strip.astype(dtype)
            for c in range(d):
                f.seek(start + (c * big_h + sl.start) * row_bytes)
                f.write(np.ascontiguousarray(block[c]).data)


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} bytes"


def _save_pca(path: Path, pixels: np.ndarray, size: tuple[int, int]) -> None:
    from PIL import Image

    from lseg.viz import pca_rgb

    img = Image.fromarray(pca_rgb(pixels))
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    img.save(path, format="PNG")
