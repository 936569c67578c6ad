"""Reading a feature store (:mod:`lseg.features.store` writes it) one frame at a time."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lseg.errors import LSegError
from lseg.features.reduce import Reduction
from lseg.jobs.inputs import is_complete, read_record
from lseg.jobs.records import digest

__all__ = ["FORMAT", "PROJECTION", "REDUCTION_DIR", "STORE_INDEX", "STORE_MANIFEST", "VERSION", "FeatureStore",
           "unit_done", "unit_record"]

FORMAT = "lseg-feature-store"
VERSION = 1
STORE_MANIFEST = "store.json"
STORE_INDEX = "index.json"
REDUCTION_DIR = "reduction"
PROJECTION = "projection.safetensors"


def unit_record(store: Path, unit_id: int) -> Path:
    return store / "shards" / f"u{int(unit_id):06d}.json"


def unit_done(manifest: dict[str, Any], record: dict | None) -> bool:
    """Whether a unit's record is complete and of the store's recipe (not of a part run with other settings)."""
    return is_complete(record) and manifest.get("recipe") in (None, record.get("digest"))  # type: ignore[union-attr]


class FeatureStore:
    """Read a store frame by frame (only the requested frame's bytes); ``frames``: the index's frame
    records (id, key, source, frame, time, image_size, shape, shard)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        try:
            self.manifest: dict[str, Any] = json.loads((self.path / STORE_MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LSegError(f"{self.path} is not a feature store (no readable {STORE_MANIFEST}): {e}") from None
        if self.manifest.get("format") != FORMAT:
            raise LSegError(f"{self.path}/{STORE_MANIFEST} is not an {FORMAT} manifest")
        index = self.path / STORE_INDEX
        if not index.is_file():
            done = sum(unit_done(self.manifest, read_record(unit_record(self.path, u["id"])))
                       for u in self.manifest["units"])
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

        if reduced and not self.index.get("reduction"):
            raise LSegError(f"{self.path} has no reduction (run `lseg store reduce`)")
        info = self.frames[self.frame_id(frame)]
        shard = self.path / (f"{REDUCTION_DIR}/{info['shard']}" if reduced else info["shard"])
        try:
            with safe_open(str(shard), framework="np") as f:
                return f.get_tensor(info["key"])
        except FileNotFoundError:
            raise LSegError(f"{shard} is missing: the store is damaged; re-run the command that wrote it"
                            ) from None

    def read_decoded(self, frame: int | str) -> np.ndarray:
        """A reduced frame decoded back to the text space: (D, H, W) float32, re-normalised."""
        z = torch.from_numpy(self.read(frame, reduced=True)).float()  # refuses a store without a reduction
        assert self.reduction is not None
        return torch.nn.functional.normalize(self.reduction.decode(z), dim=0).numpy()

    @cached_property
    def reduction(self) -> Reduction | None:
        if not self.index.get("reduction"):
            return None
        return Reduction.load(self.path / REDUCTION_DIR / PROJECTION)

    def shards(self) -> list[str]:
        return list(dict.fromkeys(f["shard"] for f in self.frames))

    def identity(self) -> dict[str, Any]:
        """What identifies the store's content: its weights, extraction recipe, frames and reduction."""
        frames = digest({"frames": self.frames})
        return {"weights_sha256": self.manifest.get("weights_sha256"), "recipe": self.manifest.get("recipe"),
                "frames": frames,
                "reduction": (self.index.get("reduction") or {}).get("k")}
