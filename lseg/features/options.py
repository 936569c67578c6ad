"""The settings of ``lseg features``, ``lseg query`` and ``lseg store`` (:mod:`lseg.options`); no torch."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Literal

from lseg.inference.options import check_templates, some_scales
from lseg.io.checks import output_folder
from lseg.options import CheckedOptions, OptionError, option

__all__ = [
    "FeaturesOptions", "QueryOptions", "StoreExportOptions", "StoreInfoOptions", "StoreOptions",
    "StoreReduceOptions", "VideoSampling", "parse_resolution", "parse_shard",
]

Resolution = str | tuple[int, int]


def parse_resolution(value: Resolution) -> Resolution:
    """Validate ``half | input | original | HxW | (H, W)``; returns the keyword or ``(H, W)``."""
    if isinstance(value, tuple):
        h, w = value
        if int(h) < 1 or int(w) < 1:
            raise OptionError(f"`resolution` must be positive, got {value}")
        return int(h), int(w)
    text = str(value).strip().lower()
    if text in ("half", "input", "original"):
        return text
    m = re.fullmatch(r"(\d+)\s*x\s*(\d+)", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise OptionError(f"`resolution` must be half, input, original or HxW (e.g. 240x320), got {value!r}")
    return int(m.group(1)), int(m.group(2))


def parse_shard(text: str) -> tuple[int, int]:
    """``"k/M"`` -> ``(k, M)`` with ``0 <= k < M``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise OptionError(f"`shard` must be k/M with 0 <= k < M (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _checked(parse):  # type: ignore[no-untyped-def]
    def check(value):  # type: ignore[no-untyped-def]
        parse(value)
        return value
    return check


class VideoSampling(CheckedOptions):
    """Base of the options with ``fps`` and ``every_n`` fields: at most one of them is given."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fps is not None and self.every_n is not None:  # type: ignore[attr-defined]
            raise OptionError("give `fps` or `every_n` for videos, not both")


@dataclass(frozen=True)
class FeaturesOptions(VideoSampling):
    """What ``lseg features`` writes, from which frames.

    Attributes:
        out: output folder.
        dtype: stored dtype (--format npy).
        resolution: half: the network's output (unset: half, or the store preset's own); input: the working
            size; original: the image's size; HxW: that size (upsampled bilinearly, re-normalised).
        pca: also write <stem>_pca.png, 3 principal components (--format npy).
        fps: videos: sample at most this many frames/s.
        every_n: videos: every n-th frame.
        shard: do only inputs i with i % M == k (split a collection across machines; composes with torchrun).
        overwrite: redo every input, even those already done, and replace files lseg did not write.
        quiet: no progress bar.
    """

    out: str = option(short="-o", required=True, check=output_folder)
    dtype: Literal["float16", "float32"] = "float16"
    resolution: str | None = option(None, metavar="half|input|original|HxW", check=_checked(parse_resolution))
    pca: bool = False
    fps: float | None = option(None, gt=0, exclusive="frames")
    every_n: int | None = option(None, min=1, exclusive="frames")
    shard: str | None = option(None, metavar="k/M", check=_checked(parse_shard))
    overwrite: bool = False
    quiet: bool = option(False, short="-q")


@dataclass(frozen=True)
class StoreOptions(CheckedOptions):
    """How ``lseg features --format store`` extracts and stores (:mod:`lseg.features.store`).

    Attributes:
        format: npy: one .npy per image/frame; store: one self-describing store that `lseg query` reads.
        preset: preprocessing recipe: ours, the reference evaluator (6 scales + flip; -ss: 1 scale), OpenScene's
            or VLMaps' extractor.
        scales: evaluator presets: comma-separated scales (e.g. 0.75,1,1.25,1.75).
        flip: evaluator presets: add the mirrored image's map.
        reduce: also fit a K-d scene PCA over all frames (streaming) and store the reduced maps.
        frames_per_shard: frames per shard file (and images per unit of work).
        engine: ray: spread the units over Ray Data actors (pip install 'lseg[scale]').
        workers: --engine ray: actors (one model each).
        gpus_per_worker: --engine ray: GPUs per actor.
        ray_address: --engine ray: cluster address (unset: a local one).
    """

    format: Literal["npy", "store"] = "npy"
    preset: Literal["ours", "reference", "reference-ss", "openscene", "vlmaps"] = "ours"
    scales: tuple[float, ...] | None = option(None, gt=0, check=some_scales)
    flip: bool | None = None
    reduce: int | None = option(None, min=1, metavar="K")
    frames_per_shard: int = option(16, min=1)
    engine: Literal["local", "ray"] = "local"
    workers: int = option(2, min=1)
    gpus_per_worker: float = option(0.0, min=0)
    ray_address: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        given = [f.name for f in fields(self) if f.name != "format" and getattr(self, f.name) != f.default]
        if self.format == "npy" and given:  # not silently ignored
            raise OptionError(f"{', '.join(f'`{n}`' for n in given)} need{'s' * (len(given) == 1)} `format` store")
        ray = [f"`{n}`" for n in given if n in ("workers", "gpus_per_worker", "ray_address")]
        if self.engine == "local" and ray:
            raise OptionError(f"{', '.join(ray)} need{'s' * (len(ray) == 1)} `engine` ray")
        if self.preset in ("ours", "openscene") and (self.scales or self.flip is not None):
            raise OptionError(f"`scales` and `flip` apply to the evaluator presets, not {self.preset!r}")


@dataclass(frozen=True)
class QueryOptions(CheckedOptions):
    """``lseg query`` (the model: by default the store's).

    Attributes:
        store: a store written by `lseg features --format store`.
        labels: comma-separated labels, e.g. "chair, table, other".
        out: output folder.
        frames: a:b (frame ids) or a comma-separated list of frame keys / ids (a key first) (unset: all).
        reduced: score the reduced maps (decoded to the text space).
        heatmaps: also write one probability heatmap per label.
        scores: also write per-label probabilities (.npz, fp16).
        templates: prompt template with one {} (repeatable: averaged; unset: the raw label).
        overwrite: redo every frame, even those already done, and replace files lseg did not write.
        quiet: no progress bar.
    """

    store: str = option(positional=True)
    labels: str = option(positional=True)
    out: str = option(short="-o", required=True, check=output_folder)
    frames: str | None = None
    reduced: bool = False
    heatmaps: bool = False
    scores: bool = False
    templates: tuple[str, ...] = option((), flag="template", repeat=True, check=check_templates)
    overwrite: bool = False
    quiet: bool = option(False, short="-q")


@dataclass(frozen=True)
class StoreInfoOptions(CheckedOptions):
    """``lseg store info``.

    Attributes:
        store: the feature store.
    """

    store: str = option(positional=True)


@dataclass(frozen=True)
class StoreReduceOptions(CheckedOptions):
    """``lseg store reduce``.

    Attributes:
        store: the feature store.
        k: the reduced dimension (scene PCA components), 1 to the features' dimension.
        overwrite: replace a reduction of another K.
        quiet: no progress bar.
    """

    store: str = option(positional=True)
    k: int = option(positional=True, min=1)
    overwrite: bool = False
    quiet: bool = option(False, short="-q")


@dataclass(frozen=True)
class StoreExportOptions(CheckedOptions):
    """``lseg store export``.

    Attributes:
        store: the feature store.
        layout: the per-image layout written: openscene (<key>.pt) or feature3dgs (<key>_fmap_CxHxW.pt).
        out: output folder (not inside the store).
        reduced: the reduced maps instead of the full ones.
        overwrite: redo every frame, and replace files lseg did not write.
        quiet: no progress bar.
    """

    store: str = option(positional=True)
    layout: Literal["openscene", "feature3dgs"] = option(required=True)
    out: str = option(short="-o", required=True, check=output_folder)
    reduced: bool = False
    overwrite: bool = False
    quiet: bool = option(False, short="-q")
