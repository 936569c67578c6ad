"""A ``config.json`` is untrusted input: wrong types, absurd sizes and degenerate constants are
refused in one line before anything is allocated."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
import zlib

import pytest
import torch

import lseg
from lseg.cli import main
from lseg.errors import CheckpointError


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    return lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path / "m")


def _edit(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        section, _, field = key.rpartition("__")
        (cfg[section] if section else cfg)[field] = value
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes,message", [
    ({"features": "16"}, "LSegConfig.features must be int, got str"),
    ({"backbone__depth": 4.0}, "ViTConfig.depth must be int, got float"),
    ({"backbone__hooks": "abcd"}, "ViTConfig.hooks must be a list of 4 numbers"),
    ({"readout": "mean"}, "readout must be one of"),
    ({"backbone__depth": 10**9}, "backbone.depth = 1000000000 is outside 1..48"),
    ({"text__layers": 100000}, "text.layers = 100000 is outside 1..24"),
    ({"backbone__timm_name": "vit_giant_patch14_224"}, "backbone.timm_name must be one of"),
    ({"backbone__hooks": [0, 1, 2, 7]}, "backbone.hooks[3] = 7 must be below the backbone depth 4"),
    ({"logit_scale": float("nan")}, "logit_scale must be a positive finite number"),
    ({"std": [0.5, 0.0, 0.5]}, "std finite and > 0"),
])
def test_hostile_or_broken_config_is_refused_before_building(saved, changes, message, capsys):
    _edit(saved, **changes)
    with pytest.raises(CheckpointError, match="config.json: ") as e:
        lseg.load_model(saved)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert main(["info", str(saved)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_top_level_list_is_refused(saved):
    (saved / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="must be a JSON object, got list"):
        lseg.load_model(saved)


def test_every_registered_config_round_trips_through_json():
    from lseg.models.config import LSegConfig
    from lseg.models.registry import check_limits

    for name in lseg.list_models(include_test=True):
        cfg = lseg.get_config(name)
        check_limits(cfg)
        assert LSegConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


_PEAK = """
import sys
import lseg
from lseg.errors import CheckpointError
try:
    lseg.load_model(sys.argv[1])
except CheckpointError as e:
    print("REFUSED", e)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) parent across exec
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


class _RepeatedChunk:
    """A raw-deflate compressor for a stream of one repeated chunk: the chunk is compressed once and
    ends with a full flush (which empties the window), so every repeat is the same bytes. Deflating
    3 GB at level 9 took 15-40 s; this takes 0.3 s (plus zipfile's CRC of the 3 GB, 1 s)."""

    def __init__(self, chunk: bytes) -> None:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        self.chunk = chunk
        self.piece = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
        self.end = c.flush(zlib.Z_FINISH)

    def compress(self, data: bytes) -> bytes:
        assert data is self.chunk
        return self.piece

    def flush(self) -> bytes:
        return self.end


@pytest.mark.slow  # a fresh process: its peak memory is the measure
def test_a_zip_whose_pickle_inflates_is_refused_without_reading_it(tmp_path, monkeypatch):
    """3 MB on disk, 3 GB once inflated: refused from the zip directory, in a few hundred MB."""
    bomb = tmp_path / "bomb.ckpt"
    chunk = b"\x00" * (64 << 20)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with monkeypatch.context() as m:
            m.setattr(zipfile, "_get_compressor", lambda *a: _RepeatedChunk(chunk))
            with zf.open("archive/data.pkl", "w", force_zip64=True) as f:
                for _ in range(48):
                    f.write(chunk)
        zf.writestr("archive/version", "3\n")
    assert bomb.stat().st_size < 8 << 20
    with zipfile.ZipFile(bomb) as zf:  # a valid deflate stream of zeros
        info = zf.getinfo("archive/data.pkl")
        assert info.file_size == 48 * len(chunk) and info.compress_type == zipfile.ZIP_DEFLATED
        with zf.open(info) as f:
            assert f.read(len(chunk) + 4096) == b"\x00" * (len(chunk) + 4096)
    r = subprocess.run([sys.executable, "-c", _PEAK, str(bomb)], capture_output=True, text=True, check=True)
    out = r.stdout.split("\n")
    assert out[0].startswith("REFUSED") and "compressed" in out[0]
    assert int(out[1]) / 1024 < 1500  # MiB: nothing near the 3 GB was ever allocated


def test_a_stored_record_that_claims_more_than_the_file_holds_is_corrupt(tmp_path):
    path = tmp_path / "short.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[:200] + data[-(len(data) - 3000):])  # cut from the middle, directory intact
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        lseg.load_model(path)
