"""Bad checkpoints through the command line (``lseg info``, ``lseg convert``, ``lseg segment -c``):
each exits with code 2 and exactly one ``error: ...`` line on stderr, no traceback, no output files;
a pickle that would run code is refused without running it."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from hardening.helpers import one_error_line, scene
from PIL import Image
from safetensors.torch import load_file, save_file

import lseg
from lseg.cli import main


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_PICKLE",))


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(scene(40, 56)).save(path)
    return path


def _folder(root: Path, name: str, tiny_dir: Path, tensors: dict | None = None, config: str | None = None) -> Path:
    """An lseg model folder: tiny_dir's config.json + the given tensors (default: tiny_dir's)."""
    d = root / name
    d.mkdir()
    if config is None:
        shutil.copy(tiny_dir / "config.json", d / "config.json")
    else:
        (d / "config.json").write_text(config)
    if tensors is None:
        shutil.copy(tiny_dir / "model.safetensors", d / "model.safetensors")
    else:
        save_file(tensors, str(d / "model.safetensors"))
    return d


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory, tiny_dir) -> dict[str, tuple[Path, str]]:
    """name -> (checkpoint path, text the error line must contain)."""
    root = tmp_path_factory.mktemp("bad_ckpt")
    sd = load_file(str(tiny_dir / "model.safetensors"))
    out: dict[str, tuple[Path, str]] = {}

    d = _folder(root, "truncated_folder", tiny_dir)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    out["truncated safetensors (folder)"] = (d, "truncated or corrupt")

    p = root / "truncated.safetensors"
    p.write_bytes(data[: len(data) // 3])
    out["truncated safetensors (file)"] = (p, "truncated or corrupt")

    p = root / "truncated.ckpt"
    torch.save({"state_dict": {"net." + k: v for k, v in sd.items()}}, p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    out["truncated ckpt"] = (p, "truncated or corrupt")

    p = root / "empty.ckpt"
    p.write_bytes(b"")
    out["empty file"] = (p, "empty (0 bytes)")

    p = root / "evil.ckpt"
    torch.save({"state_dict": {"net.x": torch.zeros(1)}, "payload": _Evil()}, p)
    out["pickle that runs code (zip)"] = (p, "refusing to load")

    p = root / "evil_legacy.pth"
    with open(p, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    out["pickle that runs code (legacy)"] = (p, "refusing to load")

    p = root / "notes.ckpt"
    p.write_text("these are my notes, not a checkpoint\n")
    out["text file"] = (p, "is not a checkpoint")

    p = root / "page.pth"
    p.write_text("<html><body>403 Forbidden</body></html>")
    out["html page"] = (p, "is not a checkpoint")

    p = root / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(10, 4)}, p)
    out["another network's weights"] = (p, "not an LSeg state dict")

    other = lseg.create_model("lseg_tiny_test_p32").state_dict()
    d = _folder(root, "wrong_architecture", tiny_dir, tensors={k: v.contiguous() for k, v in other.items()})
    out["wrong architecture (p32 weights, p16 config)"] = (d, "does not fit lseg_tiny_test")

    missing = {k: v for k, v in sd.items() if not k.startswith("decoder.fusion.0.")}
    out["missing keys"] = (_folder(root, "missing_keys", tiny_dir, tensors=missing), "missing: decoder.fusion.0.")

    extra = dict(sd, **{"decoder.extra.weight": torch.zeros(3)})
    out["extra keys"] = (_folder(root, "extra_keys", tiny_dir, tensors=extra), "1 unexpected: decoder.extra.weight")

    wrong_shape = dict(sd, **{"pixel_proj.weight": torch.zeros(7, 7)})
    out["wrong shape"] = (_folder(root, "wrong_shape", tiny_dir, tensors=wrong_shape), "wrong shape: pixel_proj.weight")

    wrong_dtype = dict(sd, **{"pixel_proj.weight": sd["pixel_proj.weight"].to(torch.int32)})
    out["wrong dtype"] = (_folder(root, "wrong_dtype", tiny_dir, tensors=wrong_dtype), "wrong dtype: pixel_proj.weight")

    p = root / "wrong_dtype.safetensors"  # no config.json next to it: the shapes are inspected
    save_file(wrong_dtype, str(p))
    out["wrong dtype (file)"] = (p, "wrong dtype: pixel_proj.weight")

    out["broken config.json"] = (_folder(root, "bad_config", tiny_dir, config="{not json"), "not valid JSON")
    cfg = json.dumps({**json.loads((tiny_dir / "config.json").read_text()), "format_version": 99})
    out["future config version"] = (_folder(root, "future", tiny_dir, config=cfg), "unsupported format_version 99")

    d = root / "no_config"
    d.mkdir()
    out["folder without config.json"] = (d, "no config.json")
    out["missing path"] = (root / "does_not_exist.ckpt", "not found")
    return out


CASES = [
    "truncated safetensors (folder)", "truncated safetensors (file)", "truncated ckpt", "empty file",
    "pickle that runs code (zip)", "pickle that runs code (legacy)", "text file", "html page",
    "another network's weights", "wrong architecture (p32 weights, p16 config)", "missing keys", "extra keys",
    "wrong shape", "wrong dtype", "wrong dtype (file)", "broken config.json", "future config version",
    "folder without config.json", "missing path",
]
#: ``lseg info`` describes a checkpoint (config.json + the safetensors header, or the architecture
#: inferred from tensor shapes) without building the model, so weights that do not fit are only
#: an error for the commands that load them.
INFO_DESCRIBES_ONLY = {
    "missing keys", "extra keys", "wrong shape", "wrong dtype", "wrong dtype (file)",
    "wrong architecture (p32 weights, p16 config)",
}


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint_is_one_error_line_for_every_command(case, bad_checkpoints, photo_path, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the evil pickle would drop its file
    path, expected = bad_checkpoints[case]
    commands = {
        "convert": ["convert", str(path), str(tmp_path / "converted")],
        "segment": ["segment", str(photo_path), "-l", "sky,grass", "-c", str(path), "-o", str(tmp_path / "seg"),
                    "-q", "--size", "32"],
    }
    if case not in INFO_DESCRIBES_ONLY:
        commands["info"] = ["info", str(path)]
    for name, argv in commands.items():
        rc = main(argv)
        captured = capsys.readouterr()
        assert rc == 2, (name, captured)
        line = one_error_line(captured.err)
        assert expected in line, (name, line)
        assert captured.out == ""
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    assert not (tmp_path / "converted").exists() or not any((tmp_path / "converted").iterdir())
    assert not (tmp_path / "seg").exists() or not any((tmp_path / "seg").iterdir())


def test_info_on_a_folder_with_mismatched_weights_reports_their_count(bad_checkpoints, capsys):
    """``lseg info`` describes a folder from config.json and the weights' header (no loading); the
    mismatch surfaces as an error as soon as the weights are used (convert / segment above)."""
    path, _ = bad_checkpoints["extra keys"]
    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["name"] == "lseg_tiny_test" and info["tensors"] == 202


def test_evil_pickle_in_a_real_process(bad_checkpoints, photo_path, tmp_path, run_cli):
    """The installed entry point: one stderr line, exit code 2, the payload never ran."""
    path, _ = bad_checkpoints["pickle that runs code (zip)"]
    proc = run_cli("segment", str(photo_path), "-l", "sky,grass", "-c", str(path), "-o", str(tmp_path / "o"),
                   cwd=tmp_path)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "refusing to load" in line and "would run code" in line and "posix.system" in line
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_good_checkpoint_still_loads(tiny_dir, photo_path, tmp_path, capsys):
    assert main(["info", str(tiny_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["tensors"] == 201
    assert main(["segment", str(photo_path), "-l", "sky,grass", "-c", str(tiny_dir), "-o", str(tmp_path), "-q",
                 "--size", "32"]) == 0
