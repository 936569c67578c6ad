"""What ``lseg segment`` and ``lseg features`` share as batch jobs over files and folders.

* **Inputs** (:func:`collect_inputs`, :func:`walk`): files under the given folders, never the job's
  own output tree (an ``--out`` inside an input folder) nor files an earlier lseg run recorded as its
  outputs, so re-running a job never reads its results back as inputs.
* **Collisions** (:func:`check_unique_outputs`, :func:`check_outputs`): two inputs that would write
  the same output (``a.jpg`` and ``a.png`` in one folder), an output that is an input of the same
  run, an image output inside the folder a video writes its frames to, and an existing file no lseg
  record lists (the user's own ``a_labels.png``) are refused before any work, every clash listed.
* **Recipes** (:func:`plan`, :func:`write_record`): each input's outputs get a JSON record of what
  made them, written atomically twice: *pending* before the first output (so a killed run's files
  are still known as lseg's, never mistaken for the user's) and complete after the last: the settings that change their content (labels, templates,
  size, precision, model identity, ...) and the files written. A re-run skips an input whose record
  has the same recipe and whose files all exist, and redoes it when the recipe changed (removing the
  outputs of the old recipe that the new one does not write), so a folder never mixes settings.
* **Report** (:class:`BatchReport`): ``N written (R redone: labels changed), M already done, F failed``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lseg.errors import LSegError

__all__ = [
    "RECORD_KEY",
    "BatchReport",
    "check_outputs",
    "check_unique_outputs",
    "collect_inputs",
    "model_identity",
    "plan",
    "walk",
    "write_record",
]

#: Key that marks a JSON file as an lseg output record (its value: the record format version).
RECORD_KEY = "lseg_record"
_RECORD_VERSION = 1
#: Records larger than this are not lseg's (never parsed while walking inputs).
_MAX_RECORD_BYTES = 1 << 22

Status = Literal["new", "done", "redo"]


@dataclass
class BatchReport:
    """What a batch job did: written (``redone``: of those, the ones whose recipe changed), skipped
    (already done with the same recipe), failed (path, reason), left to other workers (``others``:
    claimed by a live job on the same output folder, :mod:`lseg.claims`), and why it stopped early
    (``stopped``: a full disk, a read-only file system), if it did."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    redone: list[Path] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)  # recipe keys that differed, for the summary
    others: list[Path] = field(default_factory=list)
    stopped: str | None = None

    def summary(self) -> str:
        redo = ""
        if self.redone:
            why = ", ".join(sorted(self.changed)) or "settings"
            redo = f" ({len(self.redone)} redone: {why} changed)"
        text = f"{len(self.written)} written{redo}, {len(self.skipped)} already done, {len(self.failed)} failed"
        if self.others:
            text += f", {len(self.others)} left to other workers"
        return text + ("; stopped early" if self.stopped else "")  # the reason is its failed file's


# ---------------------------------------------------------------------------- inputs

def _resolved(p: Path) -> Path:
    with contextlib.suppress(OSError):
        return p.resolve()
    return p.absolute()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def recorded_outputs(folder: Path, filenames: Iterable[str]) -> set[str]:
    """Names of the files in ``folder`` that lseg records (among ``filenames``) list as outputs,
    the records themselves included."""
    out: set[str] = set()
    for fn in filenames:
        if not fn.endswith(".json"):
            continue
        path = folder / fn
        try:
            if path.stat().st_size > _MAX_RECORD_BYTES:
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and RECORD_KEY in data:
            out.add(fn)
            out.update(str(o) for o in data.get("outputs", ()) if isinstance(o, str))
    return out


def walk(root: Path, suffixes: Iterable[str], exclude: Path | None = None) -> list[Path]:
    """Files under ``root`` with one of ``suffixes`` (lower case, with the dot), sorted by path
    components, as :func:`lseg.io.walk_files` lists them (symlinked folders followed without loops,
    an unreadable folder an error, FIFOs and other special files listed so that they fail as
    inputs); hidden files and folders, the folder ``exclude`` (a job's output) and recorded lseg
    outputs are left out."""
    from lseg.io import walk_files

    wanted = {s.lower() for s in suffixes}
    files = walk_files(root, exclude=exclude)
    names: dict[Path, list[str]] = {}
    for f in files:
        names.setdefault(f.parent, []).append(f.name)
    outputs = {folder: recorded_outputs(folder, fns) for folder, fns in names.items()}
    found = [f for f in files if f.suffix.lower() in wanted and f.name not in outputs[f.parent]]
    return sorted(found, key=lambda q: q.relative_to(root).parts)


