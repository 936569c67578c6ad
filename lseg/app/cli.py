"""``lseg demo``: serve the Gradio web demo (needs ``pip install 'lseg[demo]'``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging

_logger = logging.getLogger("lseg")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command to the ``lseg`` parser."""
    from lseg.cli.common import add_model_args, add_predictor_args

    p = subparsers.add_parser(
        "demo", help="web demo: upload an image, type labels, see the segmentation",
        description="Serve the Gradio demo. Bound to 127.0.0.1 (this machine only) unless --host says "
        "otherwise; there is no authentication.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the demo to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free port)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted image file")
    p.add_argument("--max-labels", type=int, default=64, help="most labels per request")
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

    if not is_loopback(args.host):
        _logger.warning(
            "serving on %s: anyone who can reach this machine can use the demo (no authentication); "
            "use --host 127.0.0.1 to keep it local", args.host,
        )
    predictor = make_predictor(args)
    banner = None
    if args.random_weights:
        banner = f"Random weights ({args.random_weights}): the segmentation is noise. Use --checkpoint."
    demo = build_demo(predictor, max_upload_mb=args.max_upload_mb, max_labels=args.max_labels, banner=banner)
    try:
        launch_demo(demo, host=args.host, port=args.port or None, max_upload_mb=args.max_upload_mb)
    except OSError as e:
        raise LSegError(f"cannot serve on {args.host}:{args.port}: {e}; try another --port") from None
    return 0
