"""A self-describing feature store: one folder per run, readable frame by frame.

Layout::

    STORE/store.json                          settings: preset + geometry, resolution, dtype (stored
                                              and computed), model
                                              config, weights hash, checkpoint, video sampling, the
                                              planned units (which inputs go in which unit)
    STORE/shards/u000003-c0001.safetensors    fp16 (D, H, W) maps, one tensor per frame, named by
                                              the frame key (``a/b`` for image a/b.jpg,
                                              ``clip/000042`` for frame 42 of clip.mp4); the
                                              frames' records in the ``__metadata__``
    STORE/units/u000003.json                  a unit's frame records, written last: the unit is done
    STORE/index.json                          every frame in order (id, key, source, frame index,
                                              timestamp, image size, shape, shard), written once
                                              all units are done: readers need only this file
    STORE/reduction/projection.safetensors    optional scene-level PCA (:mod:`lseg.features.reduce`)
    STORE/reduction/shards/<same names>       the reduced (k, H, W) fp16 maps, same tensor names

Why safetensors shards + a JSON index rather than Zarr: safetensors is already a dependency and
its format is a JSON header + raw little-endian bytes, so ``safe_open(shard).get_tensor(key)``
memory-maps and copies one frame without reading the rest, from Python, Rust, C++ or JS, with no
new dependency. Frames of one store may have different sizes (a folder of photos), which Zarr
would hold as one array per frame (a directory of chunk files each), where a shard holds many.
Zarr's advantages (sub-frame chunks, appending in place, cloud stores) matter less here: 3D code
reads whole frames, and every write here is a whole file made atomically.

Units: the inputs are cut, in sorted order, into units (a video, or ``frames_per_shard``
consecutive images), and unit ``i`` is done by shard ``i % M`` (torchrun rank, ``--shard k/M`` or a
Ray worker). A unit's frames go into shards of at most ``frames_per_shard`` frames and
``shard_bytes`` bytes, so the layout does not depend on who wrote it: the Ray export writes the
same files as one process. Every file is written atomically; a killed run restarts where it
stopped (finished units are skipped, and so are finished shards of an unfinished video).

One module on purpose (just over 500 lines): the writer, the reader and the resume logic
are one file format; each reads what the others write, so a change to the layout touches all three.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import lseg
from lseg.console import progress_bar
from lseg.errors import LSegError
from lseg.features.export import BatchReport, MediaItem, collect_media, torchrun_rank
from lseg.features.presets import FeatureExtractor, json_safe
from lseg.features.reduce import PCAFit, Reduction
from lseg.io import atomic_write, iter_frames, load_image

_logger = logging.getLogger(__name__)

FORMAT = "lseg-feature-store"
VERSION = 1
STORE_MANIFEST = "store.json"
STORE_INDEX = "index.json"
REDUCTION_DIR = "reduction"
PROJECTION = "projection.safetensors"
#: Layouts :func:`export_layout` writes: file name pattern for a frame key.
LAYOUTS = {"openscene": "{key}.pt", "feature3dgs": "{key}_fmap_CxHxW.pt"}


@dataclass(frozen=True)
class Unit:
    """A unit of work: one video, or a run of consecutive images."""

    id: int
    items: tuple[MediaItem, ...]

    @property
    def name(self) -> str:
        return f"u{self.id:06d}"

    @property
    def is_video(self) -> bool:
        return self.items[0].is_video

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": "video" if self.is_video else "images",
                "sources": [str(it.path) for it in self.items], "keys": [it.stem.as_posix() for it in self.items]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Unit:
        video = d["kind"] == "video"
        return cls(int(d["id"]), tuple(MediaItem(Path(s), Path(k), video) for s, k in zip(d["sources"], d["keys"])))


def plan_units(inputs: Sequence[str | os.PathLike[str]], frames_per_shard: int) -> list[Unit]:
    """Cut the inputs (sorted as :func:`collect_media`) into units (module docstring)."""
    units: list[Unit] = []
    images: list[MediaItem] = []

    def flush() -> None:
        if images:
            units.append(Unit(len(units), tuple(images)))
            images.clear()

    for item in collect_media(inputs):
        if item.is_video:
            flush()
            units.append(Unit(len(units), (item,)))
        else:
            images.append(item)
            if len(images) == frames_per_shard:
                flush()
    flush()
    return units


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes, bytes): which weights made a store."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().reshape(-1).contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class StoreSettings:
    """How a store is cut into files and how videos are sampled."""

    fps: float | None = None
    every_n: int | None = None
    frames_per_shard: int = 16
    shard_bytes: int = 512 << 20
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.fps is not None and self.every_n is not None:
            raise LSegError("give fps or every_n for videos, not both")
        if self.fps is not None and not self.fps > 0:
            raise LSegError(f"fps must be positive, got {self.fps}")
        if self.every_n is not None and self.every_n < 1:
            raise LSegError(f"every_n must be >= 1, got {self.every_n}")
        if self.frames_per_shard < 1 or self.batch_size < 1 or self.shard_bytes < 1:
            raise LSegError("frames_per_shard, batch_size and shard_bytes must be >= 1")


def build_manifest(extractor: FeatureExtractor, units: list[Unit], settings: StoreSettings,
                   checkpoint: str | None = None) -> dict[str, Any]:
    model = extractor.model
    return json_safe({
        "format": FORMAT,
        "version": VERSION,
        "layout": "CHW",
        "dtype": "float16",
        "compute_dtype": str(model.dtype).removeprefix("torch."),
        "precision": model.precision,  # the image path's; the weights hash is of the weights as run
        "normalized": True,
        "extractor": extractor.describe(),
        "model": model.config.to_dict(),
        "weights_sha256": weights_sha256(model),
        "checkpoint": checkpoint,
        "video_sampling": {"fps": settings.fps, "every_n": settings.every_n},
        "frames_per_shard": settings.frames_per_shard,
        "shard_bytes": settings.shard_bytes,
        "lseg_version": lseg.__version__,
        "units": [u.to_dict() for u in units],
    })


def prepare_store(out: Path, manifest: dict[str, Any], overwrite: bool, write: bool) -> None:
    """Refuse a folder holding another run's store (unless ``overwrite``); write the manifest."""
    path = out / STORE_MANIFEST
    if path.is_file() and not overwrite:
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        ignore = {"lseg_version"}
        if old is not None:
            changed = sorted(k for k in manifest if k not in ignore and old.get(k) != manifest[k])
            if changed:
                raise LSegError(f"{out} holds a store made with other settings or inputs "
                                f"({', '.join(changed)} differ); use another --out folder or --overwrite")
    if write:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: p.write_text(json.dumps(manifest, indent=1) + "\n"))


