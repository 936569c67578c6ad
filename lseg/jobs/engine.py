"""The batch engine: one loop for every command that walks inputs and writes outputs (a
:class:`Writer`, run by :func:`run_job`; docs/cli.md, "Records and re-runs")."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lseg.console import progress_bar
from lseg.errors import LSegError, OutputWriteError
from lseg.io import Staged, check_writable, remove_stale_temp_files
from lseg.jobs.claims import ClaimSet, hold_recipe, remove_stale_claims
from lseg.jobs.inputs import read_record, recorded_outputs
from lseg.jobs.records import Status, digest, input_stamp, listed_outputs, plan, remove_outputs, write_record

_logger = logging.getLogger(__name__)

__all__ = [
    "JobInterrupted", "Report", "Unit", "Writer", "check_clashes", "exit_code", "finished", "pending_units", "reported",
    "run_job", "write_unit",
]


@dataclass
class Unit:
    """One unit of work: its ``source``, the files it writes (``targets``; empty for a unit that
    appends them as it writes, e.g. a video's frames), its ``record``, the ``folder`` a video unit
    fills, the writer's own ``data``, and its ``inputs`` besides ``source`` (a store's run of images)."""

    source: Path
    targets: list[Path]
    record: Path
    folder: Path | None = None
    data: Any = None
    status: Status = "new"
    inputs: tuple[Path, ...] = ()
    stamp: list | None = None  # the inputs' sizes and times, as the unit was claimed
    changed: set[str] = field(default_factory=set)  # the recipe keys that make it a "redo"

    def __post_init__(self) -> None:
        self.key = self.targets[0] if self.targets else self.record  # what workers claim


@dataclass
class Report:
    """What a job did: written (``redone``: with a changed recipe; ``changed``: its keys), skipped,
    failed (path, reason), left to ``others`` (workers), why it ``stopped`` early (a full disk...)
    and whether it was ``interrupted`` (Ctrl-C)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    redone: list[Path] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    others: list[Path] = field(default_factory=list)
    stopped: str | None = None
    interrupted: bool = False

    def summary(self) -> str:
        redo = ""
        if self.redone:
            why = "--overwrite" if self.changed == {"--overwrite"} else f"{', '.join(sorted(self.changed - {'--overwrite'}))} changed"
            redo = f" ({len(self.redone)} redone: {why})"
        text = f"{len(self.written)} written{redo}, {len(self.skipped)} already done, {len(self.failed)} failed"
        if self.others:
            text += f", {len(self.others)} left to other workers"
        return text + ("; stopped early" if self.stopped else "") + ("; interrupted" if self.interrupted else "")


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a job of the Python API cleanly (finished outputs kept); ``report``: what it did."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.summary())
        self.report = report


def finished(report: Report) -> Report:
    """``report``; :class:`JobInterrupted` carrying it if Ctrl-C stopped the job, so that a caller's
    program stops too (the command line prints the report instead)."""
    if report.interrupted:
        raise JobInterrupted(report)
    return report


def reported(job: Callable[[], Report]) -> Report:
    """``job()``'s report, also when Ctrl-C stopped it (:class:`JobInterrupted`): for a caller that
    reports it itself (a command, an enclosing job)."""
    try:
        return job()
    except JobInterrupted as e:
        return e.report


def exit_code(report: Report) -> int:
    """130 interrupted, 2 stopped early (disk full...), 1 some units failed, else 0."""
    return 130 if report.interrupted else 2 if report.stopped else 1 if report.failed else 0


