"""Numerical parity with the reference networks (tests/refimpl: an independent port of LSegNet,
LSegNetZS and LSegRNNetZS whose CLIP is OpenAI's own code and whose ResNet is torchvision's).

Same random weights in both (official keys -> our remapping), then:
* ``reference_numerics=True`` (fp16 CLIP text tower, fp16 similarity): logits within 1e-3 and the
  same argmax on >= 99.9% of pixels (on the machines measured so far: bit-identical);
* text features bit-identical to ``clip.model.CLIP.encode_text`` in fp16 (the ``openai-clip`` package);
* our default fp32 numerics: within the fp16 rounding of the reference (documented in the README).
"""

from __future__ import annotations

import pytest
import torch
from refimpl.tiny import tiny_reference

import lseg
from lseg.pretrained.checkpoints import load_weights

LABELS = ["other", "dog", "grass", "sky", "a photo of a traffic light"]

CASES = [
    ("lseg_tiny_test", {}),
    ("lseg_tiny_test", {"readout": "add"}),
    ("lseg_tiny_test", {"readout": "ignore"}),
    ("lseg_tiny_test", {"arch_option": 1, "block_depth": 2, "activation": "lrelu"}),
    ("lseg_tiny_test", {"arch_option": 2, "block_depth": 3, "activation": "tanh"}),
    ("lseg_tiny_test_p32", {}),
]


def _pair(name: str, overrides: dict, seed: int = 0) -> tuple[torch.nn.Module, lseg.LSeg]:
    torch.manual_seed(seed)
    ref = tiny_reference(name, **overrides)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval-mode BN really matters
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    official = {"net." + k: v for k, v in ref.state_dict().items()}
    ours = lseg.LSeg(lseg.get_config(name).replace(**overrides))
    load_weights(ours, official)
    return ref.eval(), ours.eval()


@pytest.mark.parametrize("name,overrides", CASES, ids=[f"{n}-{o}" for n, o in CASES])
@pytest.mark.parametrize("size", [(64, 96), (96, 64)])
def test_reference_numerics_reproduce_reference_logits(name, overrides, size):
    ref, ours = _pair(name, overrides)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(7))
    ours.reference_numerics = True
    with torch.no_grad():
        expected = ref(x, LABELS)
        got = ours(x, LABELS)
    assert got.shape == expected.shape == (2, len(LABELS), *size)
    diff = (got - expected).abs().max().item()
    agree = (got.argmax(1) == expected.argmax(1)).float().mean().item()
    assert diff <= 1e-3, diff
    assert agree >= 0.999, agree


def test_fp32_numerics_stay_within_reference_fp16_rounding():
    ref, ours = _pair("lseg_tiny_test", {})
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = ref(x, LABELS)
        got = ours(x, LABELS)  # default: fp32 text tower (trimmed tokens) and fp32 cosine
    diff = (got - expected).abs()
    # the reference's fp16 text features and fp16 logits carry ~1e-3 relative rounding
    assert diff.max().item() <= 2e-2
    assert diff.mean().item() <= 5e-3
    assert (got.argmax(1) == expected.argmax(1)).float().mean().item() >= 0.98


def test_text_features_match_reference_clip_encode_text():
    ref, ours = _pair("lseg_tiny_test", {})
    import clip

    with torch.no_grad():
        expected = ref.clip_pretrained.encode_text(clip.tokenize(LABELS))
        expected = expected / expected.norm(dim=-1, keepdim=True)
        got16 = ours.text_encoder(LABELS, reference=True)
        got32 = ours.text_encoder(LABELS)
    assert got16.dtype == torch.float16
    assert torch.equal(got16, expected)
    torch.testing.assert_close(got32, expected.float(), atol=5e-3, rtol=0)


