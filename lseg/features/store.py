"""Writing a self-describing feature store (docs/features-3d.md, "Store layout"): the inputs cut, in
sorted order, into units (a video, or ``frames_per_shard`` consecutive images), each unit's frames
into shards whose files do not depend on which process wrote them."""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lseg
from lseg.errors import LSegError
from lseg.features.derived import reduce_store
from lseg.features.export import job_part
from lseg.features.options import VideoSampling
from lseg.features.presets import FeatureExtractor, json_safe
from lseg.features.reader import (
    FORMAT,
    STORE_INDEX,
    STORE_MANIFEST,
    VERSION,
    FeatureStore,
    unit_done,
    unit_record,
)
from lseg.inference.folder import weights_identity, weights_sha256
from lseg.io import Staged, atomic_write, iter_frames, load_image
from lseg.jobs.engine import Report, Unit, Writer, finished, reported, run_job
from lseg.jobs.inputs import Media, collect_media, read_record
from lseg.jobs.records import digest
from lseg.options import option

__all__ = ["FeatureStore", "StoreSettings", "StoreUnit", "StoreWriter", "export_store", "finalize_store", "plan_units"]

@dataclass(frozen=True)
class StoreUnit:
    """A unit of work: one video, or a run of consecutive images."""

    id: int
    items: tuple[Media, ...]

    @property
    def is_video(self) -> bool:
        return self.items[0].is_video

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": "video" if self.is_video else "images",
                "sources": [str(it.path) for it in self.items], "keys": [it.stem.as_posix() for it in self.items]}


def plan_units(inputs: Sequence[str | os.PathLike[str]], frames_per_shard: int,
               out: str | os.PathLike[str] | None = None) -> list[StoreUnit]:
    """Cut the inputs (sorted as :func:`lseg.jobs.inputs.collect_media`) into units."""
    groups: list[list[Media]] = []
    media = collect_media(inputs, out=out, suffix=" (one frame key in the store)",
                          video_suffix="/NNNNNN (its frame keys in the store)")
    videos = {m.stem: m.path for m in media if m.is_video}  # their frames' keys: <video stem>/<frame:06d>
    clash = [m for m in media if m.stem.parent in videos and re.fullmatch(r"\d{6,}", m.stem.name)]
    if clash:
        more = f" (and {len(clash) - 1} more images)" if len(clash) > 1 else ""
        raise LSegError(f"{clash[0].path} would take the frame key {clash[0].stem.as_posix()} of the video "
                        f"{videos[clash[0].stem.parent]}{more}; rename or move it")
    for is_video, run in itertools.groupby(media, key=lambda m: m.is_video):
        items, step = list(run), 1 if is_video else frames_per_shard
        groups += [items[i : i + step] for i in range(0, len(items), step)]
    return [StoreUnit(i, tuple(g)) for i, g in enumerate(groups)]


@dataclass(frozen=True)
class StoreSettings(VideoSampling):
    """How a store is cut into files and how videos are sampled."""

    fps: float | None = option(None, gt=0)
    every_n: int | None = option(None, min=1)
    frames_per_shard: int = option(16, min=1)
    shard_bytes: int = option(512 << 20, min=1)
    batch_size: int = option(8, min=1)


