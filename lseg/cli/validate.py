"""Every option of every command checked by name before any model or file work (``validate_args``)."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from lseg.errors import LSegError
from lseg.inference.devices import check_device

__all__ = ["check_device", "validate_args"]

#: Commands whose ``--out`` / ``out`` is a folder (for ``eval`` it is a JSON file).
_OUT_IS_FOLDER = ("segment", "features", "convert", "export")
#: Report files written after the work (an evaluation may take hours): checked before it starts.
_REPORT_FILES = {"eval": "out", "bench": "json"}


def validate_args(args: argparse.Namespace) -> None:
    """Check every option a command has, by name, before any model or file work: each bad value is
    an :class:`LSegError` (``error: ...``, exit code 2) naming the option and what to give instead."""
    get = functools.partial(getattr, args)
    if get("device", None) is not None:
        check_device(args.device, "--device")
    for name, low, what in (("size", 0, "0 (native) or a positive number of pixels"),
                            ("crop_size", 32, "at least 32 pixels"), ("stride", 1, "at least 1"),
                            ("batch_size", 1, "at least 1"), ("max_labels", 1, "at least 1"),
                            ("every_n", 1, "at least 1"), ("base_size", 32, "at least 32 pixels"),
                            ("fewshot_size", 32, "at least 32 pixels"), ("repeats", 1, "at least 1"),
                            ("num_workers", 0, "0 or more"), ("max_samples", 1, "at least 1")):
        value = get(name, None)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not v >= low:
                raise LSegError(f"--{name.replace('_', '-')} must be {what}, got {v}")
    if get("stride", None) is not None and get("crop_size", None) is not None and args.stride > args.crop_size:
        raise LSegError(f"--stride ({args.stride}) must not exceed --crop-size ({args.crop_size}): windows would "
                        "leave gaps")
    for name in ("alpha", "stride_rate"):
        value = get(name, None)
        if value is not None and not (0 <= value <= 1 and (name == "alpha" or value > 0)):
            raise LSegError(f"--{name.replace('_', '-')} must be in {'[0, 1]' if name == 'alpha' else '(0, 1]'}, "
                            f"got {value}")
    for name in ("fps", "max_upload_mb"):
        value = get(name, None)
        if value is not None and not value > 0:
            raise LSegError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if get("port", None) is not None and not 0 <= args.port <= 65535:
        raise LSegError(f"--port must be in 0..65535 (0: any free port), got {args.port}")
    templates = [t for t in get("template", None) or [] if not (t == "default" and args.command == "eval")]
    if templates:
        from lseg.labels import validate_templates

        try:
            validate_templates(templates)
        except LSegError as e:
            raise LSegError(f"--template: {e}") from None
    if get("resolution", None) is not None:
        from lseg.features import parse_resolution

        parse_resolution(args.resolution)
    if get("shard", None):
        from lseg.features import parse_shard

        parse_shard(args.shard)
    out = get("out", None)
    if isinstance(out, str) and args.command in _OUT_IS_FOLDER and Path(out).exists() and not Path(out).is_dir():
        raise LSegError(f"--out {out} is a file, not a folder: give a folder (it is created if needed)")
    report = _REPORT_FILES.get(get("command", None) or "")
    if report and isinstance(get(report, None), str):
        check_report_file(getattr(args, report), f"--{report}")
    if get("random_weights", None):
        from lseg.models import get_config

        try:
            get_config(args.random_weights)
        except LSegError as e:
            raise LSegError(f"--random-weights: {e}") from None


def check_report_file(path: str, flag: str) -> None:
    """A file the command writes at its end: not a folder, and its folder writable (created if
    needed), so that a finished run never fails to save its result."""
    from lseg.io import check_writable

    target = Path(path).expanduser()
    if target.is_dir():
        raise LSegError(f"{flag} {path} is a folder: give a file name, e.g. {target / 'report.json'}")
    check_writable(target.parent)