def export_store(
    extractor: FeatureExtractor,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    settings: StoreSettings | None = None,
    checkpoint: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    write_manifest: bool | None = None,
    reduce: int | None = None,
) -> BatchReport:
    """Write the feature maps of every image / sampled video frame under ``inputs`` into a store.

    Args:
        extractor: preset + resolution + model.
        inputs: image / video files and folders.
        out_dir: the store folder.
        settings: video sampling, shard size, batch size.
        checkpoint: recorded in the manifest (what ``lseg query`` loads by default).
        overwrite: recompute finished units and accept a store made with other settings.
        progress: progress bar.
        shard: ``(k, M)``: do units ``i % M == k``; default from torchrun's ``RANK``/``WORLD_SIZE``.
        write_manifest: default: when ``RANK`` is 0 (or unset).
        reduce: once every unit is done, fit a ``reduce``-dimensional scene PCA (:func:`reduce_store`).

    Returns:
        :class:`BatchReport` of this process's part (written / skipped: frame keys' shard paths).
    """
    out = Path(out_dir)
    settings = settings or StoreSettings()
    part, parts = shard if shard is not None else torchrun_rank()
    if not 0 <= part < parts:
        raise LSegError(f"shard must be (k, M) with 0 <= k < M, got {(part, parts)}")
    if write_manifest is None:
        write_manifest = torchrun_rank()[0] == 0
    units = plan_units(inputs, settings.frames_per_shard)
    manifest = build_manifest(extractor, units, settings, checkpoint)
    prepare_store(out, manifest, overwrite, write_manifest)
    report = BatchReport()
    mine = units[part::parts]
    desc = "store" if parts == 1 else f"store {part + 1}/{parts}"
    for unit in progress_bar(mine, desc=desc, unit="unit", disable=not progress):
        process_unit(extractor, out, unit, settings, overwrite, report)
    if finalize_store(out) and reduce:
        reduce_store(out, reduce, progress=progress)
    return report


