"""The released LSeg weights by name, and :func:`resolve`, which turns any checkpoint argument into a
local path (cache layout, checks and environment variables: ``docs/weights.md``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

from lseg.errors import CheckpointError, WeightsDownloadError
from lseg.pretrained.drive import disk_guard, fetch, host, html_error, page_detail, reason

_logger = logging.getLogger(__name__)

#: Google Drive's download endpoint (``?export=download&id=<file id>`` is appended; tests patch it).
DRIVE_URL = "https://drive.google.com/uc"
#: Retries of a dropped transfer within one call (each resumes where the last stopped).
RETRIES = 3
#: (connect, read) timeouts in seconds for every request.
TIMEOUT = (15.0, 60.0)
#: The weights ``segment``, ``features`` and ``demo`` use when no checkpoint is given.
DEFAULT = "demo"
MODEL_DIR = "lseg"
RECORD_NAME = "record.json"
_DOWNLOAD_SUFFIX = ".download"  # gdown's output; its partial file is <that><8 chars>.part


@dataclasses.dataclass(frozen=True)
class PretrainedWeights:
    """One released weights file: ``config`` is the registered architecture it must convert to
    (``None``: not checked); ``size`` / ``sha256`` are checked when known."""

    name: str
    filename: str
    drive_id: str
    network: str
    trained_on: str
    paper: str
    config: str | None = None
    size: int | None = None
    sha256: str | None = None

    @property
    def url(self) -> str:
        """Where a person downloads the file by hand."""
        return f"https://drive.google.com/uc?export=download&id={self.drive_id}"


def _fold(kind: str, fold: int, drive_id: str, miou: str) -> PretrainedWeights:
    dataset = {"pascal": "PASCAL-5i", "coco": "COCO-20i"}[kind]
    return PretrainedWeights(
        f"{kind}_fold{fold}", f"{kind}_fold{fold}.ckpt", drive_id, "ResNet-101 zero-shot",
        f"{dataset} fold {fold} (train classes)", f"{miou} mIoU ({dataset} fold {fold}, zero-shot)", "lseg_rn101_zs",
    )


#: The released files (official lang-seg README; zero-shot mIoU as reported in the paper).
WEIGHTS: dict[str, PretrainedWeights] = {
    w.name: w
    for w in [
        PretrainedWeights(
            "demo", "demo_e200.ckpt", "1FTuHY1xPUkM-5gaDtMfgCl3D0gR89WV7", "ViT-L/16",
            "7-dataset mix (ADE20K, BDD, Cityscapes, COCO-Panoptic, IDD, Mapillary, SUN RGB-D)",
            "qualitative (the paper's figures)", "lseg_vitl16_384",
        ),
        _fold("pascal", 0, "1y4z4_yNGlZtn6osaeN4ZjMs6c0vr0F3m", "52.8"),
        _fold("pascal", 1, "1UZzN8kWkH-G8v6P8xcBXEHRZlQKPRxrX", "53.8"),
        _fold("pascal", 2, "1KCq1JphSMvj8X78bkWbdNIFm5zYzLTMX", "44.4"),
        _fold("pascal", 3, "1A_fllOJqyBg0ZTJcm85Cn0NAcwQbXnhl", "38.5"),
        _fold("coco", 0, "1nSYO3XtAv4mzWi4x-MFUfk04cpBKJT38", "22.1"),
        _fold("coco", 1, "1w0vz3yjEi_ZLgECRrgtoLxEHugyJkrs5", "25.1"),
        _fold("coco", 2, "1wmHtmJLdta18XuWQv6oX9llidCll_HrD", "24.9"),
        _fold("coco", 3, "1dliBUSOog7taJxMmb9cdefKH4XOKChVJ", "21.5"),
        PretrainedWeights("fss_rn101", "fss_rn101.ckpt", "1UIj49Wp1mAopPub5M6O4WW-Z79VB1bhw", "ResNet-101 zero-shot",
                          "FSS-1000 (train classes)", "84.7 mIoU (FSS-1000, zero-shot)", "lseg_rn101_zs"),
        PretrainedWeights("fss_l16", "fss_l16.ckpt", "1Nplkc_JsHIS55d--K2vonOOC3HrppzYy", "ViT-L/16 zero-shot",
                          "FSS-1000 (train classes)", "87.8 mIoU (FSS-1000, zero-shot)", "lseg_vitl16_384"),
    ]
}


def list_pretrained() -> list[str]:
    """Names of the released weights (``lseg.load_model(name)``, ``--checkpoint name``)."""
    return list(WEIGHTS)


def get_weights(name: str) -> PretrainedWeights:
    """The registry entry of ``name``; an unknown name is a :class:`CheckpointError` listing them."""
    try:
        return WEIGHTS[name]
    except KeyError:
        raise CheckpointError(
            f"no released weights named {name!r} (and no such file or folder); the names are: "
            f"{', '.join(WEIGHTS)} (lseg weights list); a Hub repo id looks like 'owner/name'"
        ) from None


def cache_dir() -> Path:
    """``$LSEG_HOME``, else ``$XDG_CACHE_HOME/lseg``, else ``~/.cache/lseg``."""
    if os.environ.get("LSEG_HOME"):
        return Path(os.environ["LSEG_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "lseg"


def is_offline() -> bool:
    """True when ``LSEG_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to 1/true/yes/on."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("LSEG_OFFLINE", "HF_HUB_OFFLINE"))


