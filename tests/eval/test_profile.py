"""``lseg bench --profile``: where one forward's time goes, by component."""

from __future__ import annotations

import pytest
from torch import nn

from lseg.cli import main
from lseg.eval.profile import COMPONENTS, component
from lseg.models.precision import Int8Linear, int8_supported


@pytest.mark.parametrize(("name", "module", "expected"), [
    ("backbone.vit.blocks.0.attn.qkv", nn.Linear(4, 4), "ViT matmuls (qkv, proj, MLP)"),
    ("backbone.vit.blocks.0.norm1", nn.LayerNorm(4), "ViT LayerNorms"),
    ("backbone.vit.patch_embed.proj", nn.Conv2d(3, 4, 2), "ViT patch embedding"),
    ("decoder.layer_rn.0", nn.Conv2d(4, 4, 3), "decoder 3x3 convs (layer_rn)"),
    ("text_encoder.transformer", nn.Identity(), "text encoder"),
    ("", nn.Identity(), "outside modules (fused head, similarity, upsampling)"),
])
def test_modules_count_to_their_component(name, module, expected):
    assert component(name, module) == expected


@pytest.mark.skipif(not int8_supported(), reason="this torch has no oneDNN int8 kernels")
def test_int8_layers_count_as_the_vits_matmuls():
    assert component("backbone.vit.blocks.0.mlp.fc1", Int8Linear(nn.Linear(4, 4))) == "ViT matmuls (qkv, proj, MLP)"


@pytest.mark.slow  # a fresh process per precision, as users run it
def test_profile_prints_every_component_per_precision(capsys):
    assert main(["bench", "--profile", "--model", "lseg_tiny_test", "--size", "64", "--repeats", "1",
                 "--precision", "fp32,auto"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "lseg_tiny_test, 64x64, cpu" in lines[0]
    header, rows = lines[1], {ln[:54].strip(): ln[54:].split() for ln in lines[2:]}
    assert header.split()[1:] == ["reference", "ms", "share", "fp32", "ms", "share", *header.split()[7:]]
    assert header.split()[7].startswith("auto=")  # what auto resolved to on this machine
    assert set(rows) == {*COMPONENTS, "total"}
    assert all(len(v) == 6 for v in rows.values())
    assert [float(rows["total"][i]) > 0 for i in (0, 2, 4)] == [True] * 3
    assert [rows["total"][i] for i in (1, 3, 5)] == ["100.0%"] * 3
