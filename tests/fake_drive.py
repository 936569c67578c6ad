"""A local stand-in for Google Drive (127.0.0.1, port 0) and a tiny released checkpoint.

The server answers as Drive does for large files: ``/uc?export=download&id=ID`` returns an HTML
confirmation page whose form (``/download``, hidden ``id``/``export``/``confirm``/``uuid``) carries a
one-time token; ``/download`` with that token returns the file (``Range`` honoured, ``ETag`` sent).
Modes: ``quota`` (``/uc`` answers Drive's quota page), ``quota_on_download`` (the quota page comes
instead of the file), ``drops`` (that many transfers are cut half-way). ``/mirror/<file name>``
serves the files directly, as a ``LSEG_WEIGHTS_MIRROR`` does.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import torch

import lseg.pretrained.released
from lseg.pretrained.released import PretrainedWeights

QUOTA_PAGE = (
    '<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>'
    '<div class="uc-main"><div id="uc-text"><p class="uc-error-caption">Sorry, you can&#39;t view or download '
    'this file at this time.</p><p class="uc-error-subcaption">Too many users have viewed or downloaded this file '
    'recently. Please try accessing the file again later. If the file you are trying to access is particularly '
    'large or is shared with many people, it may take up to 24 hours to be able to view or download the file.</p>'
    '</div></div></body></html>\n'
)


@dataclass
class FakeDrive:
    """State of the local server: files by Drive id, the mode, and a log of requests."""

    base: str = ""
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # id -> (file name, bytes)
    mode: str = "ok"
    drops: int = 0
    tokens: set[str] = field(default_factory=set)
    log: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)

    @property
    def uc_url(self) -> str:
        return f"{self.base}/uc"

    def paths(self) -> list[str]:
        return [p for p, _ in self.log]

    def ranges(self) -> list[str]:
        return [r for _, r in self.log if r]


def _handler(drive: FakeDrive) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
            pass

        def _html(self, status: int, page: str) -> None:
            body = page.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            try:
                self._get()
            except (BrokenPipeError, ConnectionResetError):  # the client closed early (checks done)
                pass

        def _get(self) -> None:
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            drive.log.append((url.path, self.headers.get("Range")))
            if url.path == "/uc":
                if q.get("id") not in drive.files:
                    return self._html(404, "<html><head><title>Google Drive - Page Not Found</title></head></html>")
                if drive.mode == "quota":
                    return self._html(403, QUOTA_PAGE)
                token = secrets.token_hex(8)
                drive.tokens.add(token)
                name = drive.files[q["id"]][0]
                # one line, as Drive writes it (gdown's parser reads the page line by line)
                return self._html(200, (
                    "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>\n"
                    f'<p class="uc-warning-subcaption">{name} is too large for Google to scan for viruses.</p>'
                    f'<form id="download-form" action="{drive.base}/download" method="get">'
                    '<input type="submit" id="uc-download-link" value="Download anyway"/>'
                    f'<input type="hidden" name="id" value="{q["id"]}"><input type="hidden" name="export" '
                    f'value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" '
                    f'name="uuid" value="{token}"></form>\n</body></html>\n'
                ))
            if url.path == "/download":
                if q.get("uuid") not in drive.tokens or q.get("confirm") != "t" or q.get("id") not in drive.files:
                    return self._html(403, '<p class="uc-error-subcaption">Invalid download token.</p>')
                if drive.mode == "quota_on_download":
                    return self._html(200, QUOTA_PAGE)
                return self._file(*drive.files[q["id"]])
            if url.path.startswith("/mirror/"):
                by_name = {name: data for name, data in drive.files.values()}
                name = url.path.removeprefix("/mirror/")
                if name not in by_name:
                    return self._html(404, "<html>not found</html>")
                return self._file(name, by_name[name])
            return self._html(404, "<html>not found</html>")

        def _file(self, name: str, data: bytes) -> None:
            etag = '"' + hashlib.md5(data).hexdigest() + '"'
            start = 0
            rng = self.headers.get("Range")
            if rng and self.headers.get("If-Range", etag) == etag:
                start = int(rng.removeprefix("bytes=").split("-")[0])
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Disposition", f'attachment; filename="{name}"')
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if drive.drops > 0:  # cut the connection half-way through the body
                drive.drops -= 1
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    state = FakeDrive()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    # shutdown() waits for the poll: 0.5 s by default, at every test's teardown
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


#: The tiny released-layout checkpoints of the suite: key -> (tiny registry name, refimpl.lightning14 options).
RELEASED_LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lseg_tiny_test": ("lseg_tiny_test", ()),  # the ViT-L/16 family (demo_e200, fss_l16)
    "lseg_tiny_test_p32": ("lseg_tiny_test_p32", ()),  # ViT-B/32
    "lseg_tiny_test_rn": ("lseg_tiny_test_rn", ()),  # ResNet-101 zero-shot
    "legacy": ("lseg_tiny_test", ("--legacy",)),
    "hyper-parameters": ("lseg_tiny_test", ("--hyper-parameters",)),
    "legacy-hyper-parameters": ("lseg_tiny_test", ("--legacy", "--hyper-parameters")),
    "payload-unknown-global": ("lseg_tiny_test", ("--payload", "unknown-global")),
    "payload-code": ("lseg_tiny_test", ("--payload", "code")),
}


@pytest.fixture(scope="session")
def released_layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    """Tiny reference networks (seed 0) laid out exactly as the released ``.ckpt`` files (Lightning
    1.4.9 container with callback classes and optimizer state, torch 1.9 zip), one per entry of
    :data:`RELEASED_LAYOUTS`, all written by ``refimpl.lightning14`` in one process of their own:
    key -> (path, reference network). Read them, never change them."""
    from conftest import once_per_run
    from refimpl.lightning14 import read_released_layouts, write_released_layouts

    folder = once_per_run(tmp_path_factory, "released_layouts", lambda d: write_released_layouts(d, RELEASED_LAYOUTS))
    return read_released_layouts(folder, RELEASED_LAYOUTS)


@pytest.fixture(scope="session")
def tiny_ckpt_bytes(released_layouts: dict[str, tuple[Path, torch.nn.Module]]) -> bytes:
    """A tiny ``lseg_tiny_test`` checkpoint laid out exactly as the released ``.ckpt`` files."""
    return released_layouts["lseg_tiny_test"][0].read_bytes()


TINY = PretrainedWeights(
    name="tiny_test", filename="tiny_test.ckpt", drive_id="1TinyTestFileIdForTheLocalServer0",
    network="tiny ViT (tests)", trained_on="nothing", paper="none", config="lseg_tiny_test",
)


@pytest.fixture
def released(drive: FakeDrive, tiny_ckpt_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDrive:
    """``tiny_test`` registered as released weights on the local Drive; an empty cache in tmp_path;
    network allowed (the suite's conftest sets HF_HUB_OFFLINE=1); no retries unless a test asks."""
    drive.files[TINY.drive_id] = (TINY.filename, tiny_ckpt_bytes)
    monkeypatch.setitem(lseg.pretrained.released.WEIGHTS, TINY.name, TINY)
    monkeypatch.setattr(lseg.pretrained.released, "DRIVE_URL", drive.uc_url)
    monkeypatch.setattr(lseg.pretrained.released, "RETRIES", 0)
    monkeypatch.setattr(lseg.pretrained.released, "TIMEOUT", (5.0, 5.0))
    monkeypatch.setenv("LSEG_HOME", str(tmp_path / "lseg-home"))
    for var in ("HF_HUB_OFFLINE", "LSEG_OFFLINE", "LSEG_WEIGHTS_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    return drive