# ---------------------------------------------------------------------------- writing units

def unit_done(out: Path, unit: Unit) -> bool:
    return (out / "units" / f"{unit.name}.json").is_file()


def _unit_frames(unit: Unit, settings: StoreSettings) -> Iterator[tuple[dict[str, Any], Any]]:
    """``(record, image)`` per frame; a bad image yields ``(record with "error", None)``."""
    if unit.is_video:
        item = unit.items[0]
        for index, t, frame in iter_frames(item.path, fps=settings.fps, every_n=settings.every_n):
            key = (item.stem / f"{index:06d}").as_posix()
            yield {"key": key, "source": str(item.path), "frame": index, "time": round(float(t), 6)}, frame
        return
    for item in unit.items:
        rec = {"key": item.stem.as_posix(), "source": str(item.path), "frame": None, "time": None}
        try:
            yield rec, load_image(item.path)
        except LSegError as e:
            yield {**rec, "error": str(e)}, None


def process_unit(extractor: FeatureExtractor, out: Path, unit: Unit, settings: StoreSettings,
                 overwrite: bool, report: BatchReport) -> dict[str, Any] | None:
    """Compute and write one unit (its shards, then its record). Returns the record, or ``None``
    when a video stopped early (no record: a re-run retries it)."""
    record_path = out / "units" / f"{unit.name}.json"
    if record_path.is_file() and not overwrite:
        rec = json.loads(record_path.read_text())
        report.skipped += [out / f["shard"] for f in rec["frames"]]
        return rec
    frames: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    chunk: list[tuple[dict[str, Any], Any]] = []
    chunk_bytes, n_chunks = 0, 0
    d = extractor.model.config.text.embed_dim

    def flush() -> None:
        nonlocal chunk, chunk_bytes, n_chunks
        if chunk:
            rel = f"shards/{unit.name}-c{n_chunks:04d}.safetensors"
            _write_chunk(extractor, out, rel, chunk, settings, overwrite, report)
            frames.extend({**r, "shard": rel} for r, _ in chunk)
            n_chunks += 1
        chunk, chunk_bytes = [], 0

    try:
        for rec, image in _unit_frames(unit, settings):
            if image is None:
                _logger.warning("skipping %s: %s", rec["source"], rec["error"])
                report.failed.append((Path(rec["source"]), rec["error"]))
                failed.append({"source": rec["source"], "error": rec["error"]})
                continue
            h, w = image.shape[:2]
            oh, ow = extractor.output_size(h, w)
            rec.update(image_size=[h, w], shape=[d, oh, ow])
            nbytes = d * oh * ow * 2
            if chunk and (len(chunk) == settings.frames_per_shard or chunk_bytes + nbytes > settings.shard_bytes):
                flush()
            chunk.append((rec, image))
            chunk_bytes += nbytes
        flush()
    except LSegError as e:
        src = unit.items[0].path
        _logger.warning("%s: stopped after %d frames: %s", src, len(frames) + len(chunk), e)
        report.failed.append((src, str(e)))
        return None
    if unit.is_video and not frames:
        report.failed.append((unit.items[0].path, "no frames decoded"))
        return None
    rec = {"unit": unit.id, "frames": frames, "failed": failed}
    atomic_write(record_path, lambda p: p.write_text(json.dumps(rec, indent=1) + "\n"))
    return rec