def collect_inputs(
    inputs: Sequence[str | os.PathLike[str]], suffixes: Iterable[str], out: str | os.PathLike[str] | None = None,
) -> list[tuple[Path, Path]]:
    """Expand files and folders into ``(file, output stem relative to OUT)`` pairs.

    A folder contributes its files with ``suffixes`` (stem: the path inside the folder), never those
    under ``out`` or recorded as lseg outputs (:func:`walk`); a file is taken as given (stem: its
    name), unless it is a recorded lseg output.

    Raises:
        LSegError: an input does not exist.
    """
    suffixes = tuple(suffixes)
    exclude = Path(out) if out is not None else None
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            pairs += [(f, f.relative_to(p).with_suffix("")) for f in walk(p, suffixes, exclude)]
        elif p.exists():  # a FIFO or device too: the loader refuses it (without blocking), as a failed input
            if p.is_file() and p.name in recorded_outputs(p.parent, os.listdir(p.parent)):
                raise LSegError(f"{p} is an output of an earlier lseg run (see the .json record next to it), "
                                "not an input; pass the original image")
            pairs.append((p, Path(p.stem)))
        else:
            raise LSegError(f"input not found: {p}")
    return pairs


def check_unique_outputs(pairs: Iterable[tuple[Path, Path]], suffix: str) -> None:
    """Refuse inputs whose outputs would share a name (``a.jpg`` and ``a.png`` in one folder: one
    would overwrite the other), listing every clash before any work is done."""
    by_stem: dict[Path, list[Path]] = {}
    for src, stem in pairs:
        sources = by_stem.setdefault(stem, [])
        if src not in sources:
            sources.append(src)
    clashes = [(stem, srcs) for stem, srcs in by_stem.items() if len(srcs) > 1]
    if not clashes:
        return
    shown = "; ".join(f"{' and '.join(str(s) for s in srcs)} would all write {stem}{suffix}"
                      if len(srcs) > 2 else f"{srcs[0]} and {srcs[1]} would both write {stem}{suffix}"
                      for stem, srcs in clashes[:20])
    more = f"; and {len(clashes) - 20} more" if len(clashes) > 20 else ""
    raise LSegError(f"{len(clashes)} output name clash{'es' if len(clashes) > 1 else ''}: {shown}{more}; "
                    "rename the files or process them into different --out folders")


def _lseg_folder(folder: Path, index: str) -> bool:
    """Whether ``folder`` (a video's frame folder) belongs to lseg: its ``index`` is an lseg record."""
    return _read_record(folder / index) is not None


def check_outputs(
    jobs: Sequence[tuple[Path, Sequence[Path]]],
    folders: Sequence[tuple[Path, Path]] = (),
    *,
    index: str = "frames.json",
    overwrite: bool = False,
) -> None:
    """Refuse, before any work and all at once, outputs that would destroy data.

    Args:
        jobs: ``(input, files it writes)``, its record included.
        folders: ``(input, folder it writes into)``: a video's frame folder, whose files are only
            known while decoding; the folder is lseg's once its ``index`` record exists.
        overwrite: accept replacing existing files that no lseg record lists.

    Raises:
        LSegError: an output is also an input of this run; an output lies in a folder another input
            writes its frames to; an existing output (or a file in a frame folder) is not an lseg
            output (no record lists it) and ``overwrite`` is off.
    """
    inputs = {_resolved(src): src for src, _ in jobs} | {_resolved(src): src for src, _ in folders}
    owned = [(_resolved(folder), folder, src) for src, folder in folders]
    problems: list[str] = []
    foreign = False  # existing files of the user's: --overwrite may replace them
    recorded: dict[Path, set[str]] = {}

    def is_recorded(target: Path) -> bool:
        folder = target.parent
        if folder not in recorded:
            try:
                recorded[folder] = recorded_outputs(folder, os.listdir(folder))
            except OSError:
                recorded[folder] = set()
        return target.name in recorded[folder]

    for src, targets in jobs:
        for target in targets:
            real = _resolved(target)
            if real in inputs and inputs[real] != src:
                problems.append(f"{inputs[real]} is an input and also an output of {src}")
                continue
            inside = next(((f, owner) for r, f, owner in owned if owner != src and _inside(real, r)), None)
            if inside is not None:
                problems.append(f"{src} would write {target.name} into {inside[0]}, where the video "
                                f"{inside[1]} writes its frames")
                break  # one line per input
            if not overwrite and os.path.lexists(target) and not is_recorded(target):
                problems.append(f"{target} exists and is not an lseg output (no record lists it)")
                foreign = True
    for src, folder in folders:
        if overwrite or not folder.is_dir() or _lseg_folder(folder, index):
            continue
        with contextlib.suppress(OSError):
            theirs = sorted(n for n in os.listdir(folder) if not n.startswith("."))
            if theirs:
                foreign = True
                problems.append(f"{folder} (the frame folder of {src}) already holds files lseg did not "
                                f"write ({', '.join(theirs[:3])}{', ...' if len(theirs) > 3 else ''})")
    if not problems:
        return
    shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
    hint = "; move those files or choose another --out folder" + (
        " (or pass --overwrite to replace the files lseg did not write)" if foreign else "")
    raise LSegError(f"{len(problems)} output clash{'es' if len(problems) > 1 else ''}, nothing was written: "
                    f"{shown}{hint}")


