"""What is left of the by-name option checks (``validate_args``): those that ``segment``, ``features``
and ``query`` still need until their options declare them (:func:`lseg.options.option` ``min=``,
``gt=``, ``check=``; :func:`lseg.cli.outputs.output_folder`). Every other command checks its options
when it builds them, and this module goes once these three do."""

from __future__ import annotations

import argparse

from lseg.errors import LSegError

__all__ = ["validate_args"]

#: Commands whose ``--out`` is a folder and which do not check it themselves yet.
_OUT_IS_FOLDER = ("segment", "features")


def validate_args(args: argparse.Namespace) -> None:
    """Check the options ``segment`` (``--out``, ``--device``), ``features`` (``--out``, ``--device``,
    ``--fps``, ``--every-n``) and ``query`` (``--device``, ``--template``) have, by name, before any model or file work: each bad value is an
    :class:`LSegError` (``error: ...``, exit code 2) naming the option."""
    command = getattr(args, "command", None)
    if command not in (*_OUT_IS_FOLDER, "query"):
        return
    from lseg.cli.outputs import output_folder
    from lseg.inference.devices import check_device
    from lseg.options import OptionError

    if getattr(args, "device", None) is not None:  # first: ModelSource's check says "use --device='cpu'"
        check_device(args.device, "--device")
    if command in _OUT_IS_FOLDER:
        try:
            output_folder("out")(getattr(args, "out", None))
        except OptionError as e:
            raise LSegError(e.named({"out": "--out"})) from None
    if command == "features":
        if args.fps is not None and not args.fps > 0:
            raise LSegError(f"--fps must be positive, got {args.fps}")
        if args.every_n is not None and args.every_n < 1:
            raise LSegError(f"--every-n must be at least 1, got {args.every_n}")
    if command == "query" and args.template:
        from lseg.labels import validate_templates

        try:
            validate_templates(args.template)
        except LSegError as e:
            raise LSegError(f"--template: {e}") from None