class Writer:
    """A batch command for :func:`run_job`: sets :attr:`kind` (the record's), :attr:`unit_name` (the
    progress bar's) and :attr:`out`, implements :meth:`units` and :meth:`write`."""

    kind = "batch"
    unit_name = "img"
    out: Path

    def units(self) -> list[Unit]:
        """Every unit, from the inputs alone (no model); refuse bad inputs here (:class:`LSegError`)."""
        raise NotImplementedError

    def recipe(self) -> dict[str, Any]:
        """The settings that change the outputs' content (known without the model)."""
        return {}

    def unit_recipe(self, unit: Unit, recipe: dict[str, Any]) -> dict[str, Any]:
        """The part of ``recipe`` that makes ``unit``'s outputs (a still image: no video sampling)."""
        return recipe

    def setup(self) -> None:
        """Build the model: called once, only when some unit is to be written."""

    def compute(self, units: Iterator[Unit]) -> Iterator[tuple[Unit, Any]]:
        """``(unit, result or LSegError)`` per unit, pulled lazily (each is claimed as it is pulled)."""
        for unit in units:
            try:
                yield unit, self.compute_one(unit)
            except LSegError as e:
                if isinstance(e, OutputWriteError) and e.fatal:
                    raise
                yield unit, e

    def compute_one(self, unit: Unit) -> Any:
        return None

    def write(self, unit: Unit, result: Any, staged: Staged) -> dict[str, Any]:
        """Write ``unit.targets`` through ``staged``; returns extra record fields (``"failed"``:
        ``[{"source", "error"}]`` of items inside the unit that could not be read)."""
        raise NotImplementedError

    def finish(self, report: Report) -> None:
        """After the loop, also when nothing was to do (not after an interruption): e.g. a store's index."""


def _resolved(p: Path) -> Path:
    with contextlib.suppress(OSError):
        return p.resolve()
    return p.absolute()


def check_clashes(units: Sequence[Unit], overwrite: bool, kind: str) -> None:
    """Refuse, all at once, outputs that would destroy data: an input of this run, a file in another
    input's frame folder, an existing file no lseg record lists or another command's (not ``kind``) record
    lists (unless ``overwrite``)."""
    inputs = {_resolved(u.source): u.source for u in units}
    owned = [(_resolved(u.folder), u.folder, u.source) for u in units if u.folder is not None]
    problems: list[str] = []
    foreign = False

    @functools.cache
    def listed(folder: Path) -> set[str]:
        with contextlib.suppress(OSError):
            return recorded_outputs(folder, os.listdir(folder))
        return set()

    def is_recorded(target: Path, record: Path) -> bool:
        if target.name in listed(target.parent):
            return True
        own = read_record(record)  # written by a concurrent worker since the folder was listed
        return own is not None and (target == record or target.name in listed_outputs(own, record))

    for u in units:
        record = None if overwrite else read_record(u.record)
        if record is not None and record.get("kind", kind) != kind:  # `lseg query` into `lseg segment`'s folder
            problems.append(f"{u.record} records the outputs of another command ({record['kind']})")
            foreign = True
            continue
        for target in [*u.targets, u.record]:
            real = _resolved(target)
            if real in inputs and inputs[real] != u.source:
                problems.append(f"{inputs[real]} is an input and also an output of {u.source}")
                continue
            inside = next(((f, src) for r, f, src in owned if src != u.source and (real == r or r in real.parents)), None)
            if inside is not None:
                problems.append(f"{u.source} would write {target.name} into {inside[0]}, where the video "
                                f"{inside[1]} writes its frames")
                break
            if not overwrite and os.path.lexists(target) and not is_recorded(target, u.record):
                problems.append(f"{target} exists and is not an lseg output (no record lists it)")
                foreign = True
        if u.folder is not None and not overwrite and u.folder.is_dir() and record is None:
            with contextlib.suppress(OSError):
                theirs = sorted(n for n in os.listdir(u.folder) if not n.startswith("."))
                if theirs:
                    foreign = True
                    problems.append(f"{u.folder} (the frame folder of {u.source}) already holds files lseg did "
                                    f"not write ({', '.join(theirs[:3])}{', ...' if len(theirs) > 3 else ''})")
    if not problems:
        return
    shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
    hint = "; move those files or choose another --out folder" + (
        " (or pass --overwrite to replace them)" if foreign else "")
    raise LSegError(f"{len(problems)} output clash{'es' if len(problems) > 1 else ''}, nothing was written: "
                    f"{shown}{hint}")


