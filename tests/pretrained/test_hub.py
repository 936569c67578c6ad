"""Hub-style save/load: bit-exact round trip, offline behaviour, model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lseg
from lseg import LSeg


@pytest.fixture(scope="module")
def model() -> LSeg:
    torch.manual_seed(0)
    return lseg.create_model("lseg_tiny_test_p32")


def test_save_load_round_trip_is_bit_exact(model: LSeg, tmp_path: Path) -> None:
    out = lseg.save_pretrained(model, tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    loaded = lseg.load_model(out)
    assert loaded.config == model.config
    assert json.loads((out / "config.json").read_text())["name"] == "lseg_tiny_test_p32"
    ref, got = model.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        assert ref[k].dtype == got[k].dtype, k  # fp16 CLIP matrices stay fp16
        assert torch.equal(ref[k], got[k]), k
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(model.normalize(x), ["dog", "grass", "other"]),
                           loaded(loaded.normalize(x), ["dog", "grass", "other"]))


def test_from_pretrained_local_folder_offline(model: LSeg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    d = lseg.save_pretrained(model, tmp_path / "local")
    assert lseg.load_model(str(d)).config == model.config
    # a single .safetensors file next to its config.json works too
    assert lseg.load_model(d / "model.safetensors").config == model.config


def test_hub_id_offline_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # so "someone/lseg-model" is not a local folder
    with pytest.raises(lseg.CheckpointError, match="offline.*not in the local Hub cache"):
        lseg.load_model("someone/lseg-model", cache_dir=tmp_path / "cache", local_files_only=True)


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(lseg.CheckpointError, match="checkpoint not found"):
        lseg.load_model(str(tmp_path / "nope" / "model.safetensors"))


def test_push_to_hub_offline_is_a_clear_error(model: LSeg, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(lseg.LSegError, match="cannot push to 'me/lseg'"):
        lseg.push_to_hub(model, "me/lseg", token="hf_dummy")


def test_push_to_hub_without_network_is_a_clear_error(model: LSeg, monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTTP client's own error (httpx2 for huggingface_hub 2.x) becomes one line."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(lseg.LSegError, match="cannot push to 'me/lseg': .*no network, or the Hub is unreachable"):
        lseg.push_to_hub(model, "me/lseg", token="hf_dummy")


def test_model_card(model: LSeg, tmp_path: Path) -> None:
    d = lseg.save_pretrained(model, tmp_path / "card", model_card=True, repo_id="me/lseg-tiny", trained_on="nothing")
    card = (d / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: lseg\n")
    assert "# me/lseg-tiny: LSeg (lseg_tiny_test_p32)" in card
    assert "| Trained on | nothing |" in card
    for ckpt in ("demo_e200.ckpt", "lseg_ade20k_l16.ckpt", "fss_l16.ckpt", "fss_rn101.ckpt", "pascal_fold{0,1,2,3}",
                 "coco_fold{0,1,2,3}"):
        assert ckpt in card
    assert "lseg convert demo_e200.ckpt lseg-demo/" in card
    assert "{{" not in card
    # the card does not change what is loaded
    assert lseg.load_model(d).config == model.config