class StoreWriter(Writer):
    """``lseg features --format store`` as a batch writer: a unit per video or run of images, its
    shards written as they fill."""

    kind = "store"
    unit_name = "unit"

    def __init__(self, inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                 description: Mapping[str, Any], model: Mapping[str, Any],
                 extractor: FeatureExtractor | Callable[[], FeatureExtractor], settings: StoreSettings | None = None,
                 checkpoint: str | None = None, overwrite: bool = False, write_manifest: bool = True,
                 reduce: int | None = None) -> None:
        self.inputs, self.out = list(inputs), Path(out).expanduser()
        self.description, self.model = json_safe(dict(description)), json_safe(dict(model))
        self.settings = settings or StoreSettings()
        self._extractor = extractor
        self.extractor: FeatureExtractor | None = extractor if isinstance(extractor, FeatureExtractor) else None
        self.checkpoint, self.overwrite, self.write_manifest, self.reduce = checkpoint, overwrite, write_manifest, reduce

    def units(self) -> list[Unit]:
        self.plan = plan_units(self.inputs, self.settings.frames_per_shard, out=self.out)
        self._check_store()
        return [Unit(u.items[0].path, [], unit_record(self.out, u.id), data=u,
                     inputs=tuple(it.path for it in u.items[1:])) for u in self.plan]

    def recipe(self) -> dict[str, Any]:
        s = self.settings
        return {"extractor": self.description, "model": self.model, "dtype": "float16",
                "video_sampling": {"fps": s.fps, "every_n": s.every_n}, "frames_per_shard": s.frames_per_shard,
                "shard_bytes": s.shard_bytes}

    def _check_store(self) -> None:
        """Refuse a folder holding another run's store (other settings or inputs), unless ``overwrite``."""
        path = self.out / STORE_MANIFEST
        if self.overwrite or not path.is_file():
            return
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return
        units = _resolved(json_safe([u.to_dict() for u in self.plan]))
        ours = {"recipe": digest(self.recipe()), "units": units}
        changed = [k for k in ours if (_resolved(old.get(k)) if k == "units" else old.get(k)) != ours[k]]
        if changed:
            what = "settings" if "recipe" in changed else "inputs"
            raise LSegError(f"{self.out} holds a store made with other {what}; use another --out folder or "
                            "--overwrite")

    def setup(self) -> None:
        if self.extractor is None:
            self.extractor = self._extractor()
        dim = self.extractor.model.config.text.embed_dim
        if self.reduce is not None and not 1 <= self.reduce <= dim:  # refused before any frame is extracted
            raise LSegError(f"--reduce {self.reduce}: the features are {dim}-d; reduce to 1..{dim} dimensions")
        # some unit is to be (re)written: the store is unfinished until finalize_store indexes it again
        (self.out / STORE_INDEX).unlink(missing_ok=True)
        if self.write_manifest:
            model = self.extractor.model
            manifest = json_safe({
                "format": FORMAT, "version": VERSION, "layout": "CHW", "dtype": "float16",
                "compute_dtype": str(model.dtype).removeprefix("torch."), "precision": model.precision,
                "normalized": True, "extractor": self.extractor.describe(), "model": model.config.to_dict(),
                "weights_sha256": weights_sha256(model), "checkpoint": self.checkpoint,
                "video_sampling": {"fps": self.settings.fps, "every_n": self.settings.every_n},
                "frames_per_shard": self.settings.frames_per_shard, "shard_bytes": self.settings.shard_bytes,
                "lseg_version": lseg.__version__, "recipe": digest(self.recipe()),
                "units": [u.to_dict() for u in self.plan]})
            atomic_write(self.out / STORE_MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1) + "\n"))

    def write(self, unit: Unit, result: Any, staged: Staged) -> dict[str, Any]:
        assert self.extractor is not None
        return write_unit(self.extractor, self.out, unit.data, self.settings, unit.status == "new", unit.targets)

    def finish(self, report: Report) -> None:
        if finalize_store(self.out) and self.reduce:  # every unit is done: the scene PCA, if asked
            # its Ctrl-C, disk full or failures: the job's
            sub = reported(lambda: reduce_store(self.out, self.reduce, progress=False))
            report.failed, report.stopped = report.failed + sub.failed, report.stopped or sub.stopped
            report.interrupted |= sub.interrupted


def _resolved(units: Any) -> Any:
    """Units as :meth:`StoreUnit.to_dict` writes them, their sources resolved (one folder typed as a relative
    or an absolute path is one input); anything else as it is."""
    try:
        return [{**u, "sources": [os.path.realpath(s) for s in u["sources"]]} for u in units]
    except (TypeError, KeyError):
        return units


def export_store(extractor: FeatureExtractor | Callable[[], FeatureExtractor],
                 inputs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *,
                 settings: StoreSettings | None = None, checkpoint: str | None = None, overwrite: bool = False,
                 progress: bool = True, shard: tuple[int, int] | None = None, write_manifest: bool | None = None,
                 reduce: int | None = None, description: Mapping[str, Any] | None = None,
                 model: Mapping[str, Any] | None = None) -> Report:
    """Write the feature maps of every image / sampled video frame under ``inputs`` into a store
    (``lseg features --format store``): ``checkpoint`` is recorded (what ``lseg query`` loads),
    ``shard`` and ``write_manifest`` are :func:`~lseg.features.export.export_features`'s, ``reduce``
    fits a scene PCA once every unit is done. ``extractor``: a :class:`FeatureExtractor`, or a function
    building it once some unit is to be written (then ``description``, :func:`~lseg.features.presets.describe`'s, and ``model``,
    what identifies the weights, are needed). Returns this process's report."""
    if not hasattr(extractor, "model") and (description is None or model is None):
        raise TypeError("export_store: a function building the extractor needs description and model")
    part, parts, write_manifest = job_part(shard, write_manifest)
    writer = StoreWriter(inputs, out_dir, description=description or extractor.describe(),
                         model=model or weights_identity(extractor.model), extractor=extractor, settings=settings,
                         checkpoint=checkpoint, overwrite=overwrite, write_manifest=write_manifest, reduce=reduce)
    return finished(run_job(writer, overwrite=overwrite, progress=progress, shard=(part, parts)))


