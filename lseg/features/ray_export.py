"""The store export on Ray Data (``pip install lseg[scale]``; docs/features-3d.md, "Ray Data"): the driver
plans the units and writes the manifest and the index; each unfinished unit is a row that an actor holding
the writer writes with :func:`lseg.jobs.engine.write_unit`, as one process does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lseg.errors import LSegError
from lseg.features.presets import FeatureExtractor
from lseg.features.store import StoreSettings, StoreWriter
from lseg.inference.folder import weights_identity
from lseg.jobs.claims import ClaimSet, hold_recipe
from lseg.jobs.engine import Report, Unit, finish_idle, finished, open_output, pending_units, write_unit
from lseg.jobs.records import digest


class _UnitWorker:
    """A Ray Data actor: one writer (and model), unit ids in, counts out."""

    def __init__(self, writer_ref: Any, recipe: dict[str, Any], device: str | None) -> None:
        import ray

        writer: StoreWriter = ray.get(writer_ref)
        if device is not None and writer.extractor is not None:
            writer.extractor.to(device)
        self.writer, self.recipe = writer, recipe
        self.by_id = {u.data.id: u for u in writer.units()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, written, redone, failed = [], [], [], []
        for unit_id, status in zip(batch["unit"], batch["status"]):
            report = Report()
            unit = self.by_id[int(unit_id)]
            unit.status = str(status)  # as the driver planned it: a "redo" recomputes every shard
            try:
                write_unit(self.writer, unit, None, self.recipe, report)
            except LSegError as e:
                report.failed.append((unit.source, str(e)))
            ids.append(int(unit_id))
            written.append(len(report.written))
            redone.append(len(report.redone))
            failed.append(json.dumps([[str(p), r] for p, r in report.failed]))
        return {"unit": np.array(ids), "written": np.array(written), "redone": np.array(redone),
                "failed": np.array(failed)}


def _run_units(ray: Any, writer: StoreWriter, todo: list[Unit], recipe: dict[str, Any], report: Report,
               num_workers: int, num_gpus_per_worker: float, progress: bool) -> None:
    """Write ``todo`` on an actor pool, counting into ``report``."""
    device = "cuda" if num_gpus_per_worker else None
    if device:
        writer.extractor.to("cpu")  # type: ignore[union-attr]
    changed = {u.data.id: u.changed for u in todo}
    context = ray.data.DataContext.get_current()  # a dataset copies it as it is made
    bars, context.enable_progress_bars = context.enable_progress_bars, progress and context.enable_progress_bars
    try:
        ds = ray.data.from_items([{"unit": u.data.id, "status": u.status} for u in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(
            _UnitWorker, fn_constructor_kwargs={"writer_ref": ray.put(writer), "recipe": recipe, "device": device},
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=num_workers),
            num_cpus=1 if not num_gpus_per_worker else None, num_gpus=num_gpus_per_worker or None,
        )
        for row in ds.iter_rows():
            unit = writer.out / f"unit {int(row['unit'])}"
            report.written += [unit] * int(row["written"])
            report.redone += [unit] * int(row["redone"])
            report.changed |= changed[int(row["unit"])] if row["redone"] else set()
            report.failed += [(Path(p), r) for p, r in json.loads(str(row["failed"]))]
    finally:
        context.enable_progress_bars = bars


def export_store_ray(extractor: FeatureExtractor | Callable[[], FeatureExtractor], inputs: Sequence[str | os.PathLike[str]],
                     out_dir: str | os.PathLike[str], *, num_workers: int = 2, num_gpus_per_worker: float = 0,
                     settings: StoreSettings | None = None, checkpoint: str | None = None,
                     overwrite: bool = False, reduce: int | None = None,
                     model: dict[str, Any] | None = None, address: str | None = None,
                     description: Mapping[str, Any] | None = None, progress: bool = True) -> Report:
    """:func:`lseg.features.store.export_store` with the units spread over ``num_workers`` Ray actors
    (``num_gpus_per_worker`` each; 0: one CPU each); ``model``: what identifies the weights (default:
    config and weights hash); ``address``: the cluster's, if Ray is not initialised yet (unset: a local one);
    ``extractor`` a function building it, as :func:`~lseg.features.store.export_store` takes it; ``progress``:
    Ray Data's progress bars."""
    try:
        import ray
    except ModuleNotFoundError:
        raise LSegError("the Ray export needs Ray Data: pip install 'lseg[scale]'") from None
    if num_workers < 1:
        raise LSegError(f"num_workers must be >= 1, got {num_workers}")
    if not isinstance(extractor, FeatureExtractor) and (description is None or model is None):
        raise TypeError("export_store_ray: a function building the extractor needs description and model")
    out = Path(out_dir).expanduser()
    writer = StoreWriter(inputs, out, description=description or extractor.describe(),  # type: ignore[union-attr]
                         model=model or weights_identity(extractor.model), extractor=extractor,  # type: ignore[union-attr]
                         settings=settings, checkpoint=checkpoint, overwrite=overwrite, reduce=reduce)
    report = Report()
    _, todo, recipe = pending_units(writer, overwrite, report)
    if not todo:
        return finish_idle(writer, report)
    out, created = open_output(out)  # as run_job: checked, a killed run's leftovers removed
    try:
        with ClaimSet() as claims:  # as run_job: a job with other settings is refused while this one writes
            hold_recipe(claims, out, digest(recipe), "write")
            if not ray.is_initialized():
                handler = signal.getsignal(signal.SIGTERM)
                ray.init(address=address)
                # ray.init's own exits (or aborts) at once: SIGTERM stops the job as Ctrl-C does (off the main
                # thread Ray sets none, and none may be set)
                if handler is not None and signal.getsignal(signal.SIGTERM) is not handler:
                    signal.signal(signal.SIGTERM, handler)
            writer.setup()  # as run_job: the model, the manifest, and the index removed until every unit is done again
            _run_units(ray, writer, todo, recipe, report, num_workers, num_gpus_per_worker, progress)
    except KeyboardInterrupt:  # the units finished are kept; the others are written by the next run
        report.interrupted = True
        return finished(report)
    finally:
        if created:  # Ctrl-C or a failure before any output: no empty output folder left
            with contextlib.suppress(OSError):
                os.rmdir(out)
    writer.finish(report)
    return report
