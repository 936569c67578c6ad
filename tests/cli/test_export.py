"""``lseg export onnx``'s options (:mod:`lseg.cli.export`): generated from ``OnnxExportOptions``."""

from __future__ import annotations

from lseg.cli import build_parser
from lseg.cli.export import ONNX_FLAGS, OnnxExportOptions
from lseg.options import config_from_args


def test_export_options_come_from_its_typed_config():
    parser = build_parser()
    args = parser.parse_args(["export", "onnx", "-o", "out", "-c", "m"])
    assert config_from_args(OnnxExportOptions, args, ONNX_FLAGS) == OnnxExportOptions(out="out")
    args = parser.parse_args(["export", "onnx", "-o", "out", "-c", "m", "--size", "64", "96", "--fixed-size",
                              "--opset", "17", "--no-verify", "--atol", "0.01"])
    assert config_from_args(OnnxExportOptions, args, ONNX_FLAGS) == OnnxExportOptions(
        out="out", size=(64, 96), fixed_size=True, opset=17, verify=False, atol=0.01)
    text = " ".join(parser._subparsers._group_actions[0].choices["export"]._subparsers._group_actions[0]
                    .choices["onnx"].format_help().split())
    assert "--no-verify skip the onnxruntime vs PyTorch comparison after export --atol" in text  # no default shown