def _targets_now(unit: Unit) -> list[Path]:
    """A unit's files: known up front, or (a unit that writes as it goes) as its record lists them."""
    if unit.targets:
        return unit.targets
    old = read_record(unit.record)
    return [unit.record.parent / n for n in listed_outputs(old, unit.record)] if old else [unit.record]


def run_job(writer: Writer, *, overwrite: bool = False, progress: bool = True, shard: tuple[int, int] = (0, 1),
            desc: str | None = None) -> Report:
    """Run ``writer``'s units of shard ``k`` of ``M`` (``units[k::M]``; the progress bar ``desc``, by default
    ``<kind> k+1/M``); a unit that fails is listed in the report, a full disk or read-only file system stops
    the job. Raises :class:`LSegError` for bad inputs, output clashes, another job with other settings, an
    unwritable folder."""
    desc = desc or (writer.kind if shard[1] == 1 else f"{writer.kind} {shard[0] + 1}/{shard[1]}")
    report = Report()
    mine, todo, recipe = pending_units(writer, overwrite, report, shard)
    key = digest(recipe)
    if not todo:
        return finish_idle(writer, report)
    out, created = open_output(writer.out)
    bar = None
    try:
        with ClaimSet() as claims:
            hold_recipe(claims, out, key, "write")
            writer.setup()
            bar = progress_bar(total=len(mine), initial=len(mine) - len(todo), desc=desc,
                               unit=writer.unit_name, disable=not progress)
            for unit, result in writer.compute(_claimed(todo, claims, writer, recipe, overwrite, report, bar)):
                try:
                    if isinstance(result, LSegError):
                        raise result
                    write_unit(writer, unit, result, recipe, report)
                except LSegError as e:
                    _fail(report, unit.source, e)
                finally:
                    claims.release(unit.key)
                    if unit.folder is not None and not unit.record.exists():  # a failed video's empty folder
                        with contextlib.suppress(OSError):
                            unit.folder.rmdir()
                bar.update()  # not for a unit Ctrl-C discarded
                if report.stopped:
                    break
    except KeyboardInterrupt:
        report.interrupted = True
    except OutputWriteError as e:  # fatal, raised while claiming or computing
        _logger.error("%s", e)
        report.stopped = str(e)
    finally:
        if bar is not None:
            bar.close()
        if created:  # a model that failed to load, Ctrl-C before any output: no empty output folder left
            with contextlib.suppress(OSError):
                os.rmdir(out)
    if not report.interrupted and not report.stopped:
        writer.finish(report)
    return report


def finish_idle(writer: Writer, report: Report) -> Report:
    """End a job with nothing to write: what a killed run left is cleared (a read-only folder: kept), and
    what it did not get to (a store's index or reduction) done."""
    if Path(writer.out).is_dir():
        with contextlib.suppress(OSError):
            remove_stale_temp_files(writer.out)
            remove_stale_claims(writer.out)
    writer.finish(report)
    return report


def open_output(folder: Path) -> tuple[Path, bool]:
    """``folder`` checked writable (one error before the model loads) and whether that created it, with
    what a killed earlier run left there removed."""
    created = not os.path.lexists(folder)
    out = check_writable(folder)
    remove_stale_temp_files(out)
    remove_stale_claims(out)
    return out, created


def pending_units(writer: Writer, overwrite: bool, report: Report, shard: tuple[int, int] = (0, 1)
                  ) -> tuple[list[Unit], list[Unit], dict[str, Any]]:
    """This shard's units (checked for clashes), those not done yet (their ``status`` and ``changed`` set;
    the others counted as skipped in ``report``), and the recipe."""
    units = writer.units()
    if not units:  # exit 0 with "0 written" alone would not say why
        _logger.warning("%s: nothing to process (an empty folder, or no files of a supported type)", writer.kind)
    check_clashes(units, overwrite, writer.kind)
    recipe = writer.recipe()
    mine = units[shard[0]::shard[1]]
    todo = []
    for unit in mine:
        # nothing removed yet: a unit to redo is planned again once claimed, its old files removed when written
        own = writer.unit_recipe(unit, recipe)
        unit.status, unit.changed = plan(_targets_now(unit), unit.record, own, overwrite, stamp=_stamp(unit))
        if unit.status == "done":
            report.skipped += _counted(unit, read_record(unit.record))
        else:
            todo.append(unit)
    return mine, todo, recipe


