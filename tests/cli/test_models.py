"""The model-file commands: ``lseg convert`` and ``lseg info`` on an official-layout checkpoint."""

from __future__ import annotations

import json

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
    from lseg.cli.models import (
        CONVERT_FLAGS,
        DOWNLOAD_FLAGS,
        INFO_FLAGS,
        PATH_FLAGS,
        ConvertOptions,
        DownloadOptions,
        InfoOptions,
        PathOptions,
    )
    from lseg.options import config_from_args

    parser = build_parser()
    args = parser.parse_args(["convert", "a.ckpt", "out"])
    assert config_from_args(ConvertOptions, args, CONVERT_FLAGS) == ConvertOptions("a.ckpt", "out")
    assert config_from_args(InfoOptions, parser.parse_args(["info", "x"]), INFO_FLAGS) == InfoOptions("x")
    args = parser.parse_args(["weights", "download", "a", "b", "--force"])
    assert config_from_args(DownloadOptions, args, DOWNLOAD_FLAGS) == DownloadOptions(("a", "b"), force=True)
    assert config_from_args(PathOptions, parser.parse_args(["weights", "path", "n"]), PATH_FLAGS) == PathOptions("n")
