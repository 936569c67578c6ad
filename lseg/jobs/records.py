"""Records: each unit's outputs get a JSON record of the recipe that made them, pending before the
first output and complete after the last (docs/cli.md, "Records and re-runs")."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from lseg.io import atomic_write
from lseg.jobs.inputs import RECORD_KEY, is_complete, read_record

__all__ = [
    "Status", "digest", "input_stamp", "listed_outputs", "model_identity", "plan", "remove_gone", "remove_outputs",
    "write_record",
]

_RECORD_VERSION = 1

Status = Literal["new", "done", "redo"]


def digest(recipe: Mapping[str, Any]) -> str:
    """SHA-256 of a recipe (key order and tuples/lists do not matter)."""
    text = json.dumps(recipe, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()


def model_identity(checkpoint: str | None, random_weights: str | None, seed: int | None = None) -> dict[str, Any]:
    """What identifies a run's weights without loading them: a random model's name and seed, or the
    checkpoint (a local one with its files' sizes and modification times)."""
    if random_weights:
        return {"random_weights": random_weights, "seed": seed}
    ident: dict[str, Any] = {"checkpoint": checkpoint}
    p = Path(checkpoint).expanduser() if checkpoint else None
    if p is not None and p.exists():
        ident["checkpoint"] = str(p.resolve())
        files = [f for f in (sorted(p.iterdir()) if p.is_dir() else [p]) if f.is_file()
                 and f.suffix in (".safetensors", ".json", ".ckpt", ".pt", ".pth", ".bin")]
        ident["files"] = {f.name: stamp for f, stamp in zip(files, input_stamp(files))}
    return ident


def input_stamp(paths: Sequence[Path]) -> list[list[int] | None]:
    """Size and modification time (ns) of each input file (None for one that cannot be read)."""
    stamps: list[list[int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
            stamps.append([st.st_size, st.st_mtime_ns])
        except OSError:
            stamps.append(None)
    return stamps


def listed_outputs(record: Mapping[str, Any], path: Path) -> list[str]:
    """The output names the record read from ``path`` lists, those inside its folder only (no ``..``,
    not the record itself)."""
    names = [n for n in record.get("outputs", ()) if isinstance(n, str)]
    return [n for n in names if n != path.name and ".." not in Path(n).parts and not Path(n).is_absolute()]


def plan(targets: Sequence[Path], record: Path, recipe: Mapping[str, Any], overwrite: bool = False,
         *, stamp: list | None = None) -> tuple[Status, set[str]]:
    """Whether one unit's ``targets`` must be written, and which recipe keys changed: ``done`` (a
    complete record of this recipe and input ``stamp``, every target there), ``redo`` (another recipe,
    a changed input, or ``overwrite``; nothing is deleted: :func:`remove_outputs`) or ``new`` (no
    record, a pending one of this recipe, an output missing, or a record listing failed items)."""
    old = read_record(record)
    if old is None:
        return "new", set()
    same_input = stamp is None or old.get("inputs", stamp) == stamp  # a record without stamps predates them
    if not overwrite and old.get("digest") == digest(recipe) and same_input:
        # a unit some of whose items failed (a store's run of images) is retried, as a failed image is
        done = is_complete(old) and not old.get("failed") and all(map(os.path.exists, targets))
        return ("done" if done else "new"), set()
    old_recipe = old.get("recipe") or {}
    changed = {k for k in set(old_recipe) | set(recipe)
               if json.dumps(old_recipe.get(k), default=str, sort_keys=True)
               != json.dumps(recipe.get(k), default=str, sort_keys=True)} | (set() if same_input else {"input"})
    return "redo", changed or ({"--overwrite"} if overwrite else {"settings"})


def remove_outputs(record: Path) -> None:
    """Delete the outputs the unit's record lists (a unit about to be redone)."""
    old = read_record(record)
    for name in listed_outputs(old, record) if old is not None else ():
        with contextlib.suppress(OSError):
            (record.parent / name).unlink()


def remove_gone(out: Path, kind: str, inside: Path, keep: set[Path]) -> None:
    """Delete the outputs and records of ``kind`` under ``out`` made from a file in ``inside`` but not in
    ``keep``: units their input no longer has (the frames of a store extracted again)."""
    inside = inside.resolve()
    for record in sorted(out.rglob("*.json")) if out.is_dir() else ():
        data = None if record in keep else read_record(record)
        if data and data.get("kind") == kind and Path(str(data.get("source"))).resolve().is_relative_to(inside):
            remove_outputs(record)
            with contextlib.suppress(OSError):  # a read-only folder: kept, as remove_outputs keeps its files
                record.unlink()


def write_record(record: Path, kind: str, source: Path | str, recipe: Mapping[str, Any], outputs: Sequence[Path | str],
                 *, pending: bool = False, extra: Mapping[str, Any] | None = None) -> None:
    """Write the record of one unit's outputs (``pending`` before the first of them). Outputs it
    already lists for this recipe that still exist stay listed (``--scores``, then ``--heatmaps``)."""
    base = record.parent
    names = [Path(o).relative_to(base).as_posix() if Path(o).is_relative_to(base) else str(o) for o in outputs]
    key = digest(recipe)
    old = read_record(record)
    if old is not None and old.get("digest") == key:
        names += [n for n in listed_outputs(old, record) if n not in names and os.path.lexists(base / n)]
    data = {RECORD_KEY: _RECORD_VERSION, "kind": kind, "source": str(source),
            **({"complete": False} if pending else {}), **(extra or {}),
            "outputs": names, "recipe": dict(recipe), "digest": key}
    # a file name that is not valid UTF-8 (surrogates) is written as its JSON escape, not an error
    raw = (json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n").encode("utf-8", "backslashreplace")
    atomic_write(record, lambda p: p.write_bytes(raw))
