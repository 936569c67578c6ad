"""``lseg demo``'s settings, declared once for the Python API and the command line (imports no Gradio
and no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from lseg.options import CheckedOptions, option

__all__ = ["DemoOptions"]


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
