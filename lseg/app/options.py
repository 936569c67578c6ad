"""``lseg demo``'s settings, declared once for the Python API and the command line (imports no Gradio
and no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from lseg.options import CheckedOptions, option

__all__ = ["DemoOptions", "check_port_free"]


@dataclass(frozen=True)
class DemoOptions(CheckedOptions):
    """Where the demo serves and what it accepts.

    Attributes:
        host: address to bind (0.0.0.0 exposes the demo to the network; there is no authentication).
        port: port (0: any free port).
        max_upload_mb: largest accepted image file, in MB.
        max_labels: most labels per request.
    """

    host: str = "127.0.0.1"
    port: int = option(7860, min=0, max=65535)
    max_upload_mb: float = option(20.0, gt=0)
    max_labels: int = option(64, min=1)


def check_port_free(host: str, port: int) -> int:
    """``port`` if ``host`` can serve on it (0: a free port the system picks), else one-line :class:`LSegError`."""
    import errno
    import socket

    from lseg.errors import LSegError

    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as e:
            why = ("another program uses it?); give another --port, or --port 0 for any free one"
                   if e.errno == errno.EADDRINUSE else "not an address of this machine?); give another --host")
            raise LSegError(f"cannot serve on {host}:{port}: {e.strerror or e} ({why}") from None
        return int(sock.getsockname()[1])
