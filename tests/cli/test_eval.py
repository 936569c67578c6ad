"""``lseg eval``'s options (:mod:`lseg.cli.eval`): generated from ``EvalConfig`` and ``EvalRun``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lseg.cli import build_parser
from lseg.cli.eval import EvalRun, _options
from lseg.errors import ConfigError
from lseg.eval.config import ADE20K_SCALES, EvalConfig
from lseg.labels import DEFAULT_TEMPLATES
from lseg.options import options_from_args


def _args(*extra: str):
    return build_parser().parse_args(["eval", "--random-weights", "lseg_tiny_test", "-d", *extra])


def _eval_config(args) -> EvalConfig:
    return _options(args)[0]


def test_defaults_are_the_config_defaults():
    args = _args("ade20k", "--data-root", "/data")
    assert _eval_config(args) == EvalConfig(dataset="ade20k", data_root="/data")
    assert _eval_config(args).protocol == "semantic"
    assert options_from_args(EvalRun, args) == EvalRun()


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
    assert options_from_args(EvalRun, args) == EvalRun(devices=2, num_nodes=3, out="r.json", per_class=True,
                                                       quiet=True)


def test_fewshot_protocol_follows_the_dataset_and_folds():
    cfg = _eval_config(_args("fss1000", "--data-root", "/d", "--fold", "all", "--fewshot-size", "64",
                             "--num-episodes", "5", "--seed", "3"))
    assert (cfg.protocol, cfg.folds, cfg.fewshot_size, cfg.num_episodes, cfg.seed) == ("fewshot", (0, 1, 2, 3), 64, 5, 3)
    assert _eval_config(_args("pascal5i", "--data-root", "/d", "--fold", "1,3")).folds == (1, 3)
    assert EvalConfig(dataset="coco20i").protocol == "fewshot"  # the Python API derives it too


@pytest.mark.parametrize(("extra", "message"), [
    (["--fold", "x"], "--fold must be an integer, got 'x'"),
    (["--fold", "4"], "--fold must be in [0, 3], got 4"),
    (["--scales", "a,b"], "--scales must be a number, got 'a'"),
    (["--scales", "0,1"], "--scales must be positive, got 0"),
    (["--dataset-kwargs", "[1, 2]"], "--dataset-kwargs must be a mapping, got [1, 2]"),
    (["--size", "-5"], "--size must be at least 1, got -5"),
    (["--crop-size", "16"], "--crop-size must be at least 32, got 16"),
    (["--stride-rate", "1.5"], "--stride-rate must be in (0, 1], got 1.5"),
    (["--stride-rate", "0"], "--stride-rate must be in (0, 1], got 0"),
    (["--base-size", "8"], "--base-size must be at least 32, got 8"),
    (["--fewshot-size", "0"], "--fewshot-size must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--num-workers", "-1"], "--num-workers must be at least 0, got -1"),
    (["--max-samples", "0"], "--max-samples must be at least 1, got 0"),
    (["--num-episodes", "0"], "--num-episodes must be at least 1, got 0"),
    (["--template", "a photo"], "--template: template 1 'a photo' must contain exactly one"),
    (["--protocol", "fewshot"], "--dataset 'ade20k' goes with --protocol semantic or open-vocab, not 'fewshot'"),
    (["--devices", "0"], "--devices must be at least 1, got 0"),
    (["--num-nodes", "0"], "--num-nodes must be at least 1, got 0"),
])
def test_bad_values_name_the_option(extra, message):
    with pytest.raises(ConfigError) as e:
        _options(_args("ade20k", "--data-root", "/d", *extra))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_python_api_checks_alike():
    for kwargs, message in [({"crop_size": 16}, "crop_size must be at least 32, got 16"),
                            ({"stride_rate": 2.0}, "stride_rate must be in (0, 1], got 2"),
                            ({"folds": ()}, "folds must name at least one fold"),
                            ({"folds": (5,)}, "folds must be in [0, 3], got 5"),
                            ({"precision": "int4"}, "precision must be one of"),
                            ({"dataset": "fss1000", "protocol": "semantic"}, "dataset 'fss1000' goes with protocol")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
            EvalConfig(**kwargs)


def test_the_config_default_scales_are_the_predictors():
    from lseg.inference.predictor import ADE20K_SCALES as PREDICTOR_SCALES

    assert ADE20K_SCALES == PREDICTOR_SCALES and EvalConfig().scales == PREDICTOR_SCALES


def test_eval_help_imports_no_torch():
    """``lseg eval --help`` builds its options from torch-free configs (it took ~5 s when they came from
    lseg.eval.evaluate); parsing its options imports no torch either."""
    code = ("import sys, contextlib, io, lseg.cli; p = lseg.cli.build_parser()\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try: p.parse_args(['eval', '--help'])\n"
            "    except SystemExit: pass\n"
            "p.parse_args(['eval', '-d', 'ade20k', '--data-root', 'x', '-c', 'm'])\n"
            "print('--fold FOLDS' in out.getvalue(), [m for m in ('torch', 'lseg.eval.evaluate', 'lseg.data')"
            " if m in sys.modules])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert run.stdout.strip() == "True []", run.stdout + run.stderr
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "lseg.cli", "eval", "--help"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0 and "--data-root" in run.stdout
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "lseg.eval.config" in imported and not imported & {"torch", "numpy", "lseg.eval.evaluate"}


def test_a_report_path_that_cannot_be_written_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from lseg.cli import main

    def no_model(*a, **k):
        raise AssertionError("the model must not load")

    monkeypatch.setattr("lseg.cli.common.load_source_model", no_model)
    (tmp_path / "img").mkdir()
    base = ["eval", "--random-weights", "lseg_tiny_test", "-d", "folder", "--data-root", str(tmp_path)]
    assert main([*base, "--out", str(tmp_path / "img")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out ") and "is a folder: give a file name" in err[0]
    (tmp_path / "f").write_text("x")  # a file where the report's folder should be
    assert main([*base, "--out", str(tmp_path / "f" / "r.json")]) == 2
    assert "f" in capsys.readouterr().err
    assert main(["bench", "--json", str(tmp_path / "img")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --json ") and "is a folder" in err[0]
