"""``lseg bench``: one table with the baseline, and its JSON rows."""

from __future__ import annotations

import json

import pytest

from lseg.cli import build_parser, main
from lseg.cli.bench import BENCH_FLAGS, BenchOptions
from lseg.errors import ConfigError
from lseg.eval.benchmark import bench
from lseg.options import config_from_args


def test_bench_prints_one_table_with_the_baseline(capsys, tmp_path):
    rc = main(["bench", "--model", "lseg_tiny_test", "--size", "64", "--precision", "fp32,bf16", "--repeats", "1",
               "--threads", "1", "--json", str(tmp_path / "bench.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "reference numerics" in out and "img/s" in out and "argmax agree" in out
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert [r["precision"] for r in rows] == ["reference", "fp32", "bf16"]
    assert rows[1]["agreement"] == 1.0 and all(r["images_per_s"] > 0 and r["peak_mib"] > 0 for r in rows)
    assert rows[0]["speedup"] == 1.0 and all(r["speedup"] > 0 for r in rows)  # paired with the baseline
    assert "back-to-back pairs" in out
    assert "150 labels s" in out and all(r["labels150_s"] > 0 for r in rows)
    assert main(["bench", "--precision", "int4"]) == 2


def test_bench_pairs_a_batch_with_batch_1(capsys):
    rows = bench(
        "lseg_tiny_test", precisions=("fp32",), batches=(1, 2), size=64, repeats=1, threads=1)
    assert [(r.precision, r.batch) for r in rows] == [("reference", 1), ("fp32", 1), ("fp32", 2)]
    assert rows[1].vs_batch1 is None and rows[2].vs_batch1 > 0  # per-image speed against batch 1, paired


def test_bench_options_come_from_its_typed_config():
    parser = build_parser()
    assert config_from_args(BenchOptions, parser.parse_args(["bench"]), BENCH_FLAGS) == BenchOptions()
    args = parser.parse_args(["bench", "--model", "m", "-c", "ck", "--precision", "bf16, fp16", "--batch-size", "1,8",
                              "--size", "64", "--device", "cuda", "--repeats", "2", "--threads", "4",
                              "--compile", "off,on", "--json", "r.json"])
    assert config_from_args(BenchOptions, args, BENCH_FLAGS) == BenchOptions(
        model="m", checkpoint="ck", precisions=("bf16", "fp16"), batch_sizes=(1, 8), size=64, device="cuda",
        repeats=2, threads=4, compile="off,on", json="r.json")
    with pytest.raises(ConfigError, match="--batch-size takes comma-separated integers"):
        config_from_args(BenchOptions, parser.parse_args(["bench", "--batch-size", "1,x"]), BENCH_FLAGS)