def _write_chunk(extractor: FeatureExtractor, out: Path, rel: str, chunk: list[tuple[dict[str, Any], Any]],
                 settings: StoreSettings, overwrite: bool, report: BatchReport) -> None:
    from safetensors.numpy import save_file

    path = out / rel
    keys = [r["key"] for r, _ in chunk]
    if path.is_file() and not overwrite and _shard_keys(path) == keys:
        report.skipped += [path] * len(chunk)  # a finished shard of an unfinished video
        return
    tensors: dict[str, np.ndarray] = {}
    for i in range(0, len(chunk), settings.batch_size):
        part = chunk[i : i + settings.batch_size]
        for (rec, _), fmap in zip(part, extractor([img for _, img in part])):
            tensors[rec["key"]] = fmap.to(torch.float16).numpy()
    meta = {"frames": json.dumps([r for r, _ in chunk])}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))
    report.written += [path] * len(chunk)


def _shard_keys(path: Path) -> list[str] | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return [r["key"] for r in json.loads((f.metadata() or {})["frames"])]
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):  # unreadable or foreign: recompute it
        return None


# ---------------------------------------------------------------------------- index

def finalize_store(out: str | os.PathLike[str]) -> bool:
    """Write ``index.json`` if every planned unit is done; returns whether the store is complete.

    Idempotent and deterministic (several processes finishing together write the same file)."""
    out = Path(out)
    manifest = json.loads((out / STORE_MANIFEST).read_text())
    records = []
    for u in manifest["units"]:
        p = out / "units" / f"u{int(u['id']):06d}.json"
        if not p.is_file():
            return False
        records.append(json.loads(p.read_text()))
    frames = [{"id": i, **f} for i, f in enumerate(f for r in records for f in r["frames"])]
    failed = [f for r in records for f in r["failed"]]
    index = {"format": FORMAT, "version": VERSION, "num_frames": len(frames), "frames": frames, "failed": failed,
             "reduction": None}
    old = out / STORE_INDEX
    if old.is_file():  # keep a reduction made of these same frames
        prev = json.loads(old.read_text())
        if prev.get("frames") == frames:
            index["reduction"] = prev.get("reduction")
    atomic_write(old, lambda p: p.write_text(json.dumps(index, indent=1) + "\n"))
    return True


# ---------------------------------------------------------------------------- reading

