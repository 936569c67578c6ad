"""Downloading one released file, from Google Drive or a mirror, with gdown; each failure one line.
Drive's confirmation page is parsed here, not by ``gdown.download(id=...)``, which recognises Drive by
host name only: the tests' stand-in takes the same path."""

from __future__ import annotations

import errno
import html
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urljoin, urlsplit

from lseg.errors import WeightsDownloadError

if TYPE_CHECKING:
    from lseg.pretrained.released import PretrainedWeights

_T = TypeVar("_T")

#: Drive serves browsers and scripts differently; this is a browser's, as gdown sends.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


def fetch(entry: PretrainedWeights, url: str, target: Path, *, drive: bool, timeout: tuple[float, float],
          retries: int) -> None:
    """Download ``url`` (through Drive's confirmation page if ``drive``) to ``target``, resuming a
    partial file; every failure is one :class:`WeightsDownloadError`."""
    import gdown
    import requests
    from gdown.exceptions import DownloadError

    for attempt in range(2):
        try:
            direct = _confirm_drive(entry, url, target, timeout) if drive else url
            gdown.download(
                url=direct, output=str(target), quiet=False, resume=True, use_cookies=False, timeout=timeout,
                retries=retries, user_agent=USER_AGENT,
                log_messages={"start": f"Downloading {entry.name} ({entry.filename})\n",
                              "output": f"To: {target.parent}\n"},
            )
            return
        except (DownloadError, requests.RequestException) as e:
            if attempt == 0 and isinstance(e, DownloadError) and "byte range" in str(e):
                for part in target.parent.glob(f"{target.name}*.part"):  # no Range support, or the file changed
                    part.unlink()
                continue  # start over
            raise _transfer_error(entry, url, target, e) from None
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise disk_full(target.parent, "downloading", entry.filename, kept=_partial_bytes(target)) from None
            raise WeightsDownloadError(f"cannot write {entry.filename} into {target.parent}: {reason(e)}") from None


def _transfer_error(entry: PretrainedWeights, url: str, target: Path, e: Exception) -> WeightsDownloadError:
    import requests

    partial = _partial_bytes(target)
    again = (f"the {partial / 1e6:.1f} MB downloaded so far are kept and the next run resumes from there"
             if partial else "run the command again")
    where = f"download {entry.url} by hand and put it at {target.parent / entry.filename}"
    cause = e.__cause__ if e.__cause__ is not None else e
    if isinstance(e, requests.HTTPError):
        return WeightsDownloadError(
            f"cannot download {entry.filename} ({entry.name!r}): {host(url)} answered {reason(e)}; {where}"
        )
    if isinstance(cause, (requests.ConnectionError, requests.Timeout)) and not partial:
        return WeightsDownloadError(
            f"cannot download {entry.filename} ({entry.name!r}) from {host(url)}: no network connection "
            f"({reason(cause)}); {where}, or set LSEG_WEIGHTS_MIRROR"
        )
    return WeightsDownloadError(
        f"the download of {entry.filename} ({entry.name!r}) from {host(url)} broke off ({reason(e)}); {again}, "
        f"or {where}"
    )


def _confirm_drive(entry: PretrainedWeights, url: str, target: Path, timeout: tuple[float, float]) -> str:
    """The direct URL behind Drive's confirmation page, or ``url`` when Drive serves the file at once;
    an HTML page without a download form (the quota page) is an error."""
    import requests
    from gdown.download import get_url_from_gdrive_confirmation
    from gdown.exceptions import FileURLRetrievalError

    with requests.get(url, stream=True, timeout=timeout, headers={"User-Agent": USER_AGENT}) as r:
        if "text/html" not in r.headers.get("Content-Type", ""):
            r.raise_for_status()
            return url  # the file itself: gdown streams it from this URL
        page = r.raw.read(1 << 20, decode_content=True).decode(r.encoding or "utf-8", "replace")
    try:
        return urljoin(r.url, get_url_from_gdrive_confirmation(page))
    except FileURLRetrievalError as e:
        raise html_error(entry, str(e), target) from None


def html_error(entry: PretrainedWeights, detail: str, target: Path) -> WeightsDownloadError:
    """One line for an HTML page served instead of the file: Drive's quota page, or any other."""
    detail = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", detail)).split())
    where = f"download {entry.url} in a browser and put it at {target.parent / entry.filename}"
    if re.search(r"too many users|quota|try .* again later", detail, re.IGNORECASE):
        return WeightsDownloadError(
            f"Google Drive's download quota for {entry.filename} ({entry.name!r}) is exceeded: it answered with "
            f"an HTML page, not the file (\"{_first_sentence(detail)}\"); try again later (up to 24 h), {where}, or set "
            "LSEG_WEIGHTS_MIRROR"
        )
    return WeightsDownloadError(
        f"Google Drive answered with an HTML page, not {entry.filename} ({entry.name!r}): \"{_first_sentence(detail)}\"; "
        f"{where}, or set LSEG_WEIGHTS_MIRROR"
    )


def page_detail(page: str) -> str:
    """What an HTML page served instead of the file says (Drive's error line when it has one)."""
    from gdown.download import get_url_from_gdrive_confirmation
    from gdown.exceptions import FileURLRetrievalError

    try:
        get_url_from_gdrive_confirmation(page)
    except FileURLRetrievalError as e:
        if "uc-error" in page:
            return str(e)
    return page


def _partial_bytes(target: Path) -> int:
    """Bytes in gdown's partial file(s) of ``target`` (``<target name><8 chars>.part``)."""
    return sum(p.stat().st_size for p in target.parent.glob(f"{target.name}*.part") if p.is_file())


def disk_full(d: Path, doing: str, filename: str, kept: int = 0) -> WeightsDownloadError:
    """One line for a full disk while ``doing`` ``filename`` in ``d`` (``kept``: bytes downloaded)."""
    free = shutil.disk_usage(d).free if d.exists() else 0
    keep = f"; the {kept / 1e6:.1f} MB already downloaded are kept and the download resumes" if kept else ""
    return WeightsDownloadError(
        f"disk full while {doing} {filename} in {d} ({free / 1e6:.0f} MB free): free some space or set LSEG_HOME "
        f"to a folder on another disk{keep}"
    )


def disk_guard(action: Callable[[], _T], d: Path, doing: str, filename: str) -> _T:
    """Run ``action()``; a full disk becomes one clear line."""
    try:
        return action()
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise disk_full(d, doing, filename) from None
        raise


def host(url: str) -> str:
    """``scheme://netloc`` of ``url``: the server an error message names."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def reason(e: BaseException) -> str:
    """The last informative line of an exception chain (requests nests urllib3's reasons)."""
    text = " ".join(str(e).split()) or type(e).__name__
    m = re.search(r"\[Errno[^\]]*\][^')\"]*", text)  # e.g. "[Errno 111] Connection refused"
    return m.group(0).strip() if m else _first_sentence(text)


def _first_sentence(text: str) -> str:
    return re.split(r"\.\s+(?=[A-Z])", text, maxsplit=1)[0].rstrip(".")[:200]
