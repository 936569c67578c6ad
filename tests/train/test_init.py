"""Where a run's weights come from: a checkpoint to fine-tune, or CLIP text weights for a fresh model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lseg
from lseg.errors import CheckpointError
from lseg.train import TrainConfig
from lseg.train.init import build_model, load_clip_text_weights


def _tiny(seed: int) -> lseg.LSeg:
    torch.manual_seed(seed)
    return lseg.create_model("lseg_tiny_test")


def test_clip_text_weights_from_a_state_dict_file_or_an_lseg_folder(tmp_path: Path):
    source = _tiny(0)
    # OpenAI / open_clip names: token_embedding.weight, transformer.resblocks.*, ln_final.*, text_projection
    clip_file = tmp_path / "clip_text.safetensors"
    save_file({k: v.contiguous() for k, v in source.text_encoder.model.state_dict().items()}, str(clip_file))
    with torch.no_grad():
        expected = source.encode_text(["a dog", "grass"])
    for src in (clip_file, lseg.save_pretrained(source, tmp_path / "folder")):
        target = _tiny(1)
        with torch.no_grad():
            assert not torch.allclose(target.encode_text(["a dog", "grass"]), expected)
            load_clip_text_weights(target, src)
            torch.testing.assert_close(target.encode_text(["a dog", "grass"]), expected)
        assert not any(p.requires_grad for p in target.text_encoder.parameters())


def test_clip_text_weights_errors(tmp_path: Path):
    partial = tmp_path / "partial.safetensors"
    save_file({"token_embedding.weight": torch.zeros(49408, 32)}, str(partial))
    with pytest.raises(CheckpointError, match="missing"):
        load_clip_text_weights(_tiny(0), partial)
    with pytest.raises(CheckpointError, match="neither"):
        load_clip_text_weights(_tiny(0), tmp_path / "nope.pt")


def test_build_model_fine_tunes_from_a_checkpoint(tmp_path: Path):
    source = _tiny(3)
    folder = lseg.save_pretrained(source, tmp_path / "init")
    model = build_model(TrainConfig(model="lseg_vitl16_384", init_checkpoint=str(folder)))
    assert model.training and model.config.name == "lseg_tiny_test"  # the checkpoint's architecture wins
    for (name, a), b in zip(source.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


def test_an_official_checkpoint_with_a_spatial_block_names_a_way_lseg_train_has(tmp_path: Path):
    """lseg train has no --arch-option / --block-depth (before: the error named only those flags)."""
    from pretrained.test_checkpoints import _tiny_official

    path, _ = _tiny_official(tmp_path, arch_option=1)
    with pytest.raises(CheckpointError, match=r"lseg train has neither: `lseg convert CKPT DIR` with them, "
                       r"then --init-checkpoint DIR\)") as e:
        build_model(TrainConfig(init_checkpoint=str(path)))
    assert "\n" not in str(e.value)
