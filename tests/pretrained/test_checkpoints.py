"""Official checkpoint remapping, strict key accounting, safe loading, and our folder format.

Bad checkpoints through the command line (``lseg info``, ``lseg convert``, ``lseg segment -c``):
each exits with code 2 and exactly one ``error: ...`` line on stderr, no traceback, no output files;
a pickle that would run code is refused without running it.

Released-checkpoint containers, read as downloaded.

Every file here is written by ``refimpl.lightning14`` in a subprocess, laid out exactly as the
released lang-seg ``.ckpt`` files (PyTorch-Lightning 1.4.9 / torch 1.9 zip under ``archive/``,
storages tagged ``cuda:0``, callback *classes* as dict keys, optimizer and scheduler state), one per
network family. This process never imports the stand-in ``pytorch_lightning`` modules.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hostile_inputs import one_error_line, scene
from PIL import Image
from refimpl.lightning14 import write_released_layouts
from refimpl.lseg_reference import RefLSegNet
from safetensors.torch import load_file, save_file

import lseg
from lseg.cli import main
from lseg.errors import CheckpointError
from lseg.pretrained.checkpoints import (
    UNUSED_OFFICIAL_KEYS,
    convert_official_state_dict,
    infer_config,
    load_weights,
    read_checkpoint,
    read_state_dict,
    save_pretrained,
)
from lseg.pretrained.files import ALLOWED_GLOBALS


@pytest.fixture
def tiny_model():
    """A fresh model: exact round-trip comparisons must not see another test's settings."""
    torch.manual_seed(0)
    return lseg.create_model("lseg_tiny_test")


OFFICIAL = {
    # reference --backbone name: (our registry name, official key count from the spec for ViT-L)
    "clip_vitl16_384": "lseg_vitl16_384",
    "clipRN50x16_vitl16_384": "lseg_rn50x16_vitl16_384",
    "clip_vitb32_384": "lseg_vitb32_384",
}


@pytest.mark.parametrize("backbone", list(OFFICIAL))
def test_official_key_map_is_exact_for_every_backbone(backbone):
    """The full-size official state dict (exact reference key names and shapes, built on the meta
    device) maps onto our model with no missing, unexpected or mis-shaped key."""
    with torch.device("meta"):
        ref = RefLSegNet(backbone)
        ours = lseg.LSeg(lseg.get_config(OFFICIAL[backbone]))
    official = {"net." + k: v for k, v in ref.state_dict().items()}  # Lightning module attribute
    if backbone == "clip_vitl16_384":  # the spec's census of the demo/ADE20K network (section 4.1)
        assert len(official) == 730
        assert sum(v.numel() for k, v in official.items() if "running_" not in k and "num_batches" not in k) == 495_136_489
    converted = convert_official_state_dict(official)
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    # everything that was dropped is on the documented list of unused reference weights
    import re

    unused = re.compile("|".join(UNUSED_OFFICIAL_KEYS))
    dropped = [k[4:] for k in official if not _maps(k)]
    assert dropped and all(unused.fullmatch(k) for k in dropped)
    assert any(k.startswith("clip_pretrained.visual.") for k in dropped)
    # the architecture can be recovered from shapes alone
    assert infer_config(official) == lseg.get_config(OFFICIAL[backbone])


def _maps(key: str) -> bool:
    try:
        return bool(convert_official_state_dict({key: torch.empty(0)}))
    except CheckpointError:
        return False


def _tiny_official(tmp_path: Path, arch_option: int = 0) -> tuple[Path, dict]:
    from refimpl.tiny import tiny_reference

    torch.manual_seed(0)
    ref = tiny_reference("lseg_tiny_test", arch_option=arch_option, block_depth=2 if arch_option else 0)
    ckpt = {
        "epoch": 3, "global_step": 100, "pytorch-lightning_version": "1.4.9",
        "state_dict": {"net." + k: v for k, v in ref.state_dict().items()},
        "optimizer_states": [], "lr_schedulers": [], "callbacks": {},
    }
    path = tmp_path / "official.ckpt"
    torch.save(ckpt, path)
    return path, ckpt


