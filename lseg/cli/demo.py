"""``lseg demo``: serve the Gradio web demo (needs ``pip install 'lseg[demo]'``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging

from lseg.app.options import DemoOptions, check_port_free
from lseg.cli import common
from lseg.errors import LSegError
from lseg.inference.options import PredictorOptions
from lseg.options import add_options, options_from_args

_logger = logging.getLogger("lseg")

__all__ = ["DemoOptions", "is_loopback", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="web demo: upload an image, type labels, see the segmentation",
        description="Serve the Gradio demo. Bound to 127.0.0.1 (this machine only) unless --host says "
        "otherwise; there is no authentication.",
    )
    add_options(p, DemoOptions)
    common.add_model_args(p, pretrained_default=True)
    add_options(p, PredictorOptions)
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
    opts: DemoOptions = options_from_args(DemoOptions, args)
    source = common.model_source_from_args(args)
    popts = options_from_args(PredictorOptions, args)
    from lseg.app.demo import build_demo, launch_demo  # Gradio: once every option is known to be good

    if not is_loopback(opts.host):
        _logger.warning("serving on %s: anyone who can reach this machine can use the demo (no "
                        "authentication); use --host 127.0.0.1 to keep it local", opts.host)
    port = check_port_free(opts.host, opts.port)  # before the model loads (a minute for the full-size one)
    predictor = common.make_predictor(args, source, popts)
    noise = f"Random weights ({source.random_weights}): the segmentation is noise. Use --checkpoint."
    banner = noise if source.random_weights else None
    demo = build_demo(predictor, max_upload_mb=opts.max_upload_mb, max_labels=opts.max_labels, banner=banner)
    try:
        launch_demo(demo, host=opts.host, port=port, max_upload_mb=opts.max_upload_mb)
    except OSError as e:
        raise LSegError(f"cannot serve on {opts.host}:{port}: {e}; try another --port") from None
    return 0
