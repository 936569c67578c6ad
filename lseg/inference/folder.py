"""``lseg segment`` as a batch writer (:class:`SegmentWriter`), and :func:`segment_folder`, the same
in Python; the files it writes are listed in docs/cli.md."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lseg.errors import LSegError
from lseg.inference.options import PredictorOptions, SegmentOptions
from lseg.inference.results import segment_files, write_segment_files
from lseg.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Staged, load_image
from lseg.jobs.engine import Report, Unit, Writer, finished, run_job
from lseg.jobs.inputs import check_unique, collect
from lseg.jobs.records import model_identity
from lseg.labels import parse_labels

if TYPE_CHECKING:
    from lseg.inference.predictor import LSegPredictor

__all__ = ["SegmentWriter", "model_identity", "segment_folder", "weights_identity", "weights_sha256"]


class SegmentWriter(Writer):
    """``lseg segment`` as a batch writer: a unit per image."""

    kind = "segment"

    def __init__(self, inputs: Sequence[str | os.PathLike[str]], labels: Sequence[str], options: SegmentOptions,
                 predictor_options: PredictorOptions, precision: str, model: dict[str, Any],
                 make_predictor: Callable[[], LSegPredictor]) -> None:
        """``precision``: the image path's, resolved; ``model``: what identifies the weights."""
        self.inputs, self.labels, self.options = list(inputs), list(labels), options
        self.out = Path(options.out).expanduser()
        self.predictor_options, self.precision, self.model = predictor_options, precision, model
        self._make_predictor = make_predictor
        self.predictor: LSegPredictor | None = None
        if len(self.labels) > 65536:
            raise LSegError(f"{len(self.labels)} labels: label maps are 16-bit PNGs, at most 65536 labels")

    def units(self) -> list[Unit]:
        for item in self.inputs:
            if Path(item).suffix.lower() in VIDEO_EXTENSIONS and Path(item).is_file():
                raise LSegError(f"{item} is a video; `lseg segment` takes images. For per-frame features use "
                                f"`lseg features {item} -o OUT`; to segment its frames, extract them first "
                                f"as lseg features numbers them (ffmpeg -i {item} -fps_mode passthrough -start_number 0 "
                                f"{Path(item).stem}/%06d.png) and segment that folder")
        pairs = collect(self.inputs, IMAGE_EXTENSIONS, out=self.out)
        check_unique(pairs, "_labels.png")
        o = self.options
        units = []
        for src, stem in pairs:
            base = self.out / stem
            files = segment_files(base, self.labels, scores=o.scores, heatmaps=o.heatmaps)
            units.append(Unit(src, list(files.values()), base.with_name(base.name + "_labels.json"), data=files))
        return units

    def recipe(self) -> dict[str, Any]:
        p, ms = self.predictor_options, self.options.multiscale
        geometry = {} if ms else {"size": p.size, "crop_size": p.crop_size, "stride": p.window_stride}  # ms: its own
        return {"labels": self.labels, "templates": list(p.templates), **geometry, "precision": self.precision,
                "multiscale": ms, "alpha": self.options.alpha, "legend": self.options.legend, "model": self.model}

    def setup(self) -> None:
        self.predictor = self._make_predictor()

    def compute_one(self, unit: Unit) -> Any:  # the reference evaluator: one image at a time
        assert self.predictor is not None
        return self.predictor.segment(load_image(unit.source), self.labels, multiscale=True)

    def compute(self, units: Iterator[Unit]) -> Iterator[tuple[Unit, Any]]:
        from lseg.inference.loader import prepared_batches

        if self.options.multiscale:
            yield from super().compute(units)
            return
        predictor = self.predictor
        assert predictor is not None
        for batch in prepared_batches(predictor, units):
            good = [image for _, image in batch if not isinstance(image, LSegError)]
            results = iter(predictor.segment_batch(good, self.labels, errors="return") if good else ())
            for unit, image in batch:  # segment_batch keeps the order
                yield unit, image if isinstance(image, LSegError) else next(results)

    def write(self, unit: Unit, result: Any, staged: Staged) -> dict[str, Any]:
        with warnings.catch_warnings():  # a second read of the file: its warnings were shown by the first
            warnings.simplefilter("ignore")
            image = load_image(unit.source)  # full resolution for the overlay (the loader kept the resized copy)
        return write_segment_files(unit.data, staged, result.label_map, result.labels, lambda: result.probs, image,
                                   alpha=self.options.alpha, legend=self.options.legend)


def segment_folder(predictor: LSegPredictor,
                   inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                   labels: str | Sequence[str], options: SegmentOptions | None = None) -> Report:
    """``lseg segment`` in Python: every image under ``inputs`` (files and folders) into ``options.out``;
    returns the :class:`~lseg.jobs.engine.Report`, where a failed image is listed, not raised."""
    options = options or SegmentOptions()
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    writer = SegmentWriter(items, parse_labels(labels), options, predictor.options, predictor.precision,
                           weights_identity(predictor.model), lambda: predictor)
    return finished(run_job(writer, overwrite=options.overwrite, progress=not options.quiet))


def weights_sha256(model: Any) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes, bytes): which weights made outputs."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().reshape(-1).contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_identity(model: Any) -> dict[str, Any]:
    """What identifies a built model in records: its config and :func:`weights_sha256`."""
    return {"config": model.config.to_dict(), "weights_sha256": weights_sha256(model)}

