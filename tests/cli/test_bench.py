"""``lseg bench``: one table with the baseline, and its JSON rows."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest

from lseg.cli import build_parser, main
from lseg.cli.bench import BenchOptions
from lseg.errors import ConfigError
from lseg.eval.benchmark import BenchRow, bench, run_one
from lseg.options import options_from_args


@pytest.mark.slow  # a fresh process per row, as users run it
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
    assert main(["bench", "--precision", "int4"]) == 2  # more bad values: test_bad_bench_options_are_one_line...


def _in_this_process(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """What ``python -m lseg.eval.benchmark JSON`` prints, computed here (the test above runs the rows
    in their own processes)."""
    row = run_one(**json.loads(cmd[-1]))
    return subprocess.CompletedProcess(cmd, 0, json.dumps(asdict(row)) + "\n", "")


def test_bench_pairs_a_batch_with_batch_1(capsys, monkeypatch):
    import lseg.eval.benchmark

    monkeypatch.setattr(lseg.eval.benchmark, "subprocess", SimpleNamespace(run=_in_this_process))
    rows = bench(
        "lseg_tiny_test", precisions=("fp32",), batches=(1, 2), size=64, repeats=1, threads=1)
    assert [(r.precision, r.batch) for r in rows] == [("reference", 1), ("fp32", 1), ("fp32", 2)]
    assert rows[1].vs_batch1 is None and rows[2].vs_batch1 > 0  # per-image speed against batch 1, paired


def _fake_row(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """A row without running it: its argmax map written where bench() reads it."""
    args = json.loads(cmd[-1])
    np.save(args["argmax_out"], np.zeros((2, 2), np.uint16))
    row = BenchRow(args["precision"], args["precision"], args["batch"], args["compile"], 1.0, 1.0, 1.0)
    return subprocess.CompletedProcess(cmd, 0, json.dumps(asdict(row)) + "\n", "")


@pytest.mark.parametrize("precisions", [("fp32",), ("fp32", "auto"), ("bf16",)])
def test_compiled_rows_get_the_eager_fp32_agreement_reference(precisions, monkeypatch):
    """--compile on: no eager fp32 row was asked for; one is added (it raised StopIteration)."""
    import lseg.eval.benchmark

    monkeypatch.setattr(lseg.eval.benchmark, "subprocess", SimpleNamespace(run=_fake_row))
    rows = bench("lseg_tiny_test", precisions=precisions, batches=(2, 1), size=64, repeats=1, threads=1,
                 compiles=(True,))
    assert [(r.precision, r.batch, r.compiled) for r in rows] == [
        ("reference", 1, False), *((p, b, True) for p in precisions for b in (2, 1)), ("fp32", 2, False)]
    assert all(r.agreement == 1.0 for r in rows)


@pytest.mark.slow  # one fresh process
@pytest.mark.parametrize("profile", [False, True])
def test_a_user_mistake_in_a_fresh_process_is_one_line(profile, tmp_path, capsys):
    """A checkpoint that is not there fails in the first fresh process: its LSegError is this command's
    one `error:` line and exit 2, not a RuntimeError traceback."""
    rc = main(["bench", "-c", str(tmp_path / "none"), "--size", "64", "--repeats", "1", "--threads", "1",
               *(["--profile"] if profile else [])])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: checkpoint not found: {tmp_path / 'none'}"]


def test_bench_options_come_from_its_typed_config():
    parser = build_parser()
    assert options_from_args(BenchOptions, parser.parse_args(["bench"])) == BenchOptions()
    args = parser.parse_args(["bench", "--model", "m", "-c", "ck", "--precision", "bf16, fp16", "--batch-size", "1,8",
                              "--size", "64", "--device", "cpu", "--repeats", "2", "--threads", "4",
                              "--compile", "off,on", "--json", "r.json"])
    assert options_from_args(BenchOptions, args) == BenchOptions(
        model="m", checkpoint="ck", precisions=("bf16", "fp16"), batch_sizes=(1, 8), size=64, device="cpu",
        repeats=2, threads=4, compile="off,on", json="r.json")
    with pytest.raises(ConfigError, match="--batch-size must be an integer, got 'x'"):
        options_from_args(BenchOptions, parser.parse_args(["bench", "--batch-size", "1,x"]))
    text = " ".join(parser._subparsers._group_actions[0].choices["bench"].format_help().split())
    assert "--compile off|on|off,on torch.compile" in text and "{off,on,off,on}" not in text
    assert "auto, fp32, bf16, fp16, int8 (default: fp32,auto)" in text


@pytest.mark.parametrize(("extra", "message"), [
    (["--precision", "int4"], "--precision must be one of 'auto', 'fp32', 'bf16', 'fp16', 'int8', got 'int4'"),
    (["--precision", "fp32,int8", "--compile", "off,on"], "--compile does not apply to precision int8"),
    (["--precision", ","], "--precision takes at least one value"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--size", "16"], "--size must be at least 32, got 16"),
    (["--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--device", "gpu"], "--device 'gpu' is not a device"),
    (["--model", "nosuch"], "--model: unknown model 'nosuch'; available: "),
])
def test_bad_bench_options_are_one_line_before_any_work(extra, message, capsys, monkeypatch):
    import lseg.eval.benchmark

    monkeypatch.setattr(lseg.eval.benchmark, "bench", lambda *a, **k: pytest.fail("benchmark ran"))
    assert main(["bench", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