def test_load_official_lightning_ckpt_strictly(tmp_path):
    path, ckpt = _tiny_official(tmp_path)
    model = lseg.load_model(path)
    assert model.config.name == "lseg_tiny_test"
    sd = ckpt["state_dict"]
    torch.testing.assert_close(
        model.decoder.fusion[3].rcu.conv1.weight, sd["net.scratch.refinenet4.resConfUnit2.conv1.weight"]
    )
    # fp16 CLIP matrices and token embedding load losslessly, the positional embedding stays fp32
    w = model.text_encoder.model.transformer.resblocks[0].attn.in_proj_weight
    assert w.dtype == torch.float16
    assert torch.equal(w, sd["net.clip_pretrained.transformer.resblocks.0.attn.in_proj_weight"])
    tok = model.text_encoder.model.token_embedding.weight
    assert tok.dtype == torch.float16 and torch.equal(tok.float(), sd["net.clip_pretrained.token_embedding.weight"])
    assert model.text_encoder.model.positional_embedding.dtype == torch.float32


def test_spatial_block_checkpoint_needs_arch_option(tmp_path):
    path, _ = _tiny_official(tmp_path, arch_option=1)
    with pytest.raises(CheckpointError, match="arch_option=1\\|2 and block_depth"):
        lseg.load_model(path)
    model = lseg.load_model(path, spatial_block=lseg.SpatialBlockConfig(arch_option=1, block_depth=2))
    assert model.config.arch_option == 1 and model.spatial_block is not None


def test_missing_unexpected_and_misshaped_keys_are_listed(tiny_model):
    sd = dict(tiny_model.state_dict())
    sd.pop("pixel_proj.bias")
    sd["decoder.extra.weight"] = torch.zeros(1)
    sd["decoder.layer_rn.0.weight"] = torch.zeros(3, 3)
    model = lseg.LSeg(tiny_model.config)
    with pytest.raises(CheckpointError) as e:
        load_weights(model, sd)
    msg = str(e.value)
    assert "1 missing: pixel_proj.bias" in msg
    assert "1 unexpected: decoder.extra.weight" in msg
    assert "decoder.layer_rn.0.weight (3, 3) != (16, 8, 3, 3)" in msg
    assert "\n" not in msg


def test_unknown_official_key_is_an_error():
    with pytest.raises(CheckpointError, match="unknown key"):
        convert_official_state_dict({"scratch.head1.weight": torch.zeros(1), "pretrained.foo.bar": torch.zeros(1)})


