"""``lseg features`` (.npy export), run in-process on generated photographs."""

from __future__ import annotations

import json

import numpy as np

from lseg.cli import main


def test_features_export_is_resumable(photos, model_dir, tmp_path, capsys):
    out = tmp_path / "feats"
    args = ["features", str(photos), "-c", str(model_dir), "-o", str(out), "--size", "64", "-q"]
    assert main(args) == 0
    manifest = json.loads((out / "features.json").read_text())
    assert manifest["dtype"] == "float16" and manifest["layout"] == "CHW"
    arr = np.load(out / "a.npy")
    assert arr.dtype == np.float16 and arr.shape == (32, 24, 32)  # 96x128 -> 48x64 working -> /2
    np.testing.assert_allclose(np.linalg.norm(arr.astype(np.float32), axis=0), 1, atol=2e-3)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    assert len(before) == 3
    (out / "sub" / "c.npy").unlink()
    assert main(args) == 0
    assert "1 written, 2 already done" in capsys.readouterr().err
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    assert {p for p in after if after[p] != before.get(p)} == {out / "sub" / "c.npy"}
