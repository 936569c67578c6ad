"""Dense feature export to the ``npy`` layout: one ``.npy`` of pixel embeddings per image or video
frame; resumable, atomic, and shardable across processes and machines. (The self-describing store
of :mod:`lseg.features.store` is the other output format.)

Layout of an output folder::

    OUT/features.json                     # manifest: model config, dtype, resolution, sampling
    OUT/<relative/path/stem>.npy          # image: (D, h, w) L2-normalised CLIP-space embeddings
    OUT/<relative/path/stem>_pca.png      # with pca=True: first 3 principal components as RGB
    OUT/<video stem>/<frame:06d>.npy      # video: one array per sampled frame (index in the file)
    OUT/<video stem>/frames.json          # video: sampled frame indices and timestamps (written last)

Resolution (``resolution=``):

* ``"half"`` (default): the network's output, half the working resolution (long side ``size``,
  default 480, so a 640x480 photo gives (512, 180, 240) for the 512-d models);
* ``"input"``: the working resolution, i.e. the x2 bilinear upsampling (align_corners=True) that
  LSeg applies to its logits, cropped to the working size;
* ``"original"``: the image's own size; ``"HxW"`` (e.g. ``"240x320"``) or ``(H, W)``: that size.

Upsampled embeddings follow the logits' path (x2 with align_corners=True, crop, then
align_corners=True to the target size) and are re-normalised to unit length. They are computed in
row strips, each written at its place in the file with ``pwrite`` (never through a memory map, whose
writes die of SIGBUS on a full disk), so a 4000x3000 export needs little RAM (but D*H*W*2 bytes of
disk).

A file appears only once complete (temporary name, then rename), so a killed job is simply
restarted: finished outputs are skipped (a video's ``frames.json`` marks it complete). Jobs started
on one output folder split the work through claim files (:mod:`lseg.jobs.claims`). A write that fails
(:class:`~lseg.errors.OutputWriteError`) fails its input, and the others go on; a full disk or a
read-only file system stops the job (``BatchReport.stopped``), and a re-run completes it.

Sharding: with ``torchrun --nproc_per_node=N -m lseg.cli features ...`` (``RANK``/``WORLD_SIZE`` in the
environment; no process group is needed) input ``i`` (an image or a whole video, in sorted order) is
done by rank ``i % WORLD_SIZE``; only rank 0 of each job writes the manifest (the same for every
shard). ``--shard k/M`` splits the inputs across machines the same way, and composes with torchrun
(part ``k * WORLD_SIZE + RANK`` of ``M * WORLD_SIZE``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lseg.console import progress_bar
from lseg.errors import LSegError, OutputWriteError
from lseg.geometry import axis_weights
from lseg.inference.predictor import LSegPredictor, to_numpy
from lseg.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, atomic_write, check_writable, iter_frames
from lseg.jobs.claims import ClaimSet
from lseg.jobs.records import (
    BatchReport,
    Status,
    check_outputs,
    check_unique_outputs,
    collect_inputs,
    finish,
    plan,
    write_record,
)

_logger = logging.getLogger(__name__)

MANIFEST = "features.json"
FRAMES_INDEX = "frames.json"
DTYPES = {"float16": np.float16, "float32": np.float32}
#: Floats per strip when upsampling embeddings (bounds the working memory to ~256 MB).
_STRIP_ELEMS = 1 << 26

Resolution = str | tuple[int, int]


@dataclass(frozen=True)
class MediaItem:
    """One input: an image (one output) or a video (one output per sampled frame).

    Attributes:
        path: the file.
        stem: output path relative to OUT without suffix (``a/b`` -> ``a/b.npy`` or ``a/b/000000.npy``).
        is_video: decode with :func:`lseg.io.iter_frames` instead of as one image.
    """

    path: Path
    stem: Path
    is_video: bool = False


def collect_media(inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str] | None = None) -> list[MediaItem]:
    """Expand files and folders into images and videos (extensions in :data:`lseg.io.VIDEO_EXTENSIONS`),
    sorted by path within each folder; never the output folder ``out`` nor recorded lseg outputs
    (:func:`lseg.jobs.records.collect_inputs`).

    Raises:
        LSegError: an input does not exist, or two inputs would write the same output
            (``a.jpg`` and ``a.png`` in one folder).
    """
    pairs = collect_inputs(inputs, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS, out=out)
    check_unique_outputs(pairs, ".npy")
    return [MediaItem(f, stem, f.suffix.lower() in VIDEO_EXTENSIONS) for f, stem in pairs]


# ---------------------------------------------------------------------------- sharding

def torchrun_rank() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` from the environment (set by torchrun), ``(0, 1)`` if unset."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise LSegError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise LSegError(f"invalid RANK={rank} / WORLD_SIZE={world}")
    return rank, world


def parse_shard(text: str) -> tuple[int, int]:
    """``"k/M"`` -> ``(k, M)`` with ``0 <= k < M`` (``--shard``)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise LSegError(f"--shard must be k/M with 0 <= k < M (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def combine_shards(machine: tuple[int, int] | None, process: tuple[int, int]) -> tuple[int, int]:
    """Part ``k * W + r`` of ``M * W`` for machine shard ``(k, M)`` and process ``(r, W)``."""
    k, m = machine or (0, 1)
    r, w = process
    return k * w + r, m * w


# ---------------------------------------------------------------------------- resolution

def parse_resolution(value: Resolution) -> Resolution:
    """Validate ``half | input | original | HxW | (H, W)``; returns the keyword or ``(H, W)``."""
    if isinstance(value, tuple):
        h, w = value
        if int(h) < 1 or int(w) < 1:
            raise LSegError(f"resolution must be positive, got {value}")
        return int(h), int(w)
    text = str(value).strip().lower()
    if text in ("half", "input", "original"):
        return text
    m = re.fullmatch(r"(\d+)\s*x\s*(\d+)", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise LSegError(f"resolution must be half, input, original or HxW (e.g. 240x320), got {value!r}")
    return int(m.group(1)), int(m.group(2))


def _target_size(resolution: Resolution, pixels_hw: tuple[int, int], input_size: tuple[int, int],
                 image_size: tuple[int, int]) -> tuple[int, int]:
    if resolution == "half":
        return pixels_hw
    if resolution == "input":
        return input_size
    if resolution == "original":
        return image_size
    assert isinstance(resolution, tuple)
    return resolution


def iter_resized_embeddings(
    pixels: np.ndarray, input_size: tuple[int, int], size: tuple[int, int], rows: int | None = None
) -> Iterator[tuple[slice, np.ndarray]]:
    """Upsample half-resolution embeddings in row strips, as LSeg upsamples its logits.

    Args:
        pixels: (D, h', w') embeddings at half the working resolution.
        input_size: (h, w) working resolution (``h' = ceil(h/2)``).
        size: (H, W) target size.
        rows: output rows per strip (default: about 64 M floats per strip).

    Yields:
        ``(row_slice, strip)`` with strip (D, rows, W) float32, L2-normalised over D: x2 bilinear
        (align_corners=True) cropped to ``input_size``, then bilinear (align_corners=True) to ``size``.
    """
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


# ---------------------------------------------------------------------------- export

def export_features(
    predictor: LSegPredictor,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    dtype: str = "float16",
    overwrite: bool = False,
    progress: bool = True,
    resolution: Resolution = "half",
    pca: bool = False,
    fps: float | None = None,
    every_n: int | None = None,
    shard: tuple[int, int] | None = None,
    write_manifest: bool | None = None,
    model_id: Mapping[str, Any] | None = None,
) -> BatchReport:
    """Write the pixel embeddings of every image / sampled video frame under ``inputs`` (module doc).

    Args:
        predictor: computes the embeddings (its ``size`` sets the working resolution).
        inputs: image / video files and folders (searched recursively).
        out_dir: output folder.
        dtype: ``float16`` (default) or ``float32``.
        overwrite: redo finished outputs (and accept a folder made with other settings).
        progress: show a progress bar.
        resolution: ``half`` | ``input`` | ``original`` | ``"HxW"`` | ``(H, W)``.
        pca: also write ``<stem>_pca.png`` (:func:`lseg.viz.pca_rgb` of the embeddings, computed at
            half resolution and resized to the output resolution).
        fps, every_n: video frame sampling (:func:`lseg.io.iter_frames`); default every frame.
        shard: ``(k, M)``: do only inputs ``i`` with ``i % M == k``. Default: ``(RANK, WORLD_SIZE)``
            from the environment (torchrun), i.e. everything in a plain run.
        write_manifest: default: only when ``RANK`` is 0 (or unset).
        model_id: what identifies the weights in the outputs' records (default: the model's config;
            the CLI passes the checkpoint and its files' sizes and dates).

    Each input's outputs get a record (``<stem>.json``; a video's ``frames.json``) of the settings
    that made them: a re-run skips inputs whose record matches and redoes those whose settings
    changed (:mod:`lseg.jobs.records`).

    Returns:
        :class:`BatchReport` of this process's part. Bad inputs are logged and counted in
        ``failed``; the others are still processed.

    Raises:
        LSegError: bad options, a missing input, or two inputs that would write the same output.
    """
    if dtype not in DTYPES:
        raise LSegError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    res = parse_resolution(resolution)
    if fps is not None and every_n is not None:
        raise LSegError("give fps or every_n for videos, not both")
    if fps is not None and not fps > 0:
        raise LSegError(f"fps must be positive, got {fps}")
    if every_n is not None and every_n < 1:
        raise LSegError(f"every_n must be >= 1, got {every_n}")
    part, parts = shard if shard is not None else torchrun_rank()
    if not 0 <= part < parts:
        raise LSegError(f"shard must be (k, M) with 0 <= k < M, got {(part, parts)}")
    if write_manifest is None:
        write_manifest = torchrun_rank()[0] == 0
    out = check_writable(out_dir)
    manifest = _manifest(predictor, dtype, res, fps, every_n, pca)
    if write_manifest:  # describes the latest run; each output's own record says what made it
        atomic_write(out / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))
    media = collect_media(inputs, out=out)
    images: list[tuple[Path, list[Path]]] = []
    for m in media:
        if not m.is_video:
            targets = _targets(out, m.stem, pca)
            images.append((m.path, [*targets, _record(targets)]))
    # every shard checks them all: a clash anywhere is refused by every process
    check_outputs(images, [(m.path, out / m.stem) for m in media if m.is_video], index=FRAMES_INDEX,
                  overwrite=overwrite)
    items = media[part::parts]
    recipe = {
        "size": predictor.size, "crop_size": predictor.crop_size, "stride": predictor.stride,
        "precision": predictor.precision, "dtype": dtype, "resolution": manifest["resolution"],
        "model": dict(model_id) if model_id is not None else manifest["model"],
    }
    report = BatchReport()
    desc = "features" if parts == 1 else f"features {part + 1}/{parts}"
    with ClaimSet() as claims:
        writer = _Writer(predictor, out, DTYPES[dtype], res, pca, overwrite, recipe, claims)
        for item in progress_bar(items, desc=desc, unit="input", disable=not progress, position=part if parts > 1 else None):
            try:
                if item.is_video:
                    writer.video(item, report, fps=fps, every_n=every_n)
                else:
                    writer.image(item, report)
            except OutputWriteError as e:  # only fatal ones get here: every later write would fail too
                _logger.error("%s", e)
                report.failed.append((item.path, str(e)))
                report.stopped = str(e)
                break
    return report


def _manifest(
    predictor: LSegPredictor, dtype: str, res: Resolution, fps: float | None, every_n: int | None, pca: bool
) -> dict[str, Any]:
    notes = {
        "half": "half of the working size (long side = size)",
        "input": "working size (x2 bilinear, align_corners=True, as the logits), re-normalised",
        "original": "original image size (bilinear, align_corners=True), re-normalised",
    }
    note = notes[res] if isinstance(res, str) else "fixed HxW (bilinear, align_corners=True), re-normalised"
    manifest = {
        "format": "lseg-features",
        "version": 1,
        "layout": "CHW",
        "dtype": dtype,
        "normalized": True,
        "resolution": list(res) if isinstance(res, tuple) else res,
        "resolution_note": note,
        "size": predictor.size,
        "video_sampling": {"fps": fps, "every_n": every_n},
        "pca": pca,
        "model": predictor.model.config.to_dict(),
    }
    return json.loads(json.dumps(manifest))  # as it reads back (tuples -> lists), for comparisons


def _targets(out: Path, stem: Path, pca: bool) -> list[Path]:
    """The files one image or video frame writes: ``<stem>.npy`` (and ``<stem>_pca.png``)."""
    base = out / stem
    return [base.with_name(base.name + ".npy")] + ([base.with_name(base.name + "_pca.png")] if pca else [])


def _record(targets: list[Path]) -> Path:
    """An image's record, ``<stem>.json``, next to its outputs."""
    return targets[0].with_suffix(".json")


class _Writer:
    """Writes the outputs of one image or video frame (embedding array + optional PCA picture)."""

    def __init__(
        self, predictor: LSegPredictor, out: Path, dtype: type, res: Resolution, pca: bool, overwrite: bool,
        recipe: dict[str, Any], claims: ClaimSet,
    ) -> None:
        self.predictor, self.out, self.dtype, self.res, self.pca, self.overwrite, self.recipe, self.claims = (
            predictor, out, dtype, res, pca, overwrite, recipe, claims
        )

    def targets(self, stem: Path) -> list[Path]:
        return _targets(self.out, stem, self.pca)

    def image(self, item: MediaItem, report: BatchReport) -> None:
        targets = self.targets(item.stem)
        record = _record(targets)
        status = plan(targets, record, self.recipe, report, overwrite=self.overwrite)
        if status == "done":
            return
        if not self.claims.take(targets[0]):
            report.others.append(targets[0])
            return
        try:
            # finished by another worker since the check above (counted as skipped by plan)
            status = plan(targets, record, self.recipe, report, overwrite=self.overwrite)
            if status == "done":
                return
            emb = self.predictor.embed_image(item.path)
            write_record(record, "features", item.path, self.recipe, targets, pending=True)
            self.write(emb, targets)
            write_record(record, "features", item.path, self.recipe, targets, shape=self.shape)
            finish(report, targets[0], status)
        except LSegError as e:
            if isinstance(e, OutputWriteError) and e.fatal:
                raise
            _logger.warning("skipping %s: %s", item.path, e)
            report.failed.append((item.path, str(e)))
        finally:
            self.claims.release(targets[0])

    def video(self, item: MediaItem, report: BatchReport, *, fps: float | None, every_n: int | None) -> None:
        folder = self.out / item.stem
        if not self.claims.take(folder):  # a video is one unit of work
            report.others.append(folder)
            return
        try:
            self._video(item, report, fps=fps, every_n=every_n)
        finally:
            self.claims.release(folder)

    def _video(self, item: MediaItem, report: BatchReport, *, fps: float | None, every_n: int | None) -> None:
        folder = self.out / item.stem
        index_path = folder / FRAMES_INDEX
        # The video's record is its frames.json (written last): same recipe and every frame there: done.
        recipe = {**self.recipe, "video_sampling": {"fps": fps, "every_n": every_n}}
        old_targets: list[Path] = []
        try:
            old_targets = [folder / name for name in json.loads(index_path.read_text())["outputs"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        status: Status = plan(old_targets or [index_path], index_path, recipe, report, overwrite=self.overwrite)
        if status == "done":
            report.skipped += [t for t in old_targets[1:] if t.suffix == ".npy"]
            return
        record: list[dict[str, float]] = []
        written: list[Path] = []
        pending = False
        try:
            for index, t, frame in iter_frames(item.path, fps=fps, every_n=every_n):
                stem = item.stem / f"{index:06d}"
                record.append({"index": index, "time": round(float(t), 6)})
                targets = self.targets(stem)
                written += targets
                if status == "new" and all(p.exists() for p in targets):  # an interrupted run's frames
                    report.skipped.append(targets[0])
                    continue
                emb = self.predictor.embed_image(frame)
                if not pending:  # the folder is lseg's from now on; old outputs stay listed until replaced
                    write_record(index_path, "features-video", item.path, recipe, old_targets, pending=True)
                    pending = True
                self.write(emb, targets)
                finish(report, targets[0], status)
        except LSegError as e:
            if isinstance(e, OutputWriteError) and e.fatal:
                raise
            _logger.warning("video %s: stopped after %d sampled frames: %s", item.path, len(record), e)
            report.failed.append((item.path, str(e)))
            return
        if not record:
            report.failed.append((item.path, "no frames decoded"))
            return
        try:
            write_record(index_path, "features-video", item.path, recipe, written, fps=fps, every_n=every_n,
                         frames=record)
        except OutputWriteError as e:
            if e.fatal:
                raise
            _logger.warning("video %s: %s", item.path, e)
            report.failed.append((item.path, str(e)))
            return
        for stale in set(old_targets) - set(written):  # frames the old sampling took, this one does not
            stale.unlink(missing_ok=True)

    def write(self, emb: Any, targets: list[Path]) -> None:
        pixels = to_numpy(emb.pixels)  # (D, h', w') float32
        size = _target_size(self.res, tuple(pixels.shape[1:]), tuple(emb.input_size), tuple(emb.image_size))
        self.shape = [int(pixels.shape[0]), *size]
        if size == tuple(pixels.shape[1:]) and self.res == "half":
            arr = pixels.astype(self.dtype)
            atomic_write(targets[0], lambda p: _save_npy(p, arr))
        else:
            atomic_write(targets[0], lambda p: self._save_resized(p, pixels, emb.input_size, size))
        if self.pca:
            atomic_write(targets[1], lambda p: _save_pca(p, pixels, size))

    def _save_resized(self, path: Path, pixels: np.ndarray, input_size: tuple[int, int],
                      size: tuple[int, int]) -> None:
        """A (D, H, W) ``.npy`` written strip by strip: the rows of a strip lie at D places in the
        file (one per channel), each written with a seek and an ordinary write, so a full disk is an
        ``OSError`` (ENOSPC), not the SIGBUS of a store through a memory map."""
        d, (big_h, big_w) = pixels.shape[0], size
        row_bytes = big_w * np.dtype(self.dtype).itemsize
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(np.dtype(self.dtype)), "fortran_order": False,
                    "shape": (d, big_h, big_w)})
            start = f.tell()
            for sl, strip in iter_resized_embeddings(pixels, tuple(input_size), size):
                block = strip.astype(self.dtype)
                for c in range(d):
                    f.seek(start + (c * big_h + sl.start) * row_bytes)
                    f.write(np.ascontiguousarray(block[c]).data)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)


def _save_pca(path: Path, pixels: np.ndarray, size: tuple[int, int]) -> None:
    from PIL import Image

    from lseg.viz import pca_rgb

    img = Image.fromarray(pca_rgb(pixels))
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    img.save(path, format="PNG")