class FeatureStore:
    """Read a store frame by frame (only the requested frame's bytes are read).

    >>> store = FeatureStore("feats/")                               # doctest: +SKIP
    >>> store.frames[0]["key"], store.read(0).shape                  # doctest: +SKIP
    ('clip/000000', (512, 240, 320))
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.manifest: dict[str, Any] = json.loads((self.path / STORE_MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LSegError(f"{self.path} is not a feature store (no readable {STORE_MANIFEST}): {e}") from None
        if self.manifest.get("format") != FORMAT:
            raise LSegError(f"{self.path}/{STORE_MANIFEST} is not an {FORMAT} manifest")
        index = self.path / STORE_INDEX
        if not index.is_file():
            done = len(list((self.path / "units").glob("u*.json"))) if (self.path / "units").is_dir() else 0
            raise LSegError(f"{self.path} is incomplete ({done} of {len(self.manifest['units'])} units done); "
                            "re-run the same export to finish it")
        self.index: dict[str, Any] = json.loads(index.read_text())
        self.frames: list[dict[str, Any]] = self.index["frames"]
        self._by_key = {f["key"]: f["id"] for f in self.frames}

    def __len__(self) -> int:
        return len(self.frames)

    def frame_id(self, frame: int | str) -> int:
        if isinstance(frame, str):
            if frame not in self._by_key:
                raise LSegError(f"no frame {frame!r} in {self.path}")
            return self._by_key[frame]
        if not 0 <= frame < len(self.frames):
            raise LSegError(f"frame {frame} out of range (the store has {len(self.frames)})")
        return int(frame)

    def read(self, frame: int | str, *, reduced: bool = False) -> np.ndarray:
        """Frame ``frame`` (id or key): (D, H, W) float16, or (k, H, W) with ``reduced``."""
        from safetensors import safe_open

        info = self.frames[self.frame_id(frame)]
        if reduced and not self.index.get("reduction"):
            raise LSegError(f"{self.path} has no reduction (run `lseg store reduce`)")
        shard = self.path / (f"{REDUCTION_DIR}/{info['shard']}" if reduced else info["shard"])
        with safe_open(str(shard), framework="np") as f:
            return f.get_tensor(info["key"])

    def read_decoded(self, frame: int | str) -> torch.Tensor:
        """A reduced frame decoded back to the text space: (D, H, W) float32, re-normalised."""
        red = self.reduction
        if red is None:
            raise LSegError(f"{self.path} has no reduction (run `lseg store reduce`)")
        z = torch.from_numpy(self.read(frame, reduced=True)).float()
        return torch.nn.functional.normalize(red.decode(z), dim=0)

    @cached_property
    def reduction(self) -> Reduction | None:
        if not self.index.get("reduction"):
            return None
        return Reduction.load(self.path / REDUCTION_DIR / PROJECTION)

    def shards(self) -> list[str]:
        return list(dict.fromkeys(f["shard"] for f in self.frames))


# ---------------------------------------------------------------------------- reduction

def reduce_store(path: str | os.PathLike[str], k: int, *, overwrite: bool = False, progress: bool = False) -> Reduction:
    """Fit a k-dimensional scene PCA over every pixel of every frame (one streaming pass,
    :class:`~lseg.features.reduce.PCAFit`), then write the reduced maps next to the full ones."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    store = FeatureStore(path)
    folder = store.path / REDUCTION_DIR
    old = store.index.get("reduction")
    if old and old["k"] != k and not overwrite:
        raise LSegError(f"{store.path} already holds a {old['k']}-d reduction; use --overwrite to replace it")
    proj = folder / PROJECTION
    if old and old["k"] == k and proj.is_file() and not overwrite:
        red = Reduction.load(proj)
    else:
        fit: PCAFit | None = None
        for i in progress_bar(range(len(store)), desc="fit reduction", unit="frame", disable=not progress):
            fmap = torch.from_numpy(store.read(i))
            fit = fit or PCAFit(int(fmap.shape[0]))
            fit.update_map(fmap)
        if fit is None:
            raise LSegError(f"{store.path} holds no frames")
        red = fit.result(k)
        atomic_write(proj, red.save)
        overwrite = True  # a new projection: every reduced shard is stale
    for rel in progress_bar(store.shards(), desc="reduce", unit="shard", disable=not progress):
        target = folder / rel
        if target.is_file() and not overwrite:
            continue
        with safe_open(str(store.path / rel), framework="np") as f:
            meta = f.metadata()
            tensors = {key: red.encode(torch.from_numpy(f.get_tensor(key))).to(torch.float16).numpy()
                       for key in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        atomic_write(target, lambda p, t=tensors, m=meta: save_file(t, str(p), metadata=m))
    index = dict(store.index, reduction={**red.summary(), "projection": f"{REDUCTION_DIR}/{PROJECTION}"})
    atomic_write(store.path / STORE_INDEX, lambda p: p.write_text(json.dumps(index, indent=1) + "\n"))
    return red


# ---------------------------------------------------------------------------- other layouts

def export_layout(path: str | os.PathLike[str], layout: Literal["openscene", "feature3dgs"],
                  out_dir: str | os.PathLike[str], *, reduced: bool = False, overwrite: bool = False) -> list[Path]:
    """Write a store's frames as the per-image files a 3D pipeline reads.

    * ``openscene``: ``OUT/<key>.pt``, a ``torch.save`` of the (D, H, W) float16 tensor, as
      ``lseg_feature_extraction.py`` writes for OpenScene's fusion scripts;
    * ``feature3dgs``: ``OUT/<key>_fmap_CxHxW.pt``, the same tensor under Feature 3DGS's name
      (``encoders/lseg_encoder/encode_images.py``).

    ``key`` is the frame key (``clip/000042`` for video frames). With ``reduced``, the (k, H, W)
    reduced maps (Feature 3DGS's speed-up trains on low-dimensional features).
    """
    if layout not in LAYOUTS:
        raise LSegError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    store = FeatureStore(path)
    out = Path(out_dir)
    written = []
    for info in store.frames:
        target = out / LAYOUTS[layout].format(key=info["key"])
        if target.exists() and not overwrite:
            continue
        t = torch.from_numpy(store.read(info["id"], reduced=reduced))
        atomic_write(target, lambda p, t=t: torch.save(t, p))
        written.append(target)
    return written
