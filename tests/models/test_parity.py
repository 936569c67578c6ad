"""Numerical parity with the reference network (tests/refimpl: an independent port of LSegNet).

Same random weights in both (official keys -> our remapping), then:
* ``reference_numerics=True`` (fp16 CLIP text tower, fp16 similarity): logits within 1e-3 and the
  same argmax on >= 99.9% of pixels;
* our default fp32 numerics: within the fp16 rounding of the reference (documented in the README).
"""

from __future__ import annotations

import pytest
import torch
from refimpl.tiny import tiny_reference

import lseg
from lseg.checkpoints import load_weights

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
    import open_clip

    with torch.no_grad():
        expected = ref.encode_text(open_clip.tokenize(LABELS))
        expected = expected / expected.norm(dim=-1, keepdim=True)
        got16 = ours.text_encoder(LABELS, reference=True)
        got32 = ours.text_encoder(LABELS)
    assert got16.dtype == torch.float16
    torch.testing.assert_close(got16.float(), expected.float(), atol=2e-3, rtol=0)
    torch.testing.assert_close(got32, expected.float(), atol=5e-3, rtol=0)
