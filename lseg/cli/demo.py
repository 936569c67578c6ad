"""``lseg demo``: serve the Gradio web demo (needs ``pip install 'lseg[demo]'``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from dataclasses import dataclass

from lseg.options import Flag, add_config_args, config_from_args

_logger = logging.getLogger("lseg")

__all__ = ["DEMO_FLAGS", "DemoOptions", "is_loopback", "register"]


@dataclass(frozen=True)
class DemoOptions:
    """Where the demo serves and what it accepts.

    Attributes:
        host: address to bind (``127.0.0.1``: this machine only; there is no authentication).
        port: port (0: any free port).
        max_upload_mb: largest accepted image file.
        max_labels: most labels per request.
    """

    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = 20.0
    max_labels: int = 64


#: The command-line side of :class:`DemoOptions`.
DEMO_FLAGS = {
    "host": Flag("address to bind (default 127.0.0.1; 0.0.0.0 exposes the demo to the network)"),
    "port": Flag("port (default 7860; 0: any free port)"),
    "max_upload_mb": Flag("largest accepted image file"),
    "max_labels": Flag("most labels per request"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command to the ``lseg`` parser."""
    from lseg.cli.common import add_model_args, add_predictor_args

    p = subparsers.add_parser(
        "demo", help="web demo: upload an image, type labels, see the segmentation",
        description="Serve the Gradio demo. Bound to 127.0.0.1 (this machine only) unless --host says "
        "otherwise; there is no authentication.",
    )
    add_config_args(p, DemoOptions, DEMO_FLAGS)
    add_model_args(p, pretrained_default=True)
    add_predictor_args(p)
    p.set_defaults(func=_cmd_demo)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _cmd_demo(args: argparse.Namespace) -> int:
    from lseg.app.demo import build_demo, launch_demo
    from lseg.cli.common import make_predictor
    from lseg.errors import LSegError

    opts: DemoOptions = config_from_args(DemoOptions, args, DEMO_FLAGS)
    if not is_loopback(opts.host):
        _logger.warning(
            "serving on %s: anyone who can reach this machine can use the demo (no authentication); "
            "use --host 127.0.0.1 to keep it local", opts.host,
        )
    predictor = make_predictor(args)
    banner = None
    if args.random_weights:
        banner = f"Random weights ({args.random_weights}): the segmentation is noise. Use --checkpoint."
    demo = build_demo(predictor, max_upload_mb=opts.max_upload_mb, max_labels=opts.max_labels, banner=banner)
    try:
        launch_demo(demo, host=opts.host, port=opts.port or None, max_upload_mb=opts.max_upload_mb)
    except OSError as e:
        raise LSegError(f"cannot serve on {opts.host}:{opts.port}: {e}; try another --port") from None
    return 0
