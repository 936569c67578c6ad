"""``lseg features`` (.npy export), run in-process on generated photographs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lseg.cli import build_parser, main
from lseg.features.options import FeaturesOptions, StoreOptions
from lseg.options import options_from_args


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


def test_features_options_come_from_typed_configs():

    parser = build_parser()
    args = parser.parse_args(["features", "in", "-o", "out"])
    assert options_from_args(FeaturesOptions, args) == FeaturesOptions(out="out")
    assert options_from_args(StoreOptions, args) == StoreOptions()
    args = parser.parse_args(["features", "in", "-o", "out", "--dtype", "float32", "--resolution", "input", "--pca",
                              "--every-n", "3", "--shard", "0/2", "--overwrite", "-q", "--format", "store",
                              "--preset", "reference", "--scales", "0.5,1", "--no-flip", "--reduce", "8",
                              "--frames-per-shard", "4", "--engine", "ray", "--workers", "3",
                              "--gpus-per-worker", "0.5", "--ray-address", "auto"])
    assert options_from_args(FeaturesOptions, args) == FeaturesOptions(
        out="out", dtype="float32", resolution="input", pca=True, every_n=3, shard="0/2", overwrite=True, quiet=True)
    assert options_from_args(StoreOptions, args) == StoreOptions(
        format="store", preset="reference", scales=(0.5, 1.0), flip=False, reduce=8, frames_per_shard=4,
        engine="ray", workers=3, gpus_per_worker=0.5, ray_address="auto")
    with pytest.raises(SystemExit):  # one way to sample video frames
        parser.parse_args(["features", "in", "-o", "out", "--fps", "2", "--every-n", "3"])


def test_query_and_store_read_typed_configs():
    from lseg.features.options import (
        QueryOptions,
        StoreExportOptions,
        StoreReduceOptions,
    )

    parser = build_parser()
    args = parser.parse_args(["query", "st", "chair, table", "-o", "q", "--frames", "0:3", "--heatmaps",
                              "--template", "a {}."])
    assert options_from_args(QueryOptions, args) == QueryOptions(
        store="st", labels="chair, table", out="q", frames="0:3", heatmaps=True, templates=("a {}.",))
    args = parser.parse_args(["store", "reduce", "st", "8", "-q"])
    assert options_from_args(StoreReduceOptions, args) == StoreReduceOptions("st", 8, quiet=True)
    args = parser.parse_args(["store", "export", "st", "--layout", "openscene", "-o", "x", "--reduced"])
    assert options_from_args(StoreExportOptions, args) == StoreExportOptions(
        "st", "openscene", "x", reduced=True)
    with pytest.raises(SystemExit):
        parser.parse_args(["store", "export", "st", "--layout", "other", "-o", "x"])


def test_features_takes_no_template_option(capsys):
    """Image features use no text: ``--template`` would be a setting that changes nothing."""
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["features", "x", "-o", "y", "--template", "a {}"])
    assert e.value.code == 2 and "--template" in capsys.readouterr().err
    assert "--template" not in build_parser()._subparsers._group_actions[0].choices["features"].format_help()
