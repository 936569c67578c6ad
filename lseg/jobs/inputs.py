"""Inputs of a batch job: the files under the given paths, never a job's own outputs (the output
folder, hidden files and files an lseg record lists)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lseg.errors import LSegError
from lseg.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, walk_files

__all__ = ["MAX_RECORD_BYTES", "RECORD_KEY", "Media", "check_unique", "collect", "collect_media", "recorded_outputs"]

#: Key that marks a JSON file as an lseg output record (its value: the record format version).
RECORD_KEY = "lseg_record"
#: Records larger than this are not lseg's (never parsed while walking inputs).
MAX_RECORD_BYTES = 1 << 22


@dataclass(frozen=True)
class Media:
    """One input file; ``stem``: its outputs' path relative to the output folder, without suffix."""

    path: Path
    stem: Path
    is_video: bool = False


def read_record(path: Path) -> dict | None:
    """The lseg record at ``path``, or None (absent, unreadable, too large, not a record)."""
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and RECORD_KEY in data else None


def is_complete(record: dict | None) -> bool:
    """Whether ``record`` (:func:`read_record`'s) is a finished unit's, not a pending one (a record
    without the ``complete`` key predates it: complete)."""
    return record is not None and record.get("complete", True) is True


def recorded_outputs(folder: Path, filenames: Iterable[str]) -> set[str]:
    """Names in ``folder`` (among ``filenames``) that lseg records list, the records included."""
    out: set[str] = set()
    for fn in filenames:
        data = read_record(folder / fn) if fn.endswith(".json") else None
        if data is not None:
            out.add(fn)
            out.update(o for o in data.get("outputs", ()) if isinstance(o, str))
    return out


def collect(inputs: Sequence[str | os.PathLike[str]], suffixes: Iterable[str],
            out: str | os.PathLike[str] | None = None) -> list[tuple[Path, Path]]:
    """Files and folders -> ``(file, output stem relative to OUT)`` pairs, folders' files sorted, each file
    once (the first);
    :class:`LSegError` for an input that does not exist or is a recorded lseg output."""
    wanted = {s.lower() for s in suffixes}
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            files = walk_files(p, exclude=out)  # sorted by path components
            names: dict[Path, list[str]] = {}
            for f in files:
                names.setdefault(f.parent, []).append(f.name)
            outputs = {folder: recorded_outputs(folder, fns) for folder, fns in names.items()}
            pairs += [(f, f.relative_to(p).with_suffix("")) for f in files
                      if f.suffix.lower() in wanted and f.name not in outputs[f.parent]]
        elif p.exists():  # a FIFO or device too: the loader refuses it (without blocking), as a failed input
            if p.is_file() and p.name in recorded_outputs(p.parent, os.listdir(p.parent)):
                raise LSegError(f"{p} is an output of an earlier lseg run (see the .json record next to it), "
                                "not an input; pass the original image")
            pairs.append((p, Path(p.stem)))
        else:
            raise LSegError(f"input not found: {p}")
    # one file given twice (``a.png a.png``, a folder and its file, relative and absolute) is one input;
    # by its absolute path, not its target: a link of another name is an input with outputs of its own
    firsts: dict[str, tuple[Path, Path]] = {}
    for pair in pairs:
        firsts.setdefault(os.path.abspath(pair[0]), pair)
    return list(firsts.values())


def check_unique(pairs: Iterable[tuple[Path, Path]], suffix: str) -> None:
    """Refuse inputs whose outputs would share a name (``a.jpg`` and ``a.png``), every clash listed."""
    by_stem: dict[Path, dict[Path, None]] = {}
    for src, stem in pairs:
        by_stem.setdefault(stem, {})[src] = None  # each source once, in order
    clashes = [(stem, list(srcs)) for stem, srcs in by_stem.items() if len(srcs) > 1]
    if not clashes:
        return
    shown = "; ".join(f"{' and '.join(str(s) for s in srcs)} would {'all' if len(srcs) > 2 else 'both'} "
                      f"write {stem}{suffix}" for stem, srcs in clashes[:20])
    more = f"; and {len(clashes) - 20} more" if len(clashes) > 20 else ""
    raise LSegError(f"{len(clashes)} output name clash{'es' if len(clashes) > 1 else ''}: {shown}{more}; "
                    "rename the files or process them into different --out folders")


def collect_media(inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str] | None = None,
                  suffix: str = ".npy", video_suffix: str = "/NNNNNN.npy") -> list[Media]:
    """Images and videos under ``inputs`` (:func:`collect`), refusing two that write one ``<stem><suffix>``
    (a video: ``<stem><video_suffix>``, its frames)."""
    media = [Media(f, stem, f.suffix.lower() in VIDEO_EXTENSIONS)
             for f, stem in collect(inputs, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS, out=out)]
    check_unique([(m.path, Path(f"{m.stem}{video_suffix if m.is_video else suffix}")) for m in media], "")
    return media
