"""The shared options (:mod:`lseg.cli.common`): predictor settings as a typed config, model source, labels."""

from __future__ import annotations

import pytest

from lseg.cli.common import LabelsOptions, PredictorOptions, add_model_args, make_predictor
from lseg.cli.parser import Parser
from lseg.errors import ConfigError
from lseg.options import add_options, options_from_args


def _parser() -> Parser:
    p = Parser(prog="lseg x")
    add_model_args(p, pretrained_default=True)
    add_options(p, PredictorOptions)
    return p


def test_predictor_options_from_the_command_line():
    p = _parser()
    assert options_from_args(PredictorOptions, p.parse_args([])) == PredictorOptions()
    args = p.parse_args(["--size", "0", "--crop-size", "64", "--stride", "32", "--template", "a {}.",
                         "--template", "the {}", "--precision", "fp32", "--batch-size", "2", "--compile"])
    assert options_from_args(PredictorOptions, args) == PredictorOptions(
        size=None, crop_size=64, stride=32, templates=("a {}.", "the {}"), precision="fp32", batch_size=2,
        compile=True,
    )
    text = " ".join(p.format_help().split())
    assert "native) (default: 480)" in text and "--precision {auto,fp32,bf16,fp16,int8}" in text
    for bad, message in ((["--crop-size", "16"], "--crop-size must be at least 32, got 16"),
                         (["--stride", "600"], "--stride (600) must not exceed --crop-size (480)"),
                         (["--template", "a photo"], "--template: template 1 'a photo' must contain exactly one")):
        with pytest.raises(ConfigError) as e:
            options_from_args(PredictorOptions, p.parse_args(bad))
        assert message in str(e.value)


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
    add_options(p, LabelsOptions)
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "a", "--random-weights", "b", "-l", "x"])
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "a"])  # labels required
    args = p.parse_args(["-c", "a", "--labels-file", "f.txt"])
    assert (args.checkpoint, args.labels_file, args.labels) == ("a", "f.txt", None)


def test_model_source_and_spatial_block_come_from_typed_configs():
    from lseg.cli.common import ArchOptions, LabelsOptions, ModelSource, model_source_from_args
    from lseg.models.config import SpatialBlockConfig

    p = Parser(prog="lseg x")
    add_model_args(p)
    add_options(p, LabelsOptions)
    args = p.parse_args(["-c", "a", "--device", "cpu", "--arch-option", "2", "--block-depth", "3", "-l", "x, y"])
    assert model_source_from_args(args) == ModelSource(
        checkpoint="a", device="cpu", arch=ArchOptions(arch_option=2, block_depth=3))
    assert model_source_from_args(args).arch.spatial_block() == SpatialBlockConfig(2, 3, "lrelu")
    assert options_from_args(LabelsOptions, args) == LabelsOptions(labels="x, y")
    args = p.parse_args(["--random-weights", "lseg_tiny_test", "-l", "x"])
    source = model_source_from_args(args)
    assert (source.random_weights, source.checkpoint, args.pretrained_default) == ("lseg_tiny_test", None, False)
    assert source.arch.spatial_block() is None
    # a block half named, or named for a network that has none, was silently left out
    half = "give --arch-option and --block-depth together (an official checkpoint's spatial block; --activation"
    for extra, message in ((["-c", "a", "--arch-option", "1", "--activation", "tanh"], half),
                           (["-c", "a", "--block-depth", "2"], half),
                           (["--random-weights", "lseg_tiny_test", "--arch-option", "1", "--block-depth", "2"],
                            "--arch-option is for official checkpoints, not --random-weights")):
        with pytest.raises(ConfigError) as e:
            model_source_from_args(p.parse_args([*extra, "-l", "x"]))
        assert str(e.value).startswith(message)
    with pytest.raises(SystemExit):
        p.parse_args(["-c", "a", "--arch-option", "3", "-l", "x"])
    optional = Parser(prog="lseg y")
    add_model_args(optional, pretrained_default=True)
    args = optional.parse_args([])
    # the default weights by name (records, stores), said on stderr when they load
    assert model_source_from_args(args) == ModelSource(checkpoint="demo", defaulted=True) and args.pretrained_default
