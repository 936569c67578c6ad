"""``lseg bench``: one table with the baseline, and its JSON rows."""

from __future__ import annotations

import json

from lseg.cli import main


def test_bench_prints_one_table_with_the_baseline(capsys, tmp_path):
    rc = main(["bench", "--model", "lseg_tiny_test", "--size", "64", "--precision", "fp32,bf16", "--repeats", "1",
               "--threads", "1", "--json", str(tmp_path / "bench.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "reference numerics" in out and "img/s" in out and "argmax agree" in out
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert [r["precision"] for r in rows] == ["reference", "fp32", "bf16"]
    assert rows[1]["agreement"] == 1.0 and all(r["images_per_s"] > 0 and r["peak_mib"] > 0 for r in rows)
    assert main(["bench", "--precision", "int4"]) == 2