def mirror_url() -> str | None:
    """``$LSEG_WEIGHTS_MIRROR``, else ``weights_mirror`` in ``$LSEG_HOME/config.json``, else None."""
    url, where = os.environ.get("LSEG_WEIGHTS_MIRROR"), "LSEG_WEIGHTS_MIRROR"
    config = cache_dir() / "config.json"
    if not url and config.is_file():
        try:
            url, where = json.loads(config.read_text()).get("weights_mirror"), f"{config}: weights_mirror"
        except (json.JSONDecodeError, AttributeError, OSError) as e:
            raise CheckpointError(f"{config} is not a JSON object: {e}") from None
        if url is not None and not isinstance(url, str):
            raise CheckpointError(f"{config}: weights_mirror must be a URL string, got {url!r}")
    if url and not url.strip().lower().startswith(("http://", "https://")):  # requests reads nothing else
        raise WeightsDownloadError(f"{where} must be an http(s) URL of a server with the released files, got "
                                   f"{url!r}; a file on this machine goes into the cache by hand: {cache_dir() / 'weights'}/<name>/<file>")
    return url.strip() if url else None


def weights_dir(name: str) -> Path:
    """The cache folder of the released weights ``name``."""
    return cache_dir() / "weights" / get_weights(name).name


def cached_folder(name: str) -> Path | None:
    """The converted lseg folder of ``name`` if it is cached (not verified), else None."""
    folder = weights_dir(name) / MODEL_DIR
    return folder if (folder / "model.safetensors").is_file() and (weights_dir(name) / RECORD_NAME).is_file() else None