def test_wrong_dtype_in_safetensors_is_refused(tiny_model, tmp_path):
    from safetensors.torch import save_file

    sd = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    sd["pixel_proj.weight"] = sd["pixel_proj.weight"].to(torch.int32)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="wrong dtype: pixel_proj.weight torch.int32"):
        lseg.create_model("lseg_tiny_test", checkpoint=tmp_path / "bad.safetensors")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"net.x": torch.zeros(1)}, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load .*would run code"):
        read_state_dict(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    # an old-style (non-zip) pickle is refused too
    legacy = tmp_path / "evil.pth"
    with open(legacy, "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(CheckpointError):
        read_state_dict(legacy)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_a_pickle_protocol_weights_only_cannot_read_is_judged_by_its_opcodes(tmp_path, monkeypatch):
    """weights_only lacks protocol 4's opcodes: the error says whether the pickle names code to run
    (read with pickletools, nothing unpickled) or just needs re-saving."""
    monkeypatch.chdir(tmp_path)
    evil, plain = tmp_path / "evil4.ckpt", tmp_path / "plain4.ckpt"
    torch.save({"state_dict": {"net.x": torch.zeros(1)}, "payload": _Evil()}, evil, pickle_protocol=4)
    torch.save({"state_dict": {"net.x": torch.zeros(1)}}, plain, pickle_protocol=4)
    with pytest.raises(CheckpointError, match="would run code.*GLOBAL posix.system"):
        read_state_dict(evil)
    with pytest.raises(CheckpointError, match="pickle protocol above 2; re-save it"):
        read_state_dict(plain)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


@pytest.mark.parametrize("kind", ["ckpt", "safetensors"])
def test_truncated_and_empty_files(tiny_model, tmp_path, kind):
    path = tmp_path / f"m.{kind}"
    if kind == "ckpt":
        torch.save({"state_dict": tiny_model.state_dict()}, path)
    else:
        save_pretrained(tiny_model, tmp_path)
        path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_state_dict(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "missing.ckpt")


def test_damaged_model_tensors_are_refused_by_their_zip_crc(tiny_model, tmp_path, capsys):
    """torch.load checks no CRC: bytes zeroed inside a model tensor's record loaded as silently wrong
    weights. A damaged record the model never reads (optimizer state) still loads."""
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": tiny_model.state_dict(), "optimizer_states": [{"m": torch.ones(50_000)}]}, path)
    with zipfile.ZipFile(path) as zf:
        records = sorted((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())

    def damaged(info: zipfile.ZipInfo) -> Path:  # 64 zero bytes in the middle of the record's data
        start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2
        out = tmp_path / f"damaged-{info.filename.rsplit('/', 1)[-1]}.ckpt"
        out.write_bytes(bytes(data[:start]) + bytes(64) + bytes(data[start + 64:]))
        return out

    optimizer_record = next(i for i in records if i.file_size == 200_000)  # the 50,000 floats of momentum
    model_record = next(i for i in reversed(records) if i is not optimizer_record)
    bad = damaged(model_record)
    with pytest.raises(CheckpointError, match=r"truncated or corrupt\?\).*CRC-32"):
        lseg.load_model(bad)
    assert main(["info", str(bad)]) == 2
    assert "CRC-32" in capsys.readouterr().err
    assert lseg.load_model(damaged(optimizer_record)).config.name == "lseg_tiny_test"


def test_save_load_round_trip_is_bit_exact(tiny_model, tmp_path):
    out = save_pretrained(tiny_model, tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format_version"] == 1 and cfg["name"] == "lseg_tiny_test"
    loaded = lseg.load_model(out)
    a, b = tiny_model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(tiny_model(x, ["a", "b"]), loaded(x, ["a", "b"]))


def test_save_pretrained_saves_the_network_a_training_wrapper_holds(tiny_model, tmp_path):
    """save_pretrained(DataParallel(model)), as training code holds it, raised AttributeError ('DataParallel'
    object has no attribute 'precision'); so did any other module."""
    out = save_pretrained(torch.nn.DataParallel(tiny_model), tmp_path / "m")
    assert lseg.load_model(out).state_dict().keys() == tiny_model.state_dict().keys()
    with pytest.raises(TypeError, match="save_pretrained takes an lseg model, not a Linear"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "n")


def test_save_pretrained_expands_the_home_folder(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    out = save_pretrained(tiny_model, "~/m")
    assert out == tmp_path / "home" / "m" and (out / "model.safetensors").is_file()
    assert not (tmp_path / "~").exists()  # no folder literally named ~


def test_bad_config_json(tiny_model, tmp_path):
    out = save_pretrained(tiny_model, tmp_path / "m")
    (out / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        lseg.load_model(out)
    (out / "config.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(CheckpointError, match="unsupported format_version 99"):
        lseg.load_model(out)


def test_non_state_dict_pickle(tmp_path):
    path = tmp_path / "x.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        read_state_dict(path)
    assert zipfile.is_zipfile(path)


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

    p = root / "garbage.pth"  # starts like a pickle; an opcode weights_only lacks, and no global
    p.write_bytes(b"\x80\x02garbage" * 3)
    out["pickle-like garbage"] = (p, "torch's safe loader does not support its pickle (Unsupported operand")

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
    "pickle that runs code (zip)", "pickle that runs code (legacy)", "pickle-like garbage", "text file", "html page",
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
    """``lseg info`` describes a folder from config.json and the weights' header (no loading), then
    refuses weights that do not fit the config, as loading them would (convert / segment above)."""
    path, _ = bad_checkpoints["extra keys"]
    assert main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert info["config"]["name"] == "lseg_tiny_test" and info["tensors"] == 202 and not info["weights_fit"]
    assert "does not fit lseg_tiny_test: 1 unexpected" in captured.err


@pytest.mark.slow  # the installed entry point, in its own process
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


FAMILIES = {
    # our tiny registry name: the released network family it has the layout of
    "lseg_tiny_test": "ViT-L/16 (demo_e200, fss_l16)",
    "lseg_tiny_test_p32": "ViT-B/32",
    "lseg_tiny_test_rn": "ResNet-101 zero-shot (pascal_fold*, coco_fold*, fss_rn101)",
}


@pytest.fixture(scope="module")
def released(released_layouts: dict[str, tuple[Path, torch.nn.Module]]) -> dict[str, tuple[Path, torch.nn.Module]]:
    """One released-layout file per network family (the session's, fake_drive.RELEASED_LAYOUTS)."""
    return {name: released_layouts[name] for name in FAMILIES}


def test_the_fixture_is_the_torch19_lightning14_container(released):
    path, _ = released["lseg_tiny_test"]
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names[0] == "archive/data.pkl" and names[-1] == "archive/version"
        assert all(n.startswith("archive/data/") for n in names[1:-1])
        assert zf.read("archive/version") == b"3\n"
        assert not any("byteorder" in n or ".data/" in n for n in names)  # torch >= 2 adds those
        for info in zf.infolist()[1:-1]:  # data records are 64-byte aligned, as torch's writer does
            assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 64 == 0
        pkl = zf.read("archive/data.pkl")
    assert pkl[:2] == b"\x80\x02"  # pickle protocol 2
    assert b"cuda:0" in pkl and b"\ncpu" not in pkl
    assert b"pytorch_lightning.callbacks.model_checkpoint\nModelCheckpoint" in pkl
    for key in (b"optimizer_states", b"lr_schedulers", b"native_amp_scaling_state", b"momentum_buffer"):
        assert key in pkl
    assert "pytorch_lightning" not in sys.modules


@pytest.mark.parametrize("name", list(FAMILIES))
def test_released_layout_loads_strictly_and_equals_the_bare_state_dict(released, name, tmp_path, capsys):
    path, ref = released[name]
    ckpt = read_checkpoint(path)
    assert ckpt.format == "lightning"
    assert ckpt.metadata["pytorch-lightning_version"] == "1.4.9"
    assert ckpt.metadata["epoch"] == 199 and ckpt.metadata["global_step"] == 101_400
    assert ckpt.metadata["callbacks"] == ["EarlyStopping", "ModelCheckpoint"]

    model = lseg.load_model(path)
    assert model.config == lseg.get_config(name)
    bare = lseg.LSeg(lseg.get_config(name))
    load_weights(bare, ref.state_dict())  # the bare state dict, straight from the network
    a, b = model.state_dict(), bare.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)

    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "lightning"
    assert info["lightning"]["pytorch-lightning_version"] == "1.4.9" and info["lightning"]["epoch"] == 199
    assert info["config"]["name"] == name
    # parameters as the reference counts them (BatchNorm statistics are buffers, not parameters)
    assert info["parameters"] == sum(p.numel() for p in ref.parameters())
    assert info["tensors"] == len(ref.state_dict())

    out = tmp_path / "converted"
    assert main(["convert", str(path), str(out)]) == 0
    converted = lseg.load_model(out)
    c = converted.state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("variant", [("--legacy",), ("--hyper-parameters",), ("--legacy", "--hyper-parameters")])
def test_legacy_container_and_hyper_parameters_load(released_layouts, variant):
    path, ref = released_layouts["-".join(v.removeprefix("--") for v in variant)]
    assert zipfile.is_zipfile(path) == ("--legacy" not in variant)
    ckpt = read_checkpoint(path)
    if "--hyper-parameters" in variant:
        assert "hyper_parameters" in ckpt.metadata["contents"]
    model = lseg.load_model(path)
    torch.testing.assert_close(model.pixel_proj.weight, ref.scratch.head1.weight, rtol=0, atol=0)


@pytest.mark.parametrize("payload,name", [("unknown-global", "my_project.callbacks.CustomCallback"),
                                          ("code", "posix.system")])
def test_unknown_globals_and_code_are_refused_in_one_line(released_layouts, tmp_path, capsys, payload, name):
    path, _ = released_layouts[f"payload-{payload}"]
    with pytest.raises(CheckpointError) as e:
        lseg.load_model(path)
    assert f"Unsupported global: GLOBAL {name}" in str(e.value) and "\n" not in str(e.value)
    for cmd in (["info", str(path)], ["convert", str(path), str(tmp_path / "out")]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: refusing to load") and err.count("\n") == 1
    assert not path.with_suffix(".PWNED").exists()  # the reduce never ran
    assert not (tmp_path / "out").exists()


def test_allowlisted_names_resolve_to_inert_stand_ins():
    from lseg.pretrained.files import _stand_ins

    pairs = {name: obj for obj, name in _stand_ins()}
    assert set(pairs) == set(ALLOWED_GLOBALS)
    cb = pairs["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"]
    assert cb.__module__ == "pytorch_lightning.callbacks.model_checkpoint" and cb(1, x=2) is not None
    assert pairs["pytorch_lightning.utilities.parsing.AttributeDict"]() == {}


_PEAK = """
import gc, sys
from pathlib import Path
from lseg.cli import main

def status(field):  # KiB
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))

small, big, out = sys.argv[1:]
assert main(["convert", small, out + "/warm-up"]) == 0  # imports and first-call allocations
growth = []
for i, path in enumerate((small, big)):
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from VmRSS
    base = status("VmRSS")
    assert main(["convert", path, f"{out}/{i}"]) == 0
    growth.append(status("VmHWM") - base)
print(*growth)
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs")
def test_optimizer_state_is_never_read_into_memory(tmp_path):
    """Converting a file with ~300 MB of optimizer state costs no more memory than one without:
    the zip is memory-mapped and only the model's tensors are touched. Both conversions in one fresh
    process (after a warm-up conversion), each measured from the peak reset to the resident size."""
    layouts = write_released_layouts(tmp_path, {"small": ("lseg_tiny_test", ()),
                                                "big": ("lseg_tiny_test", ("--extra-optimizer-mb", "300"))})
    (small, _), (big, _) = layouts["small"], layouts["big"]
    assert big.stat().st_size > small.stat().st_size + 300e6
    r = subprocess.run([sys.executable, "-c", _PEAK, str(small), str(big), str(tmp_path / "out")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    growth = [int(x) / 1024 for x in r.stdout.split()[-2:]]  # MiB
    assert growth[1] - growth[0] < 100, growth


def test_a_training_checkpoint_loads_with_the_model_config_it_was_trained_with(tmp_path, capsys):
    """last.ckpt / best-*.ckpt keep the model config: a spatial block, readout and normalisation that
    the shapes cannot tell load as trained; an older checkpoint without it loads as before."""
    from train.helpers import tiny_train_config

    from lseg.models.config import SpatialBlockConfig
    from lseg.train import train
    from lseg.train.toy import make_toy_dataset

    config = lseg.get_config("lseg_tiny_test").replace(
        readout="add", mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711),
    ).with_spatial_block(SpatialBlockConfig(arch_option=2, block_depth=3, activation="tanh"))
    torch.manual_seed(0)
    start = lseg.save_pretrained(lseg.LSeg(config), tmp_path / "start")
    data = make_toy_dataset(tmp_path / "data", num_images=2, size=64, seed=0)
    cfg = tiny_train_config(data, tmp_path / "run").replace(init_checkpoint=str(start), max_steps=1)
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    model = lseg.load_model(last)
    assert model.config.replace(name=config.name) == config
    assert main(["info", str(last)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights_fit"] and info["config"]["readout"] == "add" and info["config"]["arch_option"] == 2
    # a checkpoint from before the config was stored: the shapes, as before (a block must be named)
    old = torch.load(last, map_location="cpu", weights_only=True)
    del old["model_config"]
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="arch_option"):
        lseg.load_model(tmp_path / "old.ckpt")
    block = SpatialBlockConfig(arch_option=2, block_depth=3, activation="tanh")
    assert lseg.load_model(tmp_path / "old.ckpt", spatial_block=block).config.arch_option == 2


def test_the_training_checkpoint_format_is_the_one_lseg_train_writes():
    from lseg.pretrained.files import TRAIN_CHECKPOINT_FORMAT
    from lseg.train.state import CHECKPOINT_FORMAT

    assert TRAIN_CHECKPOINT_FORMAT == CHECKPOINT_FORMAT  # pretrained sits below train: the name is repeated


def test_output_errors_of_save_pretrained_are_one_line(tiny_model, tiny_dir, tmp_path, monkeypatch, capsys):
    """A file where the output folder should be, and a full disk while writing the weights, are one
    OutputWriteError naming the path (CLI: ``error: ...``, exit 2); nothing is left half-written."""
    import errno

    from safetensors import SafetensorError

    from lseg.errors import OutputWriteError
    from lseg.pretrained import checkpoints

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(OutputWriteError, match=r"^cannot write .*afile/sub: Not a directory; check the"):
        save_pretrained(tiny_model, afile / "sub")
    assert main(["convert", str(tiny_dir), str(afile / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and "Not a directory" in err and "Traceback" not in err

    def full_disk(tensors, path, metadata=None):
        Path(path).write_bytes(b"half")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoints, "save_file", full_disk)
    out = tmp_path / "out"
    with pytest.raises(OutputWriteError) as e:
        save_pretrained(tiny_model, out)
    assert e.value.errno == errno.ENOSPC and "\n" not in str(e.value)
    assert str(e.value).startswith(f"cannot write {out / 'model.safetensors'}: No space left on device; free")
    assert list(out.iterdir()) == []  # the temp file removed, nothing half-written
    assert main(["convert", str(tiny_dir), str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: cannot write")
