"""The store export on Ray Data, for collections that outgrow one machine (``pip install lseg[scale]``).

Pipeline: the driver plans the units (:func:`lseg.features.store.plan_units`: a video, or a run of
images) and writes the manifest; ``ray.data.from_items`` makes one row per unfinished unit;
``map_batches`` hands each row to one of ``num_workers`` actors (:class:`_UnitWorker`), each of
which holds one copy of the model (put once in the object store; moved to its GPU with
``num_gpus_per_worker``), reads the unit's files itself (images, or a video decoded with PyAV:
frames never travel through the object store, only file names and frame records do), runs the
model on batches of ``batch_size`` frames and writes the unit's shards and record into the store
(a filesystem every worker sees) with :func:`lseg.features.store.process_unit`, the function a
single process uses. The shard layout depends only on the inputs, so the store equals the
single-process one. The driver then writes the index (and the reduction, if asked).

For a few GPUs on one machine, ``torchrun -m lseg.cli features --format store`` is simpler.
The caller connects to a cluster (``ray.init(address=...)``); without one, Ray Data starts a
local one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lseg.errors import LSegError
from lseg.features.export import BatchReport
from lseg.features.presets import FeatureExtractor
from lseg.features.store import (
    StoreSettings,
    Unit,
    build_manifest,
    finalize_store,
    plan_units,
    prepare_store,
    process_unit,
    reduce_store,
    unit_done,
)


class _UnitWorker:
    """A Ray Data actor: one model, units in, unit records out."""

    def __init__(self, extractor_ref: Any, out: str, settings: StoreSettings, overwrite: bool,
                 device: str | None) -> None:
        import ray

        extractor: FeatureExtractor = ray.get(extractor_ref)
        if device is not None:
            extractor.to(device)
        self.extractor, self.out, self.settings, self.overwrite = extractor, Path(out), settings, overwrite

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, written, failed = [], [], []
        for text in batch["unit"]:
            unit = Unit.from_dict(json.loads(str(text)))
            report = BatchReport()
            process_unit(self.extractor, self.out, unit, self.settings, self.overwrite, report)
            ids.append(unit.id)
            written.append(len(report.written))
            failed.append(json.dumps([[str(p), r] for p, r in report.failed]))
        return {"unit": np.array(ids), "written": np.array(written), "failed": np.array(failed)}


def export_store_ray(
    extractor: FeatureExtractor,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    num_workers: int = 2,
    num_gpus_per_worker: float = 0,
    settings: StoreSettings | None = None,
    checkpoint: str | None = None,
    overwrite: bool = False,
    reduce: int | None = None,
) -> BatchReport:
    """:func:`lseg.features.store.export_store` with the units spread over Ray actors (module doc).

    Args:
        num_workers: actors (one model each).
        num_gpus_per_worker: GPUs per actor (0: CPU actors, one CPU each). With GPUs, the
            extractor's model is moved to the CPU to be shipped (each actor moves its copy to its GPU).
    """
    try:
        import ray
    except ModuleNotFoundError:
        raise LSegError("the Ray export needs Ray Data: pip install 'lseg[scale]'") from None
    if num_workers < 1:
        raise LSegError(f"num_workers must be >= 1, got {num_workers}")
    out = Path(out_dir)
    settings = settings or StoreSettings()
    units = plan_units(inputs, settings.frames_per_shard)
    prepare_store(out, build_manifest(extractor, units, settings, checkpoint), overwrite, write=True)
    todo = [u for u in units if overwrite or not unit_done(out, u)]
    report = BatchReport()
    if todo:
        device = "cuda" if num_gpus_per_worker else None
        ref = ray.put(extractor.to("cpu") if device else extractor)
        ds = ray.data.from_items([{"unit": json.dumps(u.to_dict())} for u in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(
            _UnitWorker,
            fn_constructor_kwargs={"extractor_ref": ref, "out": str(out), "settings": settings,
                                   "overwrite": overwrite, "device": device},
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=num_workers),
            num_cpus=1 if not num_gpus_per_worker else None, num_gpus=num_gpus_per_worker or None,
        )
        for row in ds.iter_rows():
            report.written += [out / f"unit {int(row['unit'])}"] * int(row["written"])
            report.failed += [(Path(p), r) for p, r in json.loads(str(row["failed"]))]
    report.skipped += [out / f"unit {u.id}" for u in units if u not in todo]
    if finalize_store(out) and reduce:
        reduce_store(out, reduce)
    return report