def resolve(source: str | os.PathLike[str], *, revision: str | None = None,
            cache_dir: str | os.PathLike[str] | None = None, force_download: bool = False,
            token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """The local path a checkpoint argument stands for: a registered name (a ``str`` in
    :data:`WEIGHTS`; ``"./demo"`` or ``Path("demo")`` is a local folder) -> :func:`download`; an
    existing path -> itself; ``owner/name`` -> a Hub repo (the other arguments as for
    ``snapshot_download``; ``force_download`` and ``local_files_only`` apply to names too)."""
    if isinstance(source, str) and source in WEIGHTS:
        return download(source, force=force_download, offline=local_files_only or None)
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if not isinstance(source, str) or _looks_like_path(text):
        raise CheckpointError(f"checkpoint not found: {text}")  # as given (Path drops a trailing slash)
    if "/" not in text:
        get_weights(text)  # raises: an unknown name, listing the known ones
    from lseg.pretrained.hub import download_repo

    return download_repo(
        text, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
        local_files_only=local_files_only or is_offline(),
    )


def portable(checkpoint: str | None) -> str | None:
    """``checkpoint`` as it resolves from any folder: an existing local path made absolute, a released
    name or Hub id as given (what records and configs keep)."""
    path = Path(checkpoint).expanduser() if checkpoint is not None and checkpoint not in WEIGHTS else None
    return str(path.absolute()) if path is not None and path.exists() else checkpoint


def _looks_like_path(text: str) -> bool:
    """Strings meant as local paths, never as Hub ids (``owner/name``)."""
    return (
        text.startswith((".", "~", "/")) or text.endswith(("/", os.sep)) or text.count("/") > 1
        or os.sep != "/" and os.sep in text
        or Path(text).suffix.lower() in (".ckpt", ".pt", ".pth", ".safetensors", ".bin", ".json")
    )


def download(name: str, *, force: bool = False, offline: bool | None = None, check_all: bool = False) -> Path:
    """The converted lseg folder of the released weights ``name``, downloaded and converted if needed.
    ``force``: download again, replacing what the cache holds once the new file passed its checks;
    ``offline`` (default :func:`is_offline`): never use the network; ``check_all``: also verify the
    released file when the converted folder is present."""
    from filelock import FileLock, Timeout

    entry = get_weights(name)
    offline = is_offline() if offline is None else offline
    d = weights_dir(name)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create the weights cache {d}: {e.strerror or e}; set LSEG_HOME to a "
                              "writable folder") from None
    try:
        lock = FileLock(str(d / ".lock"))  # one process downloads and converts, the others wait and reuse
        try:
            held = lock.acquire(timeout=1)
        except Timeout:
            print(f"waiting for another process that is fetching {entry.name} ({d})", file=sys.stderr)
            held = lock.acquire()  # no timeout: never Timeout (an OSError)
    except OSError as e:  # no lock file: a read-only cache (a shared mount), usable only as it is
        folder = None if force else _converted(entry, d, _read_record(d), check_all)
        if folder is None:
            raise CheckpointError(
                f"cannot lock the weights cache {d} ({e.strerror or e}) and it holds no complete converted "
                f"{entry.name!r} to use as it is{' (--force needs a writable cache)' if force else ''}: set "
                "LSEG_HOME to a writable folder"
            ) from None
        return folder
    with held:
        record = _read_record(d)
        ckpt = d / entry.filename
        if force:  # the cached files go only once a new download passed its checks (_download)
            if offline:
                raise WeightsDownloadError(
                    f"--force downloads {name!r} again, but offline mode is on (LSEG_OFFLINE / "
                    "HF_HUB_OFFLINE): the cached files are kept; unset offline mode to download again"
                )
            for p in d.iterdir():  # partial downloads: start afresh
                if p.name.startswith(entry.filename + _DOWNLOAD_SUFFIX):
                    p.unlink(missing_ok=True)
            return _convert(entry, ckpt, d, _download(entry, d, replace=True))
        if (folder := _converted(entry, d, record, check_all)) is not None:
            return folder
        if ckpt.is_file():
            record = _verify_cached(entry, ckpt, record, d)
        else:
            if offline:
                raise WeightsDownloadError(
                    f"the weights {name!r} ({entry.filename}) are not in the cache and offline mode is on "
                    f"(LSEG_OFFLINE / HF_HUB_OFFLINE): download {entry.url} where there is network and put "
                    f"it at {ckpt} (it is checked and converted on first use), or unset offline mode"
                )
            record = _download(entry, d)
        try:
            return _convert(entry, ckpt, d, record)
        except CheckpointError:
            if record.get("source") == "local":  # a wrong file put there by hand: check the next one afresh
                (d / RECORD_NAME).unlink(missing_ok=True)
            raise


