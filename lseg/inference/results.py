"""The predictor's result types and the files of one segmentation (docs/python-api.md, "Results")."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lseg.geometry import resize
from lseg.io import Staged
from lseg.labels import label_index


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A result tensor as a numpy array (the one place results cross to the host)."""
    return t.cpu().numpy()


@dataclass
class ImageEmbedding:
    """Pixel embeddings of one image, reusable for any number of label sets: ``pixels`` (D, h', w')
    float32, L2-normalised (averaged where sliding windows overlap: slightly shorter) at half the
    working size ``input_size``, on the model's device; ``image_size``: the original (H, W)."""

    pixels: torch.Tensor
    input_size: tuple[int, int]
    image_size: tuple[int, int]

    def __repr__(self) -> str:  # the shape, not the tensor's values
        p = self.pixels
        return (f"ImageEmbedding(pixels=<{tuple(p.shape)} {str(p.dtype).replace('torch.', '')} on {p.device}>, "
                f"input_size={self.input_size}, image_size={self.image_size})")


@dataclass
class PreparedImage:
    """An image decoded and resized to the working size: ``pixels`` (3, h, w) float32 RGB in [0, 1];
    ``image_size``: the original (H, W)."""

    pixels: torch.Tensor
    image_size: tuple[int, int]


@dataclass
class SegmentationResult:
    """Output of :meth:`LSegPredictor.segment`, numpy arrays (docs/python-api.md, "Results"); ``image``:
    the input as given, for :meth:`overlay` and :meth:`save` (``None`` from an :class:`ImageEmbedding`)."""

    labels: list[str]
    label_map: np.ndarray
    image_size: tuple[int, int]
    embeddings: np.ndarray | None = field(default=None, repr=False)
    # The logits, or (many labels) a function that computes them on first access.
    _logits: torch.Tensor | Callable[[], torch.Tensor] | None = field(default=None, repr=False)
    image: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        h, w = self.image_size
        top = sorted(self.scores().items(), key=lambda kv: -kv[1])[:5]
        shares = ", ".join(f"{lb!r}: {v:.0%}" for lb, v in top)
        return f"SegmentationResult({len(self.labels)} labels, {w}x{h}, {{{shares}{', ...' if len(self.labels) > 5 else ''}}})"

    def __getstate__(self) -> dict[str, Any]:  # pickled (deep-copied) with its logits, not the predictor
        self._logits_tensor()
        return self.__dict__

    def _logits_tensor(self) -> torch.Tensor:
        if callable(self._logits):  # the many-labels case: computed on first access
            self._logits = self._logits()
        assert self._logits is not None
        return self._logits

    @property
    def logits(self) -> np.ndarray:
        """(K, h, w) float32 scaled cosine similarities at the working size (with more labels than the
        predictor's ``label_chunk_size``, computed on first access)."""
        return to_numpy(self._logits_tensor())

    @property
    def probs(self) -> np.ndarray:
        """(K, H, W) float32 softmax over the labels at the original size, computed on access."""
        return self.probs_at(self.image_size)

    def probs_at(self, size: tuple[int, int]) -> np.ndarray:
        """(K, size[0], size[1]) float32 per-label probabilities."""
        if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(isinstance(v, (int, np.integer))
                                                                            for v in size):
            raise TypeError(f"probs_at: size is (height, width), two ints; got {size!r}")
        if min(size) < 1:
            raise ValueError(f"probs_at: size must be at least (1, 1), got {tuple(size)}")
        logits = resize(self._logits_tensor()[None], size)[0]
        return to_numpy(torch.softmax(logits, dim=0))

    def scores(self) -> dict[str, float]:
        """Fraction of pixels assigned to each label."""
        counts = np.bincount(self.label_map.ravel(), minlength=len(self.labels))
        total = max(1, self.label_map.size)
        return {label: float(c) / total for label, c in zip(self.labels, counts)}

    def mask(self, label: str | int) -> np.ndarray:
        """(H, W) bool: the pixels assigned to ``label`` (its name, or its index)."""
        return self.label_map == label_index(self.labels, label)

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """``{label: (H, W) bool mask}`` for every label, in label order."""
        return {lb: self.label_map == i for i, lb in enumerate(self.labels)}

    def overlay(self, image: Any = None, *, alpha: float = 0.5, legend: bool = True) -> Any:
        """The photo with each label's colour and a legend (:func:`lseg.viz.overlay`), as a PIL image."""
        from lseg.viz import overlay

        image = self.image if image is None else image
        if image is None:
            raise ValueError("this result was made from an ImageEmbedding: pass the image, e.g. result.overlay(image)")
        return overlay(image, self.label_map, self.labels, alpha=alpha, legend=legend)

    def save(self, folder: str | os.PathLike[str], stem: str | None = None, *, image: Any = None,
             alpha: float = 0.5, scores: bool = False, overwrite: bool = False) -> dict[str, Path]:
        """Write what ``lseg segment`` writes into ``folder`` (the overlay when the image is known, scores
        with ``scores``) with its record, as ``stem`` (default the image file's, else ``"image"``);
        returns ``{kind: path}``. Another image's files, and files no lseg record lists, are replaced
        only with ``overwrite``; the files the old record lists that this save does not write are removed."""
        from lseg.errors import LSegError
        from lseg.jobs.inputs import read_record, recorded_outputs
        from lseg.jobs.records import listed_outputs, write_record

        source = self.image if image is None else image
        named = isinstance(source, (str, os.PathLike))
        if stem is None:
            stem = Path(source).stem if named else "image"
        if not stem:
            raise LSegError("save(): stem is empty; give the files a name, e.g. save(folder, stem='photo')")
        out = Path(folder).expanduser()
        if out.exists() and not out.is_dir():
            raise LSegError(f"{out} is a file, not a folder: save() takes the output folder, e.g. "
                            f"result.save('{out.parent / 'out'}/')")
        record = out / f"{stem}_labels.json"
        old = read_record(record)
        origin = str(Path(source).expanduser().resolve()) if named else "<in-memory image>"
        # the same image: ``lseg segment`` records its path as given, relative to the folder it ran in (this one)
        theirs = old.get("source") if old else None
        same = named and isinstance(theirs, str) and str(Path(theirs).expanduser().resolve()) == origin
        if not overwrite and record.exists() and not same:
            raise LSegError(f"{record} is already there (saved from {old.get('source') if old else 'another file'}): "
                            "give this image its own stem (save(folder, stem='...')) or overwrite=True")
        files = segment_files(out / stem, self.labels, overlay=source is not None, scores=scores)
        own = set(listed_outputs(old, record)) if old else set()
        there = [f for f in files.values() if f.name not in own and os.path.lexists(f)]
        # the folder's other records are read only then: saving many images into one folder stays linear
        listed = recorded_outputs(out, os.listdir(out)) if there else set()
        foreign = [f for f in there if f.name not in listed]
        if foreign and not overwrite:
            raise LSegError(f"{foreign[0]} exists and is not an lseg output (no record lists it): move it, "
                            "give this image another stem (save(folder, stem='...')) or overwrite=True")
        stale = sorted(own - {f.name for f in files.values()})
        recipe = {"saved_by": "SegmentationResult.save", "alpha": alpha, "labels": list(self.labels)}
        staged = Staged()
        try:
            extra = write_segment_files(files, staged, self.label_map, self.labels, lambda: self.probs, source,
                                        alpha=alpha)
            # listed before they appear, the old ones too until they are gone: no file without a record
            write_record(record, "segment", origin, recipe, [*files.values(), *stale], pending=True)
            staged.commit()
        except BaseException:
            staged.discard()
            raise
        for name in stale:  # the old recipe's files this one does not make (heatmaps, scores of other labels)
            with contextlib.suppress(OSError):
                (out / name).unlink()
        write_record(record, "segment", origin, recipe, list(files.values()), extra=extra)
        return {**files, "json": record}