def _utf8(key: str) -> str:
    """A frame key safetensors can store: bytes of a file name that are not UTF-8 as ``\\xNN``."""
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _unit_frames(unit: StoreUnit, settings: StoreSettings) -> Iterator[tuple[dict[str, Any], Any]]:
    """``(record, image)`` per frame; a bad image yields ``(record with "error", None)``."""
    if unit.is_video:
        item = unit.items[0]
        for index, t, frame in iter_frames(item.path, fps=settings.fps, every_n=settings.every_n):
            key = _utf8((item.stem / f"{index:06d}").as_posix())
            yield {"key": key, "source": str(item.path), "frame": index, "time": round(float(t), 6)}, frame
        return
    for item in unit.items:
        rec = {"key": _utf8(item.stem.as_posix()), "source": str(item.path), "frame": None, "time": None}
        try:
            yield rec, load_image(item.path)
        except LSegError as e:
            yield {**rec, "error": str(e)}, None


def write_unit(extractor: FeatureExtractor, out: Path, unit: StoreUnit, settings: StoreSettings, resume: bool,
               written: list[Path]) -> dict[str, Any]:
    """Compute and write one unit's shards (each atomically, appended to ``written``; with ``resume``
    a finished shard of the same frames is kept); returns the unit record's fields (``frames``,
    ``failed``: the images that could not be read)."""
    frames: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    chunk: list[tuple[dict[str, Any], Any]] = []
    chunk_bytes, n_chunks = 0, 0
    d = extractor.model.config.text.embed_dim

    def flush() -> None:
        nonlocal chunk, chunk_bytes, n_chunks
        if chunk:
            rel = f"shards/u{unit.id:06d}-c{n_chunks:04d}.safetensors"
            _write_chunk(extractor, out / rel, chunk, settings, resume)
            written.append(out / rel)
            frames.extend({**r, "shard": rel} for r, _ in chunk)
            n_chunks += 1
        chunk, chunk_bytes = [], 0

    for rec, image in _unit_frames(unit, settings):
        if image is None:
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
    if unit.is_video and not frames:
        raise LSegError("no frames decoded")
    for stale in set((out / "shards").glob(f"u{unit.id:06d}-c*.safetensors")) - set(written):  # a killed run's
        stale.unlink(missing_ok=True)
    return {"unit": unit.id, "frames": frames, "failed": failed}


def _write_chunk(extractor: FeatureExtractor, path: Path, chunk: list[tuple[dict[str, Any], Any]],
                 settings: StoreSettings, resume: bool) -> None:
    from safetensors.numpy import save_file

    if resume and path.is_file() and _shard_keys(path) == [r["key"] for r, _ in chunk]:
        return  # a finished shard of an unfinished unit
    tensors: dict[str, np.ndarray] = {}
    for i in range(0, len(chunk), settings.batch_size):
        part = chunk[i : i + settings.batch_size]
        for (rec, _), fmap in zip(part, extractor([img for _, img in part])):
            tensors[rec["key"]] = fmap.to(torch.float16).numpy()
    meta = {"frames": json.dumps([r for r, _ in chunk])}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def _shard_keys(path: Path) -> list[str] | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return [r["key"] for r in json.loads((f.metadata() or {})["frames"])]
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):  # unreadable or foreign: recompute it
        return None


def finalize_store(out: str | os.PathLike[str]) -> bool:
    """Write ``index.json`` if every planned unit is done; returns whether the store is complete.
    Deterministic: processes finishing together write the same file."""
    out = Path(out).expanduser()
    if not (out / STORE_MANIFEST).is_file():  # no unit planned yet (nothing to do, or another part's)
        return False
    manifest = json.loads((out / STORE_MANIFEST).read_text())
    records = [read_record(unit_record(out, u["id"])) for u in manifest["units"]]
    if not all(unit_done(manifest, r) for r in records):  # a part re-run with other settings: not over mixed features
        return False
    frames = [{"id": i, **f} for i, f in enumerate(f for r in records for f in r["frames"])]
    failed = [f for r in records for f in r["failed"]]
    index = {"format": FORMAT, "version": VERSION, "num_frames": len(frames), "frames": frames, "failed": failed,
             "reduction": None}
    old = out / STORE_INDEX
    if old.is_file():  # keep a reduction made of these same frames
        prev = json.loads(old.read_text())
        if prev.get("frames") == frames:
            index["reduction"] = prev.get("reduction")
        if prev == index:  # as it is (a re-run with nothing to do writes nothing)
            return True
    atomic_write(old, lambda p: p.write_text(json.dumps(index, indent=1) + "\n"))
    return True
