"""Official checkpoint remapping, strict key accounting, safe loading, and our folder format."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from refimpl.lseg_reference import RefLSegNet

import lseg
from lseg.checkpoints import (
    UNUSED_OFFICIAL_KEYS,
    convert_official_state_dict,
    infer_config,
    load_weights,
    read_state_dict,
    save_pretrained,
)
from lseg.errors import CheckpointError


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
    # fp16 CLIP matrices load losslessly, fp32 embeddings stay fp32
    w = model.text_encoder.model.transformer.resblocks[0].attn.in_proj_weight
    assert w.dtype == torch.float16
    assert torch.equal(w, sd["net.clip_pretrained.transformer.resblocks.0.attn.in_proj_weight"])
    assert model.text_encoder.model.token_embedding.weight.dtype == torch.float32


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
