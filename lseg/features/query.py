"""Text queries over a feature store, without the image encoder (docs/features-3d.md, "Queries"):
LSeg's head without its x2 upsampling and spatial block, at the store's resolution; the files per
frame are ``lseg segment``'s, without the overlay."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from lseg.errors import LSegError
from lseg.features.reader import FeatureStore
from lseg.inference.results import segment_files, write_segment_files
from lseg.io import Staged
from lseg.jobs.engine import Report, Unit, Writer
from lseg.jobs.records import remove_gone

__all__ = ["QueryWriter", "parse_frames", "similarity"]

_logger = logging.getLogger(__name__)


def similarity(store: FeatureStore, frame: int, text: torch.Tensor, reduced: bool = False) -> torch.Tensor:
    """(K, H, W) float32 cosine similarities of frame ``frame``'s map (``reduced``: decoded) with the
    (K, D) L2-normalised ``text`` embeddings."""
    f = torch.from_numpy(store.read_decoded(frame) if reduced else store.read(frame)).float()
    if f.shape[0] != text.shape[1]:
        raise LSegError(f"the store's features are {f.shape[0]}-d but the text embeddings {text.shape[1]}-d")
    return torch.einsum("dhw,kd->khw", f, text.float().cpu())


def parse_frames(text: str, store: FeatureStore) -> list[int]:
    """``a:b`` (ids a..b-1) or a comma-separated list of keys and ids -> frame ids (at least one)."""
    n = len(store)
    if ":" in text and "," not in text:
        a, _, b = text.partition(":")
        try:
            ids = list(range(n))[slice(int(a) if a else None, int(b) if b else None)]
        except ValueError:
            raise LSegError(f"--frames must be a:b or a comma-separated list, got {text!r}") from None
        if not ids:
            raise LSegError(f"--frames {text} selects none of the {n} frames of {store.path} (ids 0..{n - 1})")
        return ids
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise LSegError(f"--frames must be a:b or a comma-separated list, got {text!r}")
    keys = {f["key"] for f in store.frames}  # a key of digits (images 0.jpg, 20.jpg) is that key, not an id
    return [store.frame_id(int(t) if t.isdigit() and t not in keys else t) for t in items]


class QueryWriter(Writer):
    """``lseg query`` as a batch writer: a unit per frame."""

    kind = "query"
    unit_name = "frame"

    def __init__(self, store: FeatureStore, labels: Sequence[str], out: str | os.PathLike[str], *,
                 frames: Sequence[int] | None = None, reduced: bool = False, heatmaps: bool = False,
                 scores: bool = False, model: dict[str, Any], templates: Sequence[str] = (),
                 text: Callable[[], tuple[torch.Tensor, float]]) -> None:
        """``model``: what identifies the text encoder's weights; ``text``: a function computing the (K, D)
        text embeddings and the logit scale."""
        if reduced and store.reduction is None:
            raise LSegError(f"{store.path} has no reduction (run `lseg store reduce`)")
        if len(labels) > 65536:
            raise LSegError(f"{len(labels)} labels: label maps are 16-bit PNGs, at most 65536 labels")
        self.store, self.labels, self.out = store, list(labels), Path(out).expanduser()
        self.frames = list(frames) if frames is not None else list(range(len(store)))
        self.reduced, self.heatmaps, self.scores = reduced, heatmaps, scores
        self.model, self.templates, self._text = model, list(templates), text
        self.text: torch.Tensor | None = None
        self.logit_scale = 0.0

    def units(self) -> list[Unit]:
        units = []
        for frame in self.frames:
            info = self.store.frames[frame]
            base = self.out / info["key"]
            files = segment_files(base, self.labels, overlay=False, scores=self.scores, heatmaps=self.heatmaps)
            units.append(Unit(self.store.path.absolute() / info["shard"], list(files.values()),
                              base.with_name(base.name + "_labels.json"), data=(frame, files)))
        return units

    def recipe(self) -> dict[str, Any]:
        return {"labels": self.labels, "templates": self.templates, "reduced": self.reduced, "model": self.model,
                "store": self.store.identity()}

    def setup(self) -> None:
        self.text, self.logit_scale = self._text()
        if len(self.labels) != self.text.shape[0]:
            raise LSegError(f"{len(self.labels)} labels but {self.text.shape[0]} text embeddings")
        if self.store.manifest["model"].get("arch_option") in (1, 2):
            _logger.warning("the store's model has a spatial block; the query scores the plain similarity")

    def compute_one(self, unit: Unit) -> torch.Tensor:
        assert self.text is not None
        return similarity(self.store, unit.data[0], self.text, self.reduced)

    def write(self, unit: Unit, result: torch.Tensor, staged: Staged) -> dict[str, Any]:
        return write_segment_files(unit.data[1], staged, result.argmax(0).numpy(), self.labels,
                                   lambda: torch.softmax(result * self.logit_scale, dim=0).numpy())

    def finish(self, report: Report) -> None:  # the files of frames the store no longer has, selected or not
        keep = {self.out / f"{f['key']}_labels.json" for f in self.store.frames}
        remove_gone(self.out, self.kind, self.store.path, keep)
