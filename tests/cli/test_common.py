"""The shared options (:mod:`lseg.cli.common`): predictor settings as a typed config, model source, labels."""

from __future__ import annotations

import pytest

from lseg.cli.common import (
    PREDICTOR_FLAGS,
    PredictorOptions,
    add_labels_args,
    add_model_args,
    add_predictor_args,
    make_predictor,
)
from lseg.cli.parser import Parser
from lseg.config_args import config_from_args


def _parser() -> Parser:
    p = Parser(prog="lseg x")
    add_model_args(p, pretrained_default=True)
    add_predictor_args(p)
    return p


def test_predictor_options_from_the_command_line():
    p = _parser()
    assert config_from_args(PredictorOptions, p.parse_args([]), PREDICTOR_FLAGS) == PredictorOptions()
    args = p.parse_args(["--size", "0", "--crop-size", "64", "--stride", "32", "--template", "a {}.",
                         "--template", "the {}", "--precision", "fp32", "--batch-size", "2", "--compile"])
    assert config_from_args(PredictorOptions, args, PREDICTOR_FLAGS) == PredictorOptions(
        size=None, crop_size=64, stride=32, templates=("a {}.", "the {}"), precision="fp32", batch_size=2,
        compile=True,
    )
    text = " ".join(p.format_help().split())
    assert "(0: native) (default: 480)" in text and "--precision {auto,fp32,bf16,fp16}" in text


def test_make_predictor_uses_the_options(capsys):
    args = _parser().parse_args(["--random-weights", "lseg_tiny_test", "--device", "cpu", "--size", "64",
                                 "--crop-size", "64", "--stride", "48", "--template", "a {}.", "--precision", "fp32"])
    predictor = make_predictor(args)
    assert (predictor.size, predictor.crop_size, predictor.stride, predictor.precision) == (64, 64, 48, "fp32")
    assert list(predictor.templates) == ["a {}."]
    assert "lseg: running on cpu in fp32" in capsys.readouterr().err


def test_model_and_labels_are_exclusive_pairs():
    p = Parser(prog="lseg x")
    add_model_args(p)
    add_labels_args(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "a", "--random-weights", "b", "-l", "x"])
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "a"])  # labels required
    args = p.parse_args(["-c", "a", "--labels-file", "f.txt"])
    assert (args.checkpoint, args.labels_file, args.labels) == ("a", "f.txt", None)
