"""The model-file commands: ``lseg convert`` and ``lseg info`` on an official-layout checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

import lseg
from lseg.cli import main


def test_convert_and_info_official_checkpoint(tmp_path, capsys):
    from refimpl.tiny import tiny_reference

    torch.manual_seed(0)
    ref = tiny_reference("lseg_tiny_test")
    ckpt = tmp_path / "demo_e200.ckpt"
    torch.save({"state_dict": {"net." + k: v for k, v in ref.state_dict().items()}, "epoch": 200}, ckpt)
    assert main(["info", str(ckpt)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["name"] == "lseg_tiny_test" and info["tensors"] == len(ref.state_dict())
    out = tmp_path / "converted"
    assert main(["convert", str(ckpt), str(out)]) == 0
    assert "converted" in capsys.readouterr().out
    model = lseg.load_model(out)
    torch.testing.assert_close(model.pixel_proj.weight, ref.scratch.head1.weight)
    assert main(["info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["features"] == 16
    # a tensor dropped, one added, one reshaped: the header check catches it without loading
    from safetensors.torch import load_file, save_file

    sd = load_file(out / "model.safetensors")
    sd.pop("pixel_proj.bias")
    sd["extra.weight"] = torch.zeros(2)
    sd["pixel_proj.weight"] = sd["pixel_proj.weight"][:, :8].contiguous()
    save_file(sd, out / "model.safetensors")
    assert main(["info", str(out)]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["weights_fit"] is False
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "does not fit lseg_tiny_test: 1 missing: pixel_proj.bias; 1 unexpected: extra.weight; " \
        "1 with wrong shape: pixel_proj.weight" in err[0]


def test_model_file_commands_read_typed_configs():
    from lseg.cli import build_parser
    from lseg.cli.common import ArchOptions
    from lseg.cli.models import ConvertOptions, DownloadOptions, InfoOptions, PathOptions
    from lseg.options import options_from_args

    parser = build_parser()
    args = parser.parse_args(["convert", "a.ckpt", "out"])
    assert options_from_args(ConvertOptions, args) == ConvertOptions("a.ckpt", "out")
    args = parser.parse_args(["info", "x", "--arch-option", "2", "--block-depth", "3"])
    assert options_from_args(InfoOptions, args) == InfoOptions("x", ArchOptions(arch_option=2, block_depth=3))
    args = parser.parse_args(["weights", "download", "a", "b", "--force"])
    assert options_from_args(DownloadOptions, args) == DownloadOptions(("a", "b"), force=True)
    assert options_from_args(PathOptions, parser.parse_args(["weights", "path", "n"])) == PathOptions("n")
    text = " ".join(parser._subparsers._group_actions[0].choices["convert"].format_help().split())
    assert "CHECKPOINT official .ckpt (or any readable checkpoint) OUT output folder" in text


def test_convert_refuses_a_file_as_its_output_folder_before_loading(tmp_path, capsys, monkeypatch):
    import lseg.pretrained.load

    monkeypatch.setattr(lseg.pretrained.load, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    (tmp_path / "taken").write_text("x")
    assert main(["convert", "a.ckpt", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: OUT ") and "is a file, not a folder" in err[0]
    assert main(["info", "a.ckpt", "--block-depth", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --block-depth must be at least 1, got 0"