def _converted(entry: PretrainedWeights, d: Path, record: dict[str, Any] | None,
               check_all: bool) -> Path | None:
    """The converted folder in ``d`` if it matches its record (``check_all``: the released file, when
    kept, its own), else None."""
    model_dir = d / MODEL_DIR
    if record is None or "model" not in record or not _model_matches(model_dir, record["model"]):
        return None
    ckpt = d / entry.filename
    if check_all and ckpt.is_file():  # the released file may have been deleted to save space
        _verify_cached(entry, ckpt, record, d)
    return model_dir


def _read_record(d: Path) -> dict[str, Any] | None:
    p = d / RECORD_NAME
    if not p.is_file():
        return None
    try:
        record = json.loads(p.read_text())
    except (json.JSONDecodeError, OSError):
        _logger.warning("ignoring the unreadable %s: the cached files are checked afresh", p)
        return None
    return record if isinstance(record, dict) and isinstance(record.get("sha256"), str) else None


def _write_record(d: Path, record: dict[str, Any]) -> dict[str, Any]:
    from lseg.io import atomic_write

    text = json.dumps(record, indent=2) + "\n"
    disk_guard(lambda: atomic_write(d / RECORD_NAME, lambda p: p.write_text(text)), d, "writing", RECORD_NAME)
    return record


def _model_matches(model_dir: Path, recorded: dict[str, Any]) -> bool:
    """The converted weights still have their recorded size and sha256."""
    weights = model_dir / "model.safetensors"
    if not weights.is_file() or not (model_dir / "config.json").is_file():
        return False
    if weights.stat().st_size != recorded.get("size") or sha256_file(weights) != recorded.get("sha256"):
        _logger.warning("%s changed since it was converted (size or sha256): converting again", weights)
        return False
    return True


def _verify_cached(entry: PretrainedWeights, ckpt: Path, record: dict[str, Any] | None, d: Path) -> dict[str, Any]:
    """Check a cached released file against its record; one put there by hand is checked and recorded."""
    if record is None or record.get("file") != entry.filename:
        return _write_record(d, {**_check_file(entry, ckpt, url=None), "source": "local"})
    size = ckpt.stat().st_size
    digest = sha256_file(ckpt) if size == record["size"] else None
    if digest != record["sha256"]:
        what = f"size {size} != {record['size']}" if digest is None else f"sha256 {digest[:12]}... != {record['sha256'][:12]}..."
        raise CheckpointError(
            f"{ckpt} changed since it was downloaded ({what}): the cached file is corrupt; run "
            f"`lseg weights download {entry.name} --force` to fetch it again"
        )
    return record


def _download(entry: PretrainedWeights, d: Path, *, replace: bool = False) -> dict[str, Any]:
    """Download ``entry`` into ``d`` (resuming), check it (deleted if bad), move it into place, record it.
    ``replace``: the cached files are removed once the new file passed its checks (``--force``)."""
    mirror = mirror_url()
    url = f"{mirror.rstrip('/')}/{entry.filename}" if mirror else f"{DRIVE_URL}?export=download&id={entry.drive_id}"
    target = d / (entry.filename + _DOWNLOAD_SUFFIX)
    if not target.is_file():  # else a complete download whose check a killed process did not finish
        fetch(entry, url, target, drive=not mirror, timeout=TIMEOUT, retries=RETRIES)
    try:
        record = _check_file(entry, target, url=url)
    except CheckpointError:
        target.unlink(missing_ok=True)
        raise
    if replace:  # no record may describe the old files once the new one is in place
        (d / RECORD_NAME).unlink(missing_ok=True)
        shutil.rmtree(d / MODEL_DIR, ignore_errors=True)
    disk_guard(lambda: os.replace(target, d / entry.filename), d, "moving", entry.filename)
    return _write_record(d, {**record, "source": url if mirror else f"drive:{entry.drive_id}"})


