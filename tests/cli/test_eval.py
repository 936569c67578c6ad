"""``lseg eval``'s options (:mod:`lseg.cli.eval`): generated from ``EvalConfig`` and ``EvalRun``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lseg.cli import build_parser
from lseg.cli.eval import RUN_FLAGS, EvalRun, _eval_config
from lseg.errors import ConfigError
from lseg.eval.evaluate import EvalConfig
from lseg.labels import DEFAULT_TEMPLATES
from lseg.options import config_from_args


def _args(*extra: str):
    return build_parser().parse_args(["eval", "--random-weights", "lseg_tiny_test", "-d", *extra])


def test_defaults_are_the_config_defaults():
    args = _args("ade20k", "--data-root", "/data")
    assert _eval_config(args) == EvalConfig(dataset="ade20k", data_root="/data")
    assert config_from_args(EvalRun, args, RUN_FLAGS) == EvalRun()


def test_every_option_reaches_the_config():
    args = _args("pc59", "--data-root", "/d", "--protocol", "open-vocab", "--split", "train", "--label-style", "x",
                 "--template", "default", "--template", "a {}.", "--multiscale", "--size", "0", "--crop-size", "64",
                 "--stride-rate", "0.5", "--scales", "0.5,1", "--base-size", "96", "--no-flip", "--batch-size", "2",
                 "--num-workers", "0", "--max-samples", "3", "--precision", "bf16", "--dataset-kwargs", "{aug: true}",
                 "-q", "--devices", "2", "--num-nodes", "3", "-o", "r.json", "--per-class")
    assert _eval_config(args) == EvalConfig(
        protocol="open-vocab", dataset="pc59", data_root="/d", split="train", label_style="x",
        templates=(*DEFAULT_TEMPLATES, "a {}."), multiscale=True, size=None, crop_size=64, stride_rate=0.5,
        scales=(0.5, 1.0), base_size=96, flip=False, batch_size=2, num_workers=0, max_samples=3, precision="bf16",
        dataset_kwargs={"aug": True}, progress=False,
    )
    assert config_from_args(EvalRun, args, RUN_FLAGS) == EvalRun(devices=2, num_nodes=3, out="r.json", per_class=True,
                                                                 quiet=True)


def test_fewshot_protocol_follows_the_dataset_and_folds():
    cfg = _eval_config(_args("fss1000", "--data-root", "/d", "--fold", "all", "--fewshot-size", "64",
                             "--num-episodes", "5", "--seed", "3"))
    assert (cfg.protocol, cfg.folds, cfg.fewshot_size, cfg.num_episodes, cfg.seed) == ("fewshot", (0, 1, 2, 3), 64, 5, 3)
    assert _eval_config(_args("pascal5i", "--data-root", "/d", "--fold", "1,3")).folds == (1, 3)


@pytest.mark.parametrize(("extra", "message"), [
    (["--fold", "x"], "--fold must be 0..3"),
    (["--scales", "a,b"], "--scales must be comma-separated numbers"),
    (["--dataset-kwargs", "[1, 2]"], "--dataset-kwargs must be a YAML mapping"),
])
def test_bad_values_name_the_option(extra, message):
    with pytest.raises(ConfigError, match=message):
        _eval_config(_args("ade20k", "--data-root", "/d", *extra))


def test_the_parser_imports_the_config_only_for_eval():
    code = ("import sys, lseg.cli; p = lseg.cli.build_parser(); print('lseg.eval.evaluate' in sys.modules); "
            "p.parse_args(['eval', '-d', 'ade20k', '--data-root', 'x', '-c', 'm']); "
            "print('lseg.eval.evaluate' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert run.stdout.split() == ["False", "True"], run.stderr


def test_a_report_path_that_cannot_be_written_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from lseg.cli import main

    def no_model(*a, **k):
        raise AssertionError("the model must not load")

    monkeypatch.setattr("lseg.cli.eval.load_model_from_args", no_model)
    (tmp_path / "img").mkdir()
    base = ["eval", "--random-weights", "lseg_tiny_test", "-d", "folder", "--data-root", str(tmp_path)]
    assert main([*base, "--out", str(tmp_path / "img")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "is a folder: give a file name" in err[0]
    (tmp_path / "f").write_text("x")  # a file where the report's folder should be
    assert main([*base, "--out", str(tmp_path / "f" / "r.json")]) == 2
    assert "f" in capsys.readouterr().err
    assert main(["bench", "--json", str(tmp_path / "img")]) == 2
    assert "--json" in capsys.readouterr().err