def _stamp(unit: Unit) -> list:
    return input_stamp([unit.source, *unit.inputs])


def _counted(unit: Unit, record: dict[str, Any] | None) -> list[Path]:
    """``unit`` as counted in a report: a unit of several frames (a video, a store's run of images) its frames."""
    return [unit.key] * len((record or {}).get("frames") or [None])


def _claimed(todo: list[Unit], claims: ClaimSet, writer: Writer, recipe: dict[str, Any], overwrite: bool,
             report: Report, bar: Any) -> Iterator[Unit]:
    """The units this worker claims, as the writer pulls them (those another worker holds or finished
    are counted and passed over)."""
    for unit in todo:
        try:
            taken: bool | None = claims.take(unit.key)
        except OutputWriteError as e:  # its folder is not writable (a name too long, no permission)
            if e.fatal:
                raise
            _fail(report, unit.source, e)
            taken = None
        if taken:
            unit.stamp = _stamp(unit)
            own = writer.unit_recipe(unit, recipe)
            unit.status, changed = plan(_targets_now(unit), unit.record, own, overwrite, stamp=unit.stamp)
            if unit.status != "done":
                report.changed |= changed
                yield unit
                continue
            claims.release(unit.key)
            report.skipped += _counted(unit, read_record(unit.record))
        elif taken is False:
            report.others += [unit.key] * (1 + len(unit.inputs))  # a store's run of images: its images
        bar.update()


def _fail(report: Report, source: Path, e: LSegError) -> None:
    """Count a failed unit and log it at once; a full disk or read-only file system stops the job."""
    report.failed.append((source, str(e)))
    if not isinstance(e, OutputWriteError):
        _logger.warning("skipping %s: %s", source, e)
        return
    _logger.error("%s", e)
    if e.fatal:
        report.stopped = str(e)


def _bare(unit: Unit) -> bool:
    """Whether a unit writing its frame folder as it goes has nothing there but its record (and hidden files)."""
    with contextlib.suppress(OSError):
        return unit.folder is not None and not unit.targets and [
            n for n in os.listdir(unit.folder) if not n.startswith(".")] == [unit.record.name]
    return False


def write_unit(writer: Writer, unit: Unit, result: Any, recipe: dict[str, Any], report: Report) -> None:
    """Write one claimed unit: its pending record, its files (staged, then moved into place), its
    complete record; counted in ``report``. Ray actors call it as the loop does."""
    staged, recipe = Staged(), writer.unit_recipe(unit, recipe)
    if unit.status == "redo":  # the old recipe's files go now, not when claimed (Ctrl-C keeps those ahead)
        remove_outputs(unit.record)
    stamp = {"inputs": unit.stamp if unit.stamp is not None else _stamp(unit)}
    write_record(unit.record, writer.kind, unit.source, recipe, unit.targets, pending=True, extra=stamp)
    try:
        extra = writer.write(unit, result, staged)
        staged.commit()
    except BaseException:
        staged.discard()
        if unit.targets and not any(map(os.path.lexists, unit.targets)) or _bare(unit):  # nothing of it exists: no record
            with contextlib.suppress(OSError):
                unit.record.unlink()
        raise
    write_record(unit.record, writer.kind, unit.source, recipe, unit.targets, extra={**stamp, **extra})
    for item in extra.get("failed", ()):
        _fail(report, Path(item["source"]), LSegError(item["error"]))
    written = _counted(unit, extra)
    report.written += written
    if unit.status == "redo":
        report.redone += written