def segment_files(base: Path, labels: Sequence[str], *, overlay: bool = True, scores: bool = False,
                  heatmaps: bool = False) -> dict[str, Path]:
    """The files of one image ``base`` (``out/<stem>``): ``{"labels", "overlay", "scores", "heat:<i>"}`` -> path."""
    from lseg.viz import heatmap_path

    kinds = {"labels": ".png", "overlay": overlay and ".png", "scores": scores and ".npz"}
    files = {kind: base.with_name(f"{base.name}_{kind}{ext}") for kind, ext in kinds.items() if ext}
    if heatmaps:
        files.update({f"heat:{i}": heatmap_path(base, i, lb, len(labels)) for i, lb in enumerate(labels)})
    return files


def write_segment_files(files: dict[str, Path], staged: Staged, label_map: np.ndarray, labels: list[str],
                        probs: Callable[[], np.ndarray], image: Any = None, *, alpha: float = 0.5,
                        legend: bool = True) -> dict[str, Any]:
    """Write ``files`` (:func:`segment_files`) of one label map through ``staged``; ``probs()`` is called
    only for scores and heatmaps; the overlay and heatmaps are drawn over ``image``. Returns the
    record's extra fields."""
    from lseg.viz import heatmaps as make_heatmaps
    from lseg.viz import hex_colors, overlay, save_label_map, save_scores

    staged.write(files["labels"], lambda p: save_label_map(p, label_map, labels))
    heat = [k for k in files if k.startswith("heat:")]
    if "scores" in files or heat:
        prob = probs()
        if "scores" in files:
            staged.write(files["scores"], lambda p: save_scores(p, prob, labels))
        pictures = make_heatmaps(prob, labels, image, annotate=image is not None).values() if heat else ()
        for key, pic in zip(heat, pictures):
            staged.write(files[key], lambda p, pic=pic: pic.save(p, format="PNG"))
    if "overlay" in files:
        picture = overlay(image, label_map, labels, alpha=alpha, legend=legend)
        staged.write(files["overlay"], lambda p: picture.save(p, format="PNG"))
    shares = np.bincount(label_map.ravel(), minlength=len(labels)) / max(1, label_map.size)
    return {"labels": labels, "colors": hex_colors(min(len(labels), 65536)),
            "shares": dict(zip(labels, shares.tolist()))}
