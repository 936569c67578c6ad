"""What is derived from a finished feature store: its scene-level reduction (:class:`ReduceWriter`)
and the per-image layouts 3D pipelines read (:class:`LayoutWriter`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import torch

from lseg.console import progress_bar
from lseg.errors import LSegError
from lseg.features.reader import PROJECTION, REDUCTION_DIR, STORE_INDEX, FeatureStore
from lseg.features.reduce import Reduction, fit_reduction
from lseg.io import Staged, atomic_write
from lseg.jobs.engine import Report, Unit, Writer, finished, run_job
from lseg.jobs.records import remove_gone

__all__ = ["LAYOUTS", "LayoutWriter", "ReduceWriter", "export_layout", "reduce_store"]

#: Layouts :func:`export_layout` writes: file name pattern for a frame key.
LAYOUTS = {"openscene": "{key}.pt", "feature3dgs": "{key}_fmap_CxHxW.pt"}


class ReduceWriter(Writer):
    """``lseg store reduce``: a k-d scene PCA fitted in :meth:`setup`, then a unit per shard: its reduced
    copy under ``reduction/``."""

    kind = "reduce"
    unit_name = "shard"

    def __init__(self, store: FeatureStore, k: int, overwrite: bool = False, progress: bool = False) -> None:
        dim = int(store.manifest["model"]["text"]["embed_dim"])
        if not 1 <= k <= dim:
            raise LSegError(f"reduce to k dimensions with 1 <= k <= {dim} (the features' dimension), got {k}")
        old = store.index.get("reduction")
        if old and old["k"] != k and not overwrite:
            raise LSegError(f"{store.path} already holds a {old['k']}-d reduction; use --overwrite to replace it")
        self.store, self.k, self.overwrite, self.progress = store, k, overwrite, progress
        self.out = store.path / REDUCTION_DIR
        self.reduction: Reduction | None = None

    def units(self) -> list[Unit]:
        return [Unit(self.store.path / rel, [self.out / rel], (self.out / rel).with_suffix(".json"), data=rel)
                for rel in self.store.shards()]

    def recipe(self) -> dict[str, Any]:
        return {"k": self.k, "store": {**self.store.identity(), "reduction": None}}

    def setup(self) -> None:
        proj = self.out / PROJECTION
        old = self.store.index.get("reduction")
        if old and old["k"] == self.k and proj.is_file() and not self.overwrite:
            self.reduction = Reduction.load(proj)
            return
        if not len(self.store):
            raise LSegError(f"{self.store.path} holds no frames")
        if old:  # a half-done replacement must read as no reduction until finish records the new one
            index = {**self.store.index, "reduction": None}
            text = json.dumps(index, indent=1) + "\n"
            atomic_write(self.store.path / STORE_INDEX, lambda p: p.write_text(text))
        frames = progress_bar(range(len(self.store)), desc="fit reduction", unit="frame", disable=not self.progress)
        self.reduction = fit_reduction((self.store.read(i) for i in frames), self.k)
        atomic_write(proj, self.reduction.save)

    def write(self, unit: Unit, result: Any, staged: Staged) -> dict[str, Any]:
        from safetensors import safe_open
        from safetensors.numpy import save_file

        assert self.reduction is not None
        with safe_open(str(unit.source), framework="np") as f:
            meta = f.metadata()
            tensors = {key: self.reduction.encode(torch.from_numpy(f.get_tensor(key))).to(torch.float16).numpy()
                       for key in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        staged.write(unit.targets[0], lambda p: save_file(tensors, str(p), metadata=meta))
        return {}

    def finish(self, report: Report) -> None:
        if self.reduction is None:  # nothing was to be done: the reduction in place is this one
            return
        store = self.store
        index = dict(store.index, reduction={**self.reduction.summary(), "projection": f"{REDUCTION_DIR}/{PROJECTION}"})
        atomic_write(store.path / STORE_INDEX, lambda p: p.write_text(json.dumps(index, indent=1) + "\n"))
        kept = {p for u in self.units() for p in (*u.targets, u.record)}
        for p in (self.out / "shards").glob("*"):  # those of shards an earlier extraction had
            if p not in kept and not p.name.startswith(".") and p.is_file():
                p.unlink(missing_ok=True)


def reduce_store(path: str | os.PathLike[str], k: int, *, overwrite: bool = False, progress: bool = False) -> Report:
    """``lseg store reduce`` in Python (:class:`ReduceWriter`)."""
    writer = ReduceWriter(FeatureStore(path), k, overwrite, progress)
    report = run_job(writer, overwrite=overwrite, progress=progress)
    done = not (report.interrupted or report.stopped)  # Ctrl-C in the fit: not fitted again
    if done and writer.reduction is None and (writer.store.index.get("reduction") or {}).get("k") != k:
        # every shard done, yet the index records no such reduction (a run killed before recording it, or
        # the store extracted again): refit it and encode every shard with it
        report = run_job(writer, overwrite=True, progress=progress)
        report.changed = {"projection"}
    return finished(report)


class LayoutWriter(Writer):
    """``lseg store export``: each frame as the file a 3D pipeline reads (a ``torch.save`` of its (D or
    k, H, W) float16 tensor, named as :data:`LAYOUTS` says)."""

    kind = "store-export"
    unit_name = "frame"

    def __init__(self, store: FeatureStore, layout: str, out: str | os.PathLike[str], reduced: bool = False) -> None:
        if layout not in LAYOUTS:
            raise LSegError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.out = Path(out).expanduser()
        if self.out.resolve().is_relative_to(store.path.resolve()):
            raise LSegError(f"the export folder {out} is inside the store {store.path}: choose a folder outside it")
        if reduced and store.reduction is None:
            raise LSegError(f"{store.path} has no reduction (run `lseg store reduce`)")
        self.store, self.layout, self.reduced = store, layout, reduced

    def units(self) -> list[Unit]:
        units = []
        for info in self.store.frames:
            target = self.out / LAYOUTS[self.layout].format(key=info["key"])
            shard = self.store.path.absolute() / info["shard"]  # the record's source: from any folder
            units.append(Unit(shard, [target], target.with_suffix(".json"), data=info["id"]))
        return units

    def recipe(self) -> dict[str, Any]:
        return {"layout": self.layout, "reduced": self.reduced, "store": self.store.identity()}

    def write(self, unit: Unit, result: Any, staged: Staged) -> dict[str, Any]:
        t = torch.from_numpy(self.store.read(unit.data, reduced=self.reduced))
        staged.write(unit.targets[0], lambda p: torch.save(t, p))
        return {}

    def finish(self, report: Report) -> None:  # the files of frames the store no longer has (any layout)
        keep = {(self.out / name.format(key=f["key"])).with_suffix(".json") for name in LAYOUTS.values()
                for f in self.store.frames}
        remove_gone(self.out, self.kind, self.store.path, keep)


def export_layout(path: str | os.PathLike[str], layout: Literal["openscene", "feature3dgs"],
                  out_dir: str | os.PathLike[str], *, reduced: bool = False, overwrite: bool = False,
                  progress: bool = False) -> Report:
    """``lseg store export`` in Python (:class:`LayoutWriter`)."""
    writer = LayoutWriter(FeatureStore(path), layout, out_dir, reduced)
    return finished(run_job(writer, overwrite=overwrite, progress=progress, desc="export"))
