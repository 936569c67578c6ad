"""``lseg export onnx``'s options (:mod:`lseg.cli.export`): generated from ``OnnxExportOptions``."""

from __future__ import annotations

import inspect

import pytest

from lseg.cli import build_parser, main
from lseg.cli.export import OnnxExportOptions
from lseg.options import options_from_args


def test_export_options_come_from_its_typed_config():
    parser = build_parser()
    args = parser.parse_args(["export", "onnx", "-o", "out", "-c", "m"])
    assert options_from_args(OnnxExportOptions, args) == OnnxExportOptions(out="out")
    args = parser.parse_args(["export", "onnx", "-o", "out", "-c", "m", "--size", "64", "96", "--fixed-size",
                              "--opset", "17", "--no-verify", "--atol", "0.01"])
    assert options_from_args(OnnxExportOptions, args) == OnnxExportOptions(
        out="out", size=(64, 96), fixed_size=True, opset=17, verify=False, atol=0.01)
    text = " ".join(parser._subparsers._group_actions[0].choices["export"]._subparsers._group_actions[0]
                    .choices["onnx"].format_help().split())
    assert "--no-verify skip the onnxruntime vs PyTorch comparison after export --atol" in text  # no default shown
    assert "--opset OPSET the ONNX opset (default: 18)" in text


def test_the_options_defaults_are_the_exporters():
    pytest.importorskip("onnxruntime")
    from lseg.export.onnx import DEFAULT_OPSET, export_onnx

    defaults = {k: p.default for k, p in inspect.signature(export_onnx).parameters.items()}
    opts = OnnxExportOptions(out="x")
    assert opts.opset == DEFAULT_OPSET == defaults["opset"] and opts.atol == defaults["atol"]
    assert opts.verify is defaults["verify"] and opts.size == (defaults["size"],)


@pytest.mark.parametrize(("extra", "message"), [
    (["--size", "64", "64", "64"], "--size takes one or two numbers (S or H W), got 3"),
    (["--size", "0"], "--size must be at least 1, got 0"),
    (["--atol", "0"], "--atol must be positive, got 0"),
    (["--opset", "0"], "--opset must be at least 1, got 0"),
])
def test_bad_export_options_are_one_line_before_the_model_loads(tmp_path, extra, message, capsys, monkeypatch):
    monkeypatch.setattr("lseg.cli.common.load_source_model", lambda *a, **k: pytest.fail("model loaded"))
    assert main(["export", "onnx", "--random-weights", "lseg_tiny_test", "-o", str(tmp_path / "o"), *extra]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert not (tmp_path / "o").exists()


def test_an_existing_file_is_refused_as_the_output_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("lseg.cli.common.load_source_model", lambda *a, **k: pytest.fail("model loaded"))
    (tmp_path / "taken").write_text("x")
    assert main(["export", "onnx", "--random-weights", "lseg_tiny_test", "-o", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out ") and "is a file, not a folder" in err[0]


def test_export_takes_no_device_option(capsys):
    """The export runs on the CPU (its graphs run on any onnxruntime provider): ``--device`` changed nothing."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "onnx", "--random-weights", "lseg_tiny_test", "-o", "x", "--device", "cuda"])
    assert "unrecognized arguments: --device cuda" in capsys.readouterr().err
