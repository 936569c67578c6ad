"""Every configuration of the main network builds and runs (tiny random models)."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import with_bn_stats

import lseg
from lseg.errors import ConfigError
from lseg.models.config import LSegConfig, TextEncoderConfig


def _tiny(**changes) -> LSegConfig:
    return lseg.get_config("lseg_tiny_test").replace(**changes)


def test_registry_lists_reference_backbones():
    names = lseg.list_models()
    assert {"lseg_vitl16_384", "lseg_vitb32_384", "lseg_rn50x16_vitl16_384"} <= set(names)
    assert "lseg_tiny_test" not in names and "lseg_tiny_test" in lseg.list_models(include_test=True)
    # the reference's --backbone names are aliases
    assert lseg.get_config("clip_vitl16_384") == lseg.get_config("lseg_vitl16_384")
    assert lseg.get_config("clipRN50x16_vitl16_384").embed_dim == 768
    assert lseg.get_config("clip_vitb32_384").backbone.hooks == (2, 5, 8, 11)
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        lseg.get_config("nope")


@pytest.mark.parametrize("name", ["lseg_vitl16_384", "lseg_vitb32_384", "lseg_rn50x16_vitl16_384", "lseg_rn101_zs"])
def test_full_size_configs_build_on_meta(name):
    with torch.device("meta"):
        model = lseg.LSeg(lseg.get_config(name))
    n = sum(p.numel() for p in model.parameters())
    # ViT-L/16 (303.3 M without head) + decoder + text tower; ViT-B/32 and ResNet-101 are much smaller
    assert (n > 380e6) if "vitl16" in name else (100e6 < n < 200e6)
    assert model.pixel_proj.out_channels == lseg.get_config(name).embed_dim


def test_config_json_round_trip_and_validation():
    cfg = lseg.get_config("lseg_rn50x16_vitl16_384").replace(arch_option=2, block_depth=3, activation="tanh")
    assert LSegConfig.from_dict(cfg.to_dict()) == cfg
    rn = lseg.get_config("lseg_rn101_zs")
    assert LSegConfig.from_dict(rn.to_dict()) == rn and rn.backbone.layers == (3, 4, 23, 3)
    assert lseg.get_config("clip_resnet101") == rn  # the reference's --backbone name
    with pytest.raises(ConfigError):
        _tiny(readout="mean")
    with pytest.raises(ConfigError):
        _tiny(arch_option=3)
    with pytest.raises(ConfigError, match="unknown LSegConfig field"):
        LSegConfig.from_dict({**cfg.to_dict(), "bogus": 1})


VARIANTS = [
    {"readout": r, "arch_option": a, "block_depth": d, "activation": act}
    for r, (a, d, act) in itertools.product(
        ["project", "add", "ignore"],
        [(0, 0, "lrelu"), (1, 0, "lrelu"), (1, 2, "lrelu"), (2, 3, "tanh"), (2, 2, "relu")],
    )
]


@pytest.mark.parametrize(
    "base,variant",
    [(b, v) for b in ("lseg_tiny_test", "lseg_tiny_test_p32", "lseg_tiny_test_rn") for v in VARIANTS
     if b != "lseg_tiny_test_rn" or v["readout"] == "project"],  # readout concerns ViT tokens only
    ids=lambda x: x if isinstance(x, str) else "-".join(str(y) for y in x.values()),
)
def test_every_variant_runs_forward_and_backward(base, variant):
    torch.manual_seed(0)
    model = lseg.LSeg(lseg.get_config(base).replace(**variant)).train()
    x = torch.randn(2, 3, 64, 96)
    logits = model(x, ["sky", "grass", "other"])
    assert logits.shape == (2, 3, 64, 96)
    assert torch.isfinite(logits).all()
    logits.logsumexp(1).mean().backward()
    assert model.pixel_proj.weight.grad is not None
    assert all(p.grad is None for p in model.text_encoder.parameters()), "text encoder must stay frozen"
    has_block = variant["arch_option"] in (1, 2)
    assert (model.spatial_block is not None) == has_block
    if has_block:
        assert model.spatial_block.conv.weight.grad is not None


def test_768d_text_encoder_variant():
    cfg = _tiny(text=TextEncoderConfig(clip_name="RN50x16", width=48, layers=1, heads=2, embed_dim=48))
    model = lseg.LSeg(cfg).eval()
    with torch.no_grad():
        assert model.encode_image(torch.randn(1, 3, 64, 64)).shape == (1, 48, 32, 32)
        assert model.encode_text(["a", "b"]).shape == (2, 48)


@pytest.mark.parametrize("size", [(32, 32), (50, 70), (64, 96), (97, 33), (1, 1), (200, 40)])
def test_any_input_size(tiny_model, size):
    with torch.no_grad():
        logits = tiny_model(torch.randn(1, 3, *size), ["a", "b"])
        emb = tiny_model.encode_image(torch.randn(1, 3, *size))
    assert logits.shape == (1, 2, *size)
    assert emb.shape == (1, 32, (size[0] + 1) // 2, (size[1] + 1) // 2)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones_like(emb[:, 0]), atol=1e-5, rtol=0)


def test_image_and_text_halves_equal_forward(tiny_model):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full = tiny_model(x, ["cat", "dog"])
        parts = tiny_model.score(tiny_model.encode_image(x), tiny_model.encode_text(["cat", "dog"]))
        precomputed = tiny_model(x, tiny_model.encode_text(["cat", "dog"]))
    torch.testing.assert_close(full, parts)
    torch.testing.assert_close(full, precomputed)
    # logits are scaled cosines: bounded by the fixed 1/0.07 temperature
    assert full.abs().max() <= 1 / 0.07 + 1e-4


def test_trimmed_text_tokens_match_full_context(tiny_model):
    enc = tiny_model.text_encoder
    labels = ["dog", "a photo of a small dog on grass", "sky"]
    tokens = enc.tokenize(labels)
    assert tokens.shape == (3, 77)
    with torch.no_grad():
        trimmed = enc.encode_tokens(tokens)  # trims to the longest label internally
        # run the same fp32 math on the full 77-token context by padding the longest label
        full = enc.encode_tokens(torch.cat([tokens, tokens.new_full((1, 77), 1)]))[:3]
    torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pair", [("dog-cat", "dog - cat"), ("mother's day", "mother 's day"), ("1 2 3", "123")])
def test_labels_the_tokenizer_splits_into_the_same_tokens_are_refused(tiny_model, pair):
    """Labels apart only in spaces around punctuation (or between digits) are the same tokens, so one
    embedding: the second label could never win a pixel."""
    enc = tiny_model.text_encoder
    assert torch.equal(*enc.tokenize(list(pair)))
    with pytest.raises(lseg.LabelError, match="the same text to CLIP's tokenizer"):
        enc.check_distinct(list(pair))
    enc.check_distinct(["t-shirt", "t shirt", "hotdog", "hot dog"])  # other tokens: accepted


def test_inference_optimizations_do_not_change_outputs():
    model = with_bn_stats()  # BatchNorm statistics that folding changes something with
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        plain = model.set_numerics("reference").encode_image(x)  # BatchNorm unfolded, layout as computed
        fast = model.set_numerics("fast").encode_image(x)
    torch.testing.assert_close(plain, fast, atol=1e-5, rtol=1e-4)


def test_resnet_network_pads_with_normalised_black_per_channel():
    """Any input size: padded with the ImageNet-normalised value of black, cropped back."""
    torch.manual_seed(0)
    model = lseg.create_model("lseg_tiny_test_rn")
    image = torch.randint(0, 256, (1, 3, 50, 70), dtype=torch.uint8)
    padded = torch.zeros(1, 3, 64, 96, dtype=torch.uint8)
    padded[..., :50, :70] = image
    with torch.no_grad():
        a = model.encode_image(model.normalize(image))
        b = model.encode_image(model.normalize(padded))[..., :25, :35]
    assert a.shape == (1, 32, 25, 35)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_param_groups_follow_reference_split(tiny_model):
    groups = tiny_model.param_groups()
    enc = {id(p) for p in groups["encoder"]}
    dec = {id(p) for p in groups["decoder"]}
    assert not enc & dec
    assert id(tiny_model.backbone.vit.pos_embed) in enc
    assert id(tiny_model.decoder.reassemble[0].project.weight) in enc  # reference: pretrained.act_postprocess
    assert id(tiny_model.decoder.fusion[0].out_conv.weight) in dec  # reference: scratch.*
    assert id(tiny_model.pixel_proj.weight) in dec
    text = {id(p) for p in tiny_model.text_encoder.parameters()}
    assert not text & (enc | dec)


def test_a_label_of_exactly_the_context_beside_a_longer_one_that_starts_with_it_is_refused(tiny_model):
    first = " ".join(["dog"] * 75)  # 75 tokens: uncut, and the same row as the cut label below
    with pytest.raises(lseg.LabelError, match="identical within CLIP's 75-token context"):
        lseg.LSegPredictor(tiny_model).embed_text([first, first + " cat"])
