"""The numerics setting (lseg.models.config.Numerics): one named mode per model, stored once."""

from __future__ import annotations

import pytest
import torch
from conftest import with_bn_stats

import lseg
from lseg.errors import ConfigError
from lseg.inference.predictor import LSegPredictor
from lseg.models.config import NUMERICS
from lseg.models.decoder import DPTDecoder, ResidualConvUnit


def _layout_is_channels_last(model: lseg.LSeg) -> bool:
    return model.decoder.layer_rn[0].weight.is_contiguous(memory_format=torch.channels_last) and not (
        model.decoder.layer_rn[0].weight.is_contiguous()
    )


def test_every_state_has_a_name_and_a_new_model_is_plain(tmp_path):
    assert NUMERICS == ("reference", "plain", "fast")
    model = lseg.create_model("lseg_tiny_test")
    assert model.numerics == "plain" and not model.reference_numerics
    assert lseg.LSeg(model.config).numerics == "plain"
    assert lseg.load_model(lseg.save_pretrained(model, tmp_path / "m")).numerics == "plain"
    # no per-module flags: the decoder reads the mode from its forward call
    assert not any(hasattr(m, "fold_bn") for m in model.modules())
    assert not hasattr(model.decoder, "channels_last")


def test_set_numerics_switches_mode_layout_and_precision():
    model = lseg.create_model("lseg_tiny_test")
    assert not _layout_is_channels_last(model)
    assert model.set_numerics("fast") is model and model.numerics == "fast"
    assert _layout_is_channels_last(model)
    model.reference_numerics = True
    assert model.numerics == "reference" and not _layout_is_channels_last(model)
    model.reference_numerics = False  # clearing it turns the speed-ups on, as it always did
    assert model.numerics == "fast"
    model.set_numerics("plain", precision="bf16")
    assert (model.numerics, model.precision) == ("plain", "bf16")
    assert not _layout_is_channels_last(model)
    with pytest.raises(ConfigError, match="fp32 weights"):
        model.set_numerics("reference")  # weights rounded to bf16 for good
    assert model.numerics == "plain"
    with pytest.raises(ConfigError, match="numerics must be one of reference, plain, fast"):
        model.set_numerics("quick")  # type: ignore[arg-type]


def test_reference_computes_attention_as_the_official_timm_does():
    """timm 0.4.12 (pinned by the official code) has no fused attention: reference numerics compute
    it explicitly in 0.4.12's op order (OfficialAttention), the other modes use timm's own module and
    default (fused on torch >= 2)."""
    from timm.layers import Attention

    from lseg.models.backbone import OfficialAttention

    model = lseg.create_model("lseg_tiny_test")
    kinds = lambda: {(type(b.attn), b.attn.fused_attn) for b in model.backbone.vit.blocks}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert kinds() == {(Attention, True)}
    model.set_numerics("reference")
    assert kinds() == {(OfficialAttention, False)}
    assert model.state_dict().keys() == state.keys()  # the same parameters, only another forward
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        explicit = model.encode_image(x)
        model.backbone.set_explicit_attention(False)  # the same network through timm's fused kernel
        torch.testing.assert_close(model.encode_image(x), explicit, atol=1e-5, rtol=1e-4)
    model.set_numerics("fast")
    assert kinds() == {(Attention, True)}


def test_official_attention_scales_the_scores_not_q():
    """timm 0.4.12 computes ``(q @ k^T) * scale``; timm 1.x's explicit path ``(q * scale) @ k^T``.
    With a head width whose scale is not a power of two (48 here) the two round differently; the
    reference attention must be the former, bit for bit."""
    from timm.layers import Attention

    from lseg.models.backbone import OfficialAttention

    torch.manual_seed(0)
    attn = Attention(96, num_heads=2, qkv_bias=True).eval()
    x = torch.randn(2, 37, 96)
    with torch.no_grad():
        qkv = attn.qkv(x).reshape(2, 37, 3, 2, 48).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
        expected = attn.proj((scores @ v).transpose(1, 2).reshape(2, 37, 96))
        attn.fused_attn = False
        timm_explicit = attn(x)
        attn.__class__ = OfficialAttention
        got = attn(x)
    assert torch.equal(got, expected)
    assert not torch.equal(timm_explicit, expected)  # the op order does show in the bits


def test_reference_overrides_the_precision_in_the_same_call():
    model = lseg.create_model("lseg_tiny_test").set_numerics("reference", precision="bf16")
    assert (model.numerics, model.precision) == ("reference", "fp32")


@pytest.mark.parametrize("name", ["lseg_tiny_test", "lseg_tiny_test_rn"])
def test_modes_compute_the_same_image_embeddings(name):
    """plain folds BatchNorm (reference does not), fast also merges the head convs and changes the
    layout: the same numbers up to fp32 rounding."""
    model = with_bn_stats(name)
    x = torch.randn(2, 3, 96, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = {mode: model.set_numerics(mode).encode_image(x) for mode in ("reference", "plain", "fast")}
    torch.testing.assert_close(out["plain"], out["reference"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["fast"], out["plain"], atol=1e-5, rtol=1e-4)
    assert not torch.equal(out["plain"], out["reference"])  # folding did happen


def test_bn_folding_is_the_decoders_choice_per_call():
    unit = ResidualConvUnit(8).eval()
    with torch.no_grad():
        unit.bn1.running_var.fill_(2.0)
        unit.bn2.running_mean.fill_(0.3)
        x = torch.randn(1, 8, 6, 6)
        folded, separate = unit(x, fold_bn=True), unit(x, fold_bn=False)
    torch.testing.assert_close(folded, separate, atol=1e-5, rtol=1e-4)
    assert "numerics" in DPTDecoder.forward.__code__.co_varnames


def test_training_runs_the_decoder_as_written_whatever_the_mode():
    model = with_bn_stats().set_numerics("fast").train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    logits = model(x, ["a", "b"])
    logits.sum().backward()
    assert model.decoder.fusion[0].rcu.bn1.weight.grad is not None  # BatchNorm ran as an op
    assert model.pixel_proj.weight.grad is not None  # the head was not merged


def test_predictor_switches_only_plain_models_and_only_when_asked():
    plain = lseg.create_model("lseg_tiny_test")
    assert LSegPredictor(plain, fast=False).model.numerics == "plain"
    assert LSegPredictor(plain).model.numerics == "fast"  # documented: changes the model in place
    ref = lseg.create_model("lseg_tiny_test").set_numerics("reference")
    assert LSegPredictor(ref).model.numerics == "reference"


def test_predictor_leaves_the_allocator_alone(monkeypatch):
    import lseg.inference.allocator

    calls = []
    monkeypatch.setattr(lseg.inference.allocator, "tune_allocator", lambda: calls.append(1) or True)
    monkeypatch.setattr(lseg.inference.predictor, "tune_allocator", lambda: calls.append(1) or True)
    LSegPredictor(lseg.create_model("lseg_tiny_test"))
    assert calls == []
