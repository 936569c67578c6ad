"""Released weights by name: Drive's confirmation flow, resume, integrity, offline mode, failures.

Everything runs against the local Drive stand-in of ``conftest.py`` with ``tiny_test`` registered as
released weights; the real table (:data:`lseg.pretrained.released.WEIGHTS`) is checked against the issue's.
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
import torch

import lseg
from lseg.errors import CheckpointError, WeightsDownloadError
from lseg.pretrained import released as weights

NAME = "tiny_test"


def _dir() -> Path:
    return weights.weights_dir(NAME)


def _cached_files() -> list[str]:
    d = _dir()
    return sorted(p.name for p in d.iterdir() if p.name != ".lock") if d.exists() else []


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_name_downloads_through_drive_confirmation_then_loads_from_the_cache(released, tiny_ckpt_bytes):
    folder = weights.download(NAME)
    assert folder == _dir() / "lseg"
    assert released.paths() == ["/uc", "/download"]  # the confirmation page, then the file with its token
    assert (_dir() / "tiny_test.ckpt").read_bytes() == tiny_ckpt_bytes
    record = json.loads((_dir() / "record.json").read_text())
    assert record["size"] == len(tiny_ckpt_bytes)
    assert record["sha256"] == weights.sha256_file(_dir() / "tiny_test.ckpt")
    assert record["model"]["sha256"] == weights.sha256_file(folder / "model.safetensors")
    assert record["model"]["config"] == "lseg_tiny_test"
    assert _cached_files() == ["lseg", "record.json", "tiny_test.ckpt"]  # no partial or temporary file left

    # every entry point resolves the name to the cached folder, without the network
    released.log.clear()
    model = lseg.load_model(NAME)
    reference = lseg.load_model(_dir() / "tiny_test.ckpt")
    for k, v in reference.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert lseg.load_model(NAME).config.name == "lseg_tiny_test"
    assert weights.resolve(NAME) == folder
    assert released.log == []


def test_offline_uses_the_cache_and_names_the_file_to_place_by_hand(released, monkeypatch, tiny_ckpt_bytes):
    monkeypatch.setenv("LSEG_OFFLINE", "1")
    with pytest.raises(WeightsDownloadError) as e:
        lseg.load_model(NAME)
    msg = str(e.value)
    assert "\n" not in msg and "offline mode is on" in msg
    assert "tiny_test.ckpt" in msg and str(_dir() / "tiny_test.ckpt") in msg  # which file and where to put it
    assert "drive.google.com/uc?export=download&id=" + weights.WEIGHTS[NAME].drive_id in msg
    assert released.log == []
    # HF_HUB_OFFLINE=1 is honoured as well
    monkeypatch.delenv("LSEG_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsDownloadError, match="offline mode is on"):
        weights.download(NAME)
    # a file put there by hand is checked, recorded and converted: still no network
    _dir().joinpath("tiny_test.ckpt").write_bytes(tiny_ckpt_bytes)
    assert lseg.load_model(NAME).config.name == "lseg_tiny_test"
    assert json.loads((_dir() / "record.json").read_text())["source"] == "local"
    assert released.log == []


def test_quota_page_is_detected_and_nothing_is_cached(released):
    released.mode = "quota"
    with pytest.raises(WeightsDownloadError) as e:
        weights.download(NAME)
    msg = str(e.value)
    assert "\n" not in msg
    assert "download quota" in msg and "HTML page, not the file" in msg and "Too many users" in msg
    assert "LSEG_WEIGHTS_MIRROR" in msg and str(_dir() / "tiny_test.ckpt") in msg
    assert _cached_files() == []


def test_quota_page_served_instead_of_the_file_is_not_cached(released):
    released.mode = "quota_on_download"
    with pytest.raises(WeightsDownloadError, match="download quota .* HTML page, not the file"):
        weights.download(NAME)
    assert _cached_files() == []
    released.mode = "ok"  # once Drive serves the file again, it works
    assert weights.download(NAME).is_dir()


def test_dropped_connection_is_resumed_with_a_range_request(released, monkeypatch, tiny_ckpt_bytes):
    monkeypatch.setattr(weights, "RETRIES", 1)
    released.drops = 1
    weights.download(NAME)
    assert (_dir() / "tiny_test.ckpt").read_bytes() == tiny_ckpt_bytes
    (rng,) = released.ranges()
    assert 0 < int(rng.removeprefix("bytes=").rstrip("-")) < len(tiny_ckpt_bytes)


def test_interrupted_download_is_kept_and_the_next_run_resumes(released, tiny_ckpt_bytes):
    released.drops = 1
    with pytest.raises(WeightsDownloadError) as e:
        weights.download(NAME)
    msg = str(e.value)
    assert "\n" not in msg and "broke off" in msg and "next run resumes" in msg
    (part,) = _dir().glob("*.part")
    kept = part.stat().st_size
    assert 0 < kept < len(tiny_ckpt_bytes)
    assert not (_dir() / "tiny_test.ckpt").exists() and not (_dir() / "record.json").exists()

    released.log.clear()
    weights.download(NAME)  # a new confirmation token, then only the missing bytes
    assert released.ranges() == [f"bytes={kept}-"]
    assert (_dir() / "tiny_test.ckpt").read_bytes() == tiny_ckpt_bytes
    assert not list(_dir().glob("*.part"))


def test_truncated_download_is_never_cached(released, tiny_ckpt_bytes):
    # the server itself serves a cut file (its Content-Length agrees): the zip structure gives it away
    released.files[weights.WEIGHTS[NAME].drive_id] = ("tiny_test.ckpt", tiny_ckpt_bytes[: len(tiny_ckpt_bytes) // 2])
    with pytest.raises(WeightsDownloadError) as e:
        weights.download(NAME)
    assert "\n" not in str(e.value) and "corrupt" in str(e.value) and "truncated" in str(e.value)
    assert _cached_files() == []


def test_corrupt_download_is_never_cached(released, tiny_ckpt_bytes):
    bad = bytearray(tiny_ckpt_bytes)
    bad[len(bad) // 2] ^= 0xFF  # one flipped byte inside a tensor: only the CRC can tell
    released.files[weights.WEIGHTS[NAME].drive_id] = ("tiny_test.ckpt", bytes(bad))
    with pytest.raises(WeightsDownloadError, match=r"corrupt \(CRC mismatch in .*deleted, not cached"):
        weights.download(NAME)
    assert _cached_files() == []


def test_registry_size_and_sha256_are_checked_when_known(released, monkeypatch, tiny_ckpt_bytes):
    entry = weights.WEIGHTS[NAME]
    import dataclasses

    monkeypatch.setitem(weights.WEIGHTS, NAME, dataclasses.replace(entry, sha256="0" * 64))
    with pytest.raises(WeightsDownloadError, match="sha256 .* != the released 0000"):
        weights.download(NAME)
    assert _cached_files() == []
    monkeypatch.setitem(weights.WEIGHTS, NAME, dataclasses.replace(entry, size=len(tiny_ckpt_bytes) + 1))
    with pytest.raises(WeightsDownloadError, match="bytes, expected"):
        weights.download(NAME)


def test_files_changed_on_disk_after_recording_are_detected(released, caplog):
    folder = weights.download(NAME)
    good = (folder / "model.safetensors").read_bytes()
    # the converted weights: detected on the next load and converted again from the released file
    _flip_byte(folder / "model.safetensors", -10)
    released.log.clear()
    assert weights.download(NAME) == folder
    assert "changed since it was converted" in caplog.text
    assert (folder / "model.safetensors").read_bytes() == good and released.log == []
    # the released file: detected whenever it is used again, never silently re-used
    _flip_byte(_dir() / "tiny_test.ckpt", 100)
    with pytest.raises(CheckpointError) as e:
        weights.download(NAME, check_all=True)
    msg = str(e.value)
    assert "\n" not in msg and "changed since it was downloaded (sha256" in msg
    assert f"lseg weights download {NAME} --force" in msg
    # --force fetches it again
    assert weights.download(NAME, force=True) == folder
    assert weights.download(NAME, check_all=True) == folder


def test_no_network_is_one_line_naming_the_file_and_where_to_put_it(released, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setattr(weights, "DRIVE_URL", f"http://127.0.0.1:{closed}/uc")
    with pytest.raises(WeightsDownloadError) as e:
        lseg.load_model(NAME)
    msg = str(e.value)
    assert "\n" not in msg and "no network connection" in msg and "Connection refused" in msg
    assert str(_dir() / "tiny_test.ckpt") in msg and weights.WEIGHTS[NAME].url in msg
    assert not (_dir() / "tiny_test.ckpt").exists()


def test_disk_full_is_one_line_and_keeps_the_partial_download(released, monkeypatch, tiny_ckpt_bytes):
    import gdown

    real = gdown.download
    kept = len(tiny_ckpt_bytes) // 3

    def full_disk(*, output: str, **kwargs: object) -> str:  # writes a third, then the disk is full
        Path(output + "abcd1234.part").write_bytes(tiny_ckpt_bytes[:kept])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gdown, "download", full_disk)
    with pytest.raises(WeightsDownloadError) as e:
        weights.download(NAME)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("disk full while downloading tiny_test.ckpt")
    assert "LSEG_HOME" in msg and "already downloaded are kept" in msg
    assert not (_dir() / "tiny_test.ckpt").exists()
    monkeypatch.setattr(gdown, "download", real)
    released.log.clear()
    weights.download(NAME)
    assert released.ranges() == [f"bytes={kept}-"]
    assert (_dir() / "tiny_test.ckpt").read_bytes() == tiny_ckpt_bytes


def test_mirror_replaces_drive(released, monkeypatch, tmp_path, tiny_ckpt_bytes):
    monkeypatch.setenv("LSEG_WEIGHTS_MIRROR", f"{released.base}/mirror/")
    weights.download(NAME)
    assert released.paths() == ["/mirror/tiny_test.ckpt"]
    # the same from the config file of the cache
    monkeypatch.delenv("LSEG_WEIGHTS_MIRROR")
    monkeypatch.setenv("LSEG_HOME", str(tmp_path / "other-home"))
    (tmp_path / "other-home").mkdir()
    (tmp_path / "other-home" / "config.json").write_text(json.dumps({"weights_mirror": f"{released.base}/mirror"}))
    released.log.clear()
    weights.download(NAME)
    assert released.paths() == ["/mirror/tiny_test.ckpt"]
    # a mirror that does not have the file: one line
    monkeypatch.setenv("LSEG_WEIGHTS_MIRROR", f"{released.base}/nothing-here")
    with pytest.raises(WeightsDownloadError, match=r"answered 404"):
        weights.download(NAME, force=True)


def test_a_mirror_that_is_not_an_http_url_is_one_line_saying_so(released, monkeypatch, tmp_path):
    """A folder path or file:// URL as the mirror said the download 'broke off ... from ://' and to run the
    command again, which cannot help; nothing is fetched and nothing is left in the cache."""
    for url in ("/mnt/shared/lseg-weights", "file:///mnt/shared/lseg-weights", "ftp://host/w"):
        monkeypatch.setenv("LSEG_WEIGHTS_MIRROR", url)
        with pytest.raises(WeightsDownloadError, match=rf"^LSEG_WEIGHTS_MIRROR must be an http\(s\) URL.*got '{url}'"):
            weights.download(NAME)
    monkeypatch.delenv("LSEG_WEIGHTS_MIRROR")
    (tmp_path / "lseg-home" / "config.json").write_text(json.dumps({"weights_mirror": "weights/"}))
    with pytest.raises(WeightsDownloadError, match=r"config.json: weights_mirror must be an http\(s\) URL"):
        weights.download(NAME)
    assert released.log == [] and sorted(p.name for p in _dir().iterdir()) == [".lock"]


def test_unknown_name_lists_the_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as e:
        lseg.load_model("dmeo")
    msg = str(e.value)
    assert "\n" not in msg and "no released weights named 'dmeo'" in msg
    assert "demo, pascal_fold0, pascal_fold1" in msg and "fss_l16" in msg


def test_resolve_names_paths_and_hub_ids(released, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path / NAME)
    assert weights.resolve(folder) == folder  # an existing path is itself
    assert weights.resolve(Path(NAME)) == Path(NAME)  # a Path is never a name
    assert weights.resolve(f"./{NAME}") == Path(f"./{NAME}")
    assert released.log == []
    assert weights.resolve(NAME) == _dir() / "lseg"  # a str name is the released weights
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        weights.resolve("missing/model.safetensors")
    with pytest.raises(CheckpointError, match="checkpoint not found: missing-folder/$"):  # as typed
        weights.resolve("missing-folder/")
    monkeypatch.setenv("LSEG_OFFLINE", "1")  # owner/name goes to the Hub, which is offline too
    with pytest.raises(CheckpointError, match="from the Hugging Face Hub: offline"):
        weights.resolve("someone/lseg-model", cache_dir=tmp_path / "hf")


def test_cache_location_follows_lseg_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("LSEG_HOME", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("LSEG_HOME")
    assert weights.cache_dir() == tmp_path / "xdg" / "lseg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert weights.cache_dir() == Path.home() / ".cache" / "lseg"


#: The issue's table of released files: name -> (Drive file id, network, reported zero-shot mIoU).
ISSUE_TABLE = {
    "demo": ("1FTuHY1xPUkM-5gaDtMfgCl3D0gR89WV7", "ViT-L/16", None),
    "pascal_fold0": ("1y4z4_yNGlZtn6osaeN4ZjMs6c0vr0F3m", "ResNet-101", "52.8"),
    "pascal_fold1": ("1UZzN8kWkH-G8v6P8xcBXEHRZlQKPRxrX", "ResNet-101", "53.8"),
    "pascal_fold2": ("1KCq1JphSMvj8X78bkWbdNIFm5zYzLTMX", "ResNet-101", "44.4"),
    "pascal_fold3": ("1A_fllOJqyBg0ZTJcm85Cn0NAcwQbXnhl", "ResNet-101", "38.5"),
    "coco_fold0": ("1nSYO3XtAv4mzWi4x-MFUfk04cpBKJT38", "ResNet-101", "22.1"),
    "coco_fold1": ("1w0vz3yjEi_ZLgECRrgtoLxEHugyJkrs5", "ResNet-101", "25.1"),
    "coco_fold2": ("1wmHtmJLdta18XuWQv6oX9llidCll_HrD", "ResNet-101", "24.9"),
    "coco_fold3": ("1dliBUSOog7taJxMmb9cdefKH4XOKChVJ", "ResNet-101", "21.5"),
    "fss_rn101": ("1UIj49Wp1mAopPub5M6O4WW-Z79VB1bhw", "ResNet-101", "84.7"),
    "fss_l16": ("1Nplkc_JsHIS55d--K2vonOOC3HrppzYy", "ViT-L/16", "87.8"),
}


def test_the_registry_and_the_readme_hold_the_released_files():
    assert lseg.list_pretrained() == list(ISSUE_TABLE)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name, (drive_id, network, miou) in ISSUE_TABLE.items():
        w = weights.WEIGHTS[name]
        assert (w.drive_id, w.network.split(" ")[0]) == (drive_id, network)
        assert miou is None or w.paper.startswith(f"{miou} mIoU")
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
        assert drive_id in row and (miou is None or miou in row) and w.filename in row, row
    assert re.search(r"^lseg\.load_model\(\"demo\"\)|model = lseg\.load_model\(\"demo\"\)", readme, re.MULTILINE)


def test_resnet_zero_shot_layout_converts_and_a_wrong_network_is_refused(released, monkeypatch, tmp_path):
    import dataclasses
    import io

    from refimpl.tiny import tiny_reference

    torch.manual_seed(0)
    ref = tiny_reference("lseg_tiny_test_rn")  # the reference LSegRNNetZS layout, tiny
    buf = io.BytesIO()
    torch.save({"state_dict": {"net." + k: v for k, v in ref.state_dict().items()}, "epoch": 0,
                "global_step": 0, "pytorch-lightning_version": "1.4.9"}, buf)
    rn = dataclasses.replace(weights.WEIGHTS[NAME], name="tiny_rn", filename="tiny_rn.ckpt", drive_id="1TinyRN",
                             network="tiny ResNet zero-shot (tests)", config="lseg_tiny_test_rn")
    monkeypatch.setitem(weights.WEIGHTS, rn.name, rn)
    released.files[rn.drive_id] = (rn.filename, buf.getvalue())
    assert lseg.load_model("tiny_rn").config.name == "lseg_tiny_test_rn"
    # the ViT file registered as a ResNet: kept (it is intact) but not converted, one line
    wrong = dataclasses.replace(rn, name="tiny_wrong", filename="tiny_wrong.ckpt", drive_id=weights.WEIGHTS[NAME].drive_id)
    monkeypatch.setitem(weights.WEIGHTS, wrong.name, wrong)
    with pytest.raises(CheckpointError, match="holds a lseg_tiny_test network, not the lseg_tiny_test_rn"):
        weights.download("tiny_wrong")
    assert weights.cached_folder("tiny_wrong") is None


def test_force_keeps_a_good_cache_until_a_new_download_passed_its_checks(released, monkeypatch,
                                                                        tiny_ckpt_bytes):
    import socket

    folder = weights.download(NAME)

    def files() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in [*_dir().iterdir(), *folder.iterdir()] if p.is_file()}

    before = files()

    def unchanged() -> bool:
        return files() == before

    monkeypatch.setenv("LSEG_OFFLINE", "1")  # offline: refused before anything is deleted
    with pytest.raises(WeightsDownloadError, match="--force .* offline mode is on.*kept") as e:
        weights.download(NAME, force=True)
    assert "\n" not in str(e.value) and unchanged()
    assert weights.download(NAME) == folder
    monkeypatch.delenv("LSEG_OFFLINE")
    with socket.socket() as s:  # the network is down: the download fails, the cache stays
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    real_url = weights.DRIVE_URL
    monkeypatch.setattr(weights, "DRIVE_URL", f"http://127.0.0.1:{closed}/uc")
    with pytest.raises(WeightsDownloadError, match="no network connection"):
        weights.download(NAME, force=True)
    assert unchanged() and weights.download(NAME) == folder
    monkeypatch.setattr(weights, "DRIVE_URL", real_url)  # a corrupt download: the cache stays too
    bad = bytearray(tiny_ckpt_bytes)
    bad[len(bad) // 2] ^= 0xFF
    released.files[weights.WEIGHTS[NAME].drive_id] = ("tiny_test.ckpt", bytes(bad))
    with pytest.raises(WeightsDownloadError, match="corrupt"):
        weights.download(NAME, force=True)
    assert unchanged() and weights.download(NAME) == folder
    released.files[weights.WEIGHTS[NAME].drive_id] = ("tiny_test.ckpt", tiny_ckpt_bytes)
    released.log.clear()
    assert weights.download(NAME, force=True) == folder and released.paths() == ["/uc", "/download"]
    assert _cached_files() == ["lseg", "record.json", "tiny_test.ckpt"]


def test_a_read_only_cache_is_used_as_it_is_when_complete(released, monkeypatch):
    import filelock

    folder = weights.download(NAME)

    class ReadOnlyLock:  # the lock file cannot be created: a converted cache on a read-only mount
        def __init__(self, path: str) -> None:
            raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(filelock, "FileLock", ReadOnlyLock)
    released.log.clear()
    assert weights.download(NAME) == folder and weights.download(NAME, check_all=True) == folder
    assert lseg.load_model(NAME).config.name == "lseg_tiny_test" and released.log == []
    # checked as the locked path checks it: a changed file is one line, never used
    _flip_byte(_dir() / "tiny_test.ckpt", 100)
    with pytest.raises(CheckpointError, match="changed since it was downloaded"):
        weights.download(NAME, check_all=True)
    _flip_byte(folder / "model.safetensors", -10)
    for force in (False, True):
        with pytest.raises(CheckpointError) as e:
            weights.download(NAME, force=force)
        msg = str(e.value)
        assert "\n" not in msg and "cannot lock the weights cache" in msg and "Read-only file system" in msg
        assert "LSEG_HOME" in msg and ("--force" in msg) == force


def test_a_wrong_file_put_there_by_hand_can_be_replaced_by_the_right_one(released, monkeypatch,
                                                                        tiny_ckpt_bytes):
    monkeypatch.setenv("LSEG_OFFLINE", "1")
    _dir().mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"something.else": torch.zeros(3)}}, _dir() / "tiny_test.ckpt")
    with pytest.raises(CheckpointError, match="cannot convert the released weights"):
        lseg.load_model(NAME)
    _dir().joinpath("tiny_test.ckpt").write_bytes(tiny_ckpt_bytes)  # the right file, as the docs say
    assert lseg.load_model(NAME).config.name == "lseg_tiny_test"
    record = json.loads((_dir() / "record.json").read_text())
    assert record["source"] == "local" and record["sha256"] == weights.sha256_file(_dir() / "tiny_test.ckpt")
    assert released.log == []