def _check_file(entry: PretrainedWeights, path: Path, *, url: str | None) -> dict[str, Any]:
    """The record (name, file, size, sha256) of ``path`` once it is known to be the checkpoint (not an HTML
    page, the registry's size and sha256, intact zip CRCs). ``url``: its source (None: put there by hand)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if head.lstrip()[:1] == b"<":
        if url is None:
            raise CheckpointError(f"{path} is an HTML page, not {entry.filename}: download {entry.url} again")
        if url.startswith(DRIVE_URL):  # a page served instead of the file (e.g. Drive's quota page)
            raise html_error(entry, page_detail(head.decode("utf-8", "replace")), path)
        raise WeightsDownloadError(
            f"{host(url)} answered with an HTML page, not {entry.filename} ({entry.name!r}): check "
            "LSEG_WEIGHTS_MIRROR (it must serve the files themselves)"
        )
    if entry.size is not None and size != entry.size:
        raise _corrupt(entry, path, url, f"{size} bytes, expected {entry.size} (truncated?)")
    if head.startswith(b"PK\x03\x04"):  # torch zip: its central directory and CRCs prove it complete
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, OSError) as e:
            raise _corrupt(entry, path, url, f"broken zip archive, truncated? ({reason(e)})") from None
        if bad is not None:
            raise _corrupt(entry, path, url, f"CRC mismatch in {bad}")
    elif head[:1] != b"\x80":  # a legacy torch pickle starts with the protocol opcode
        raise _corrupt(entry, path, url, f"not a PyTorch checkpoint (first bytes {head[:8].hex()})")
    digest = sha256_file(path)
    if entry.sha256 is not None and digest != entry.sha256:
        raise _corrupt(entry, path, url, f"sha256 {digest} != the released {entry.sha256}")
    return {"name": entry.name, "file": entry.filename, "size": size, "sha256": digest}


def _corrupt(entry: PretrainedWeights, path: Path, url: str | None, why: str) -> CheckpointError:
    if url is not None:
        return WeightsDownloadError(
            f"the download of {entry.filename} ({entry.name!r}) is corrupt ({why}); it was deleted, not cached: "
            f"run the command again, or download {entry.url} by hand and put it at {path.parent / entry.filename}"
        )
    return CheckpointError(f"{path} is not a valid {entry.filename} ({why}); delete it or download {entry.url} again")


def _convert(entry: PretrainedWeights, ckpt: Path, d: Path, record: dict[str, Any]) -> Path:
    """Convert the released file to an lseg folder (atomically) and record its sha256."""
    from lseg.models.lseg import LSeg
    from lseg.pretrained.checkpoints import WEIGHTS_NAME, load_local, save_pretrained

    try:
        model = load_local(LSeg, ckpt)
    except CheckpointError as e:
        raise CheckpointError(f"cannot convert the released weights {entry.name!r} ({entry.network}): {e}") from None
    if entry.config is not None and model.config.name != entry.config:
        raise CheckpointError(
            f"{ckpt} holds a {model.config.name} network, not the {entry.config} that {entry.name!r} is: delete it "
            f"(lseg weights download {entry.name} --force)"
        )
    final = d / MODEL_DIR
    with tempfile.TemporaryDirectory(prefix=f".{MODEL_DIR}.tmp-", dir=d, ignore_cleanup_errors=True) as tmp:
        disk_guard(lambda: save_pretrained(model, Path(tmp) / MODEL_DIR), d, "converting", entry.filename)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(Path(tmp) / MODEL_DIR, final)
    weights = final / WEIGHTS_NAME
    _write_record(d, {**record, "model": {"size": weights.stat().st_size, "sha256": sha256_file(weights),
                                          "config": model.config.name}})
    print(f"converted {entry.name} to {final}", file=sys.stderr)
    return final


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