# ---------------------------------------------------------------------------- recipes

def model_identity(checkpoint: str | None, random_weights: str | None, seed: int | None = None) -> dict[str, Any]:
    """What identifies the weights of a run without loading them: a random model's name and seed,
    or the checkpoint argument with the size and modification time of its files when it is a
    local path (a released name or Hub id is its name)."""
    if random_weights:
        return {"random_weights": random_weights, "seed": seed}
    ident: dict[str, Any] = {"checkpoint": checkpoint}
    p = Path(checkpoint).expanduser() if checkpoint else None
    if p is not None and p.exists():
        ident["checkpoint"] = str(_resolved(p))
        files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
        ident["files"] = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files
                          if f.suffix in (".safetensors", ".json", ".ckpt", ".pt", ".pth", ".bin")}
    return ident


def _digest(recipe: Mapping[str, Any]) -> str:
    text = json.dumps(recipe, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and RECORD_KEY in data else None


def _listed_outputs(old: Mapping[str, Any], record: Path) -> list[str]:
    """The output names a record lists that may be touched: plain names next to it (a record read
    from disk is not trusted with paths), never the record itself."""
    return [n for n in old.get("outputs", ()) if isinstance(n, str) and "/" not in n and n != record.name]


def plan(targets: Sequence[Path], record: Path, recipe: Mapping[str, Any], report: BatchReport,
         overwrite: bool = False) -> Status:
    """Whether the outputs ``targets`` of one input (recorded in ``record``) must be written.

    ``done``: the record has this recipe and every target exists (skip; counted in ``report``).
    ``redo``: the outputs were made with another recipe (or ``overwrite``): the old record's outputs
    that the new recipe does not write are deleted now, so nothing stale stays next to the new ones.
    ``new``: no record yet, a pending record of this recipe (a killed run's), or the same recipe
    with an output missing.
    """
    old = _read_record(record)
    if old is None:
        return "new"
    if not overwrite and old.get("digest") == _digest(recipe):
        # a pending record is a run killed between its first output and its complete record
        if old.get("complete", True) is True and all(map(os.path.exists, targets)):  # False for a name too long
            report.skipped.append(targets[0])
            return "done"
        return "new"  # same recipe, an output missing or never completed: write them
    old_recipe = old.get("recipe") or {}
    report.changed.update(k for k in set(old_recipe) | set(recipe) if old_recipe.get(k) != recipe.get(k))
    keep = {t.name for t in targets}
    for name in _listed_outputs(old, record):
        if name not in keep:
            with contextlib.suppress(OSError):
                (record.parent / name).unlink()
    if overwrite:
        report.changed.add("--overwrite")
    return "redo"


def write_record(record: Path, kind: str, source: Path, recipe: Mapping[str, Any], outputs: Sequence[Path],
                 *, pending: bool = False, **extra: Any) -> None:
    """Write the record of one input's outputs: ``pending`` before the first of them (they are
    lseg's, not complete yet), then complete after the last (they are complete).

    Outputs that the record already lists for this same recipe and that still exist stay listed: a
    run with ``--scores`` then one with ``--heatmaps`` leaves both, still lseg's (unlisted, the
    scores would be refused as a stranger's file by the next ``--scores`` run). A changed recipe's
    old outputs were deleted by :func:`plan`."""
    from lseg.io import atomic_write

    names = [o.name for o in outputs]
    old = _read_record(record)
    if old is not None and old.get("digest") == _digest(recipe):
        names += [n for n in _listed_outputs(old, record) if n not in names and os.path.lexists(record.parent / n)]
    data = {
        RECORD_KEY: _RECORD_VERSION,
        "kind": kind,
        "source": str(source),
        **({"complete": False} if pending else {}),
        **extra,
        "outputs": names,
        "recipe": dict(recipe),
        "digest": _digest(recipe),
    }
    text = json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n"
    atomic_write(record, lambda p: p.write_text(text, encoding="utf-8"))


def finish(report: BatchReport, written: Path, status: Status) -> None:
    """Count one input's outputs as written (and as redone if its recipe changed)."""
    report.written.append(written)
    if status == "redo":
        report.redone.append(written)