@pytest.mark.slow  # full-size text towers in fp16 on a CPU
@pytest.mark.parametrize("clip_name", ["ViT-B-32", "RN50x16"])
def test_reference_text_tower_is_bit_identical_to_openai_clip(clip_name):
    """Full-size text towers of both released CLIP models, random weights, OpenAI's fp16 code on CPU."""
    import clip
    from clip.model import CLIP
    from refimpl.lseg_reference import CLIP_DIMS

    from lseg.models.text_encoder import CLIPTextEncoder

    torch.manual_seed(0)
    dims = dict(CLIP_DIMS[clip_name], vision_layers=1, vision_width=64, vision_patch_size=32, image_resolution=32)
    oa = CLIP(**dims)  # the image tower is irrelevant here: keep it tiny
    with torch.no_grad():
        for p in oa.parameters():  # larger than CLIP's init, so rounding differences would show
            p.normal_(0, 0.02)
    clip.model.convert_weights(oa)
    cfg = lseg.get_config("lseg_vitl16_384" if clip_name == "ViT-B-32" else "lseg_rn50x16_vitl16_384").text
    enc = CLIPTextEncoder(cfg)
    enc.model.load_state_dict({k: v for k, v in oa.state_dict().items() if not k.startswith("visual.") and k != "logit_scale"})
    tokens = clip.tokenize(LABELS + ["diningtable", "pottedplant", "a photo of a tvmonitor on a sofa"])
    with torch.no_grad():
        expected = oa.encode_text(tokens)
        expected = expected / expected.norm(dim=-1, keepdim=True)  # as LSeg.forward does
        got = enc.encode_tokens(tokens, reference=True)
    assert expected.dtype == got.dtype == torch.float16
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", ["lseg_tiny_test", "lseg_tiny_test_p32", "lseg_tiny_test_rn"])
def test_zero_shot_forward_matches_reference(name):
    """``LSegNetZS`` / ``LSegRNNetZS.forward(x, class_info)``: each sample against its own
    ``["others", class name]``, fp16 similarity, per-image normalisation."""
    ref, ours = _pair(name, {})
    ours.reference_numerics = True
    names = ["dog", "aeroplane", "pottedplant"]
    x = torch.randn(3, 3, 96, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = ref.forward_zs(x, names)
        text = torch.stack([ours.encode_text(["others", n]) for n in names])  # (B, 2, D)
        got = ours.score(ours.encode_image(x), text, size=(96, 64))
    assert got.shape == expected.shape == (3, 2, 96, 64)
    assert (got - expected).abs().max().item() <= 1e-3
    assert (got.argmax(1) == expected.argmax(1)).float().mean().item() >= 0.999


def test_resnet_trunk_is_torchvisions():
    """The zero-shot ResNet-101 trunk is torchvision's: same weights, same feature maps."""
    from torchvision.models import resnet101
    from torchvision.models.feature_extraction import create_feature_extractor

    torch.manual_seed(0)
    ours = lseg.LSeg(lseg.get_config("lseg_rn101_zs")).backbone.eval()
    tv = resnet101().eval()
    missing = tv.load_state_dict(ours.resnet.state_dict(), strict=False)
    assert missing.missing_keys == ["fc.weight", "fc.bias"] and not missing.unexpected_keys
    extractor = create_feature_extractor(tv, {f"layer{i}": str(i) for i in range(1, 5)})
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        expected = extractor(x)
        got, grid = ours(x)
    assert grid is None
    for i, g in enumerate(got, start=1):
        assert torch.equal(g, expected[str(i)])


@pytest.mark.slow  # full size, 480x480
def test_full_size_resnet101_zero_shot_network_has_the_official_keys_and_runs_an_episode():
    from refimpl.lseg_reference import RefLSegRNNetZS
    from torchvision.models import resnet101

    from lseg.pretrained.checkpoints import convert_official_state_dict, infer_config

    with torch.device("meta"):
        ref = RefLSegRNNetZS()
        tv = resnet101()
        ours = lseg.LSeg(lseg.get_config("lseg_rn101_zs"))
    official = {"net." + k: v for k, v in ref.state_dict().items()}
    # census from the official constructor: OpenAI CLIP ViT-B/32 (302 keys, image tower included),
    # torchvision's resnet101 without fc, and the same 110 `scratch` keys as LSegNet
    n_resnet = len(tv.state_dict()) - 2
    assert sum(k.startswith("net.clip_pretrained.") for k in official) == 302
    assert sum(k.startswith("net.pretrained.") for k in official) == n_resnet == 624
    assert sum(k.startswith("net.scratch.") for k in official) == 110
    assert len(official) == 1036
    converted = convert_official_state_dict(official)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert infer_config(official) == lseg.get_config("lseg_rn101_zs")

    torch.manual_seed(0)
    model = lseg.create_model("lseg_rn101_zs")  # full size, random weights
    image = torch.randint(0, 256, (1, 3, 480, 480), dtype=torch.uint8)
    with torch.no_grad():
        x = model.normalize(image)  # ImageNet statistics, as the reference's ResNet networks
        text = model.encode_text(["others", "aeroplane"])[None]
        logits = model.score(model.encode_image(x), text, size=(480, 480))
    assert logits.shape == (1, 2, 480, 480) and torch.isfinite(logits).all()
    assert model.config.mean == (0.485, 0.456, 0.406)
