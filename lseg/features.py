"""Dense feature export: one ``.npy`` of pixel embeddings per image, resumable and atomic.

Layout of an output folder::

    OUT/features.json              # manifest: model config, dtype, layout (written first)
    OUT/<relative/path/stem>.npy   # (D, h, w) array, L2-normalised CLIP-space pixel embeddings

``h, w`` are half the working resolution (see :class:`lseg.inference.LSegPredictor`: long side
``size``, default 480, so a 640x480 photo gives (512, 180, 240) for the 512-d models). A file
appears only once complete (written to a temporary name, then renamed), so a killed job can be
restarted: finished files are skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lseg.errors import LSegError
from lseg.inference import LSegPredictor
from lseg.io import atomic_write, list_images

_logger = logging.getLogger(__name__)

MANIFEST = "features.json"
DTYPES = {"float16": np.float16, "float32": np.float32}


@dataclass
class BatchReport:
    """What a batch job did: written, skipped (already done) and failed (path, reason)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.written)} written, {len(self.skipped)} already done, {len(self.failed)} failed"


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """Expand files and folders into ``(image path, output stem relative to OUT)`` pairs."""
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            pairs += [(f, f.relative_to(p).with_suffix("")) for f in list_images(p)]
        elif p.exists():
            pairs.append((p, Path(p.stem)))
        else:
            raise LSegError(f"input not found: {p}")
    return pairs


def export_features(
    predictor: LSegPredictor,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    dtype: str = "float16",
    overwrite: bool = False,
    progress: bool = True,
) -> BatchReport:
    """Write the pixel embeddings of every image under ``inputs`` to ``out_dir`` (see module doc).

    A bad image is logged and counted in ``failed``; the others are still processed.
    """
    if dtype not in DTYPES:
        raise LSegError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": "lseg-features",
        "version": 1,
        "layout": "CHW",
        "dtype": dtype,
        "normalized": True,
        "resolution": "half of the working size (long side = size)",
        "size": predictor.size,
        "model": predictor.model.config.to_dict(),
    }
    atomic_write(out / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))
    report = BatchReport()
    pairs = collect_inputs(inputs)
    for src, stem in tqdm(pairs, desc="features", unit="img", disable=not progress):
        target = out / stem.with_suffix(".npy")
        if target.exists() and not overwrite:
            report.skipped.append(target)
            continue
        try:
            emb = predictor.embed_image(src)
        except LSegError as e:
            _logger.warning("skipping %s: %s", src, e)
            report.failed.append((src, str(e)))
            continue
        arr = emb.pixels.cpu().numpy().astype(DTYPES[dtype])
        atomic_write(target, lambda p, a=arr: _save_npy(p, a))
        report.written.append(target)
    return report


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)
