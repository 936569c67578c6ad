"""The precision policy: chosen by capability, image path stored in it, text/similarity in fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lseg
import lseg.inference
from lseg.errors import ConfigError
from lseg.inference import LSegPredictor
from lseg.models import precision as prec


@pytest.mark.parametrize("caps,expected", [
    ({"amx_bf16": True, "avx512_bf16": True}, "bf16"),  # Intel Xeon (Sapphire Rapids and later)
    ({"amx_bf16": False, "avx512_bf16": True}, "bf16"),  # AVX512-BF16 without AMX
    ({"avx2": True, "amx_bf16": False, "avx512_bf16": False}, "fp32"),  # AMD EPYC Zen 3, AVX2 only
])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, caps, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    assert prec.resolve_precision("auto", "cpu") == expected
    assert prec.resolve_precision("fp16", "cpu") == "fp16"  # explicit choices are kept


@pytest.mark.parametrize("bf16_ok,expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_follows_the_gpu(monkeypatch, bf16_ok, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    assert prec.resolve_precision("auto", "cuda") == expected
    assert prec.resolve_precision("auto", "mps") == "fp32"
    with pytest.raises(ConfigError, match="precision must be one of"):
        prec.resolve_precision("int8", "cpu")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_set_precision_casts_only_the_image_path_and_halves_its_memory(precision):
    torch.manual_seed(0)
    model = lseg.create_model("lseg_tiny_test")
    image_params = [*model.backbone.parameters(), *model.decoder.parameters(), *model.pixel_proj.parameters()]
    before = sum(p.numel() * p.element_size() for p in image_params)
    text_before = {k: v.dtype for k, v in model.text_encoder.state_dict().items()}
    model.set_precision(precision)
    image_params = [*model.backbone.parameters(), *model.decoder.parameters(), *model.pixel_proj.parameters()]
    assert sum(p.numel() * p.element_size() for p in image_params) == before // 2
    assert model.precision == precision
    assert {k: v.dtype for k, v in model.text_encoder.state_dict().items()} == text_before
    x = model.normalize(torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8))
    with torch.no_grad():
        assert model.encode_image(x).dtype == torch.float32  # normalised in fp32
        assert model.encode_text(["dog"]).dtype == torch.float32
        assert model(x, ["dog", "sky"]).dtype == torch.float32  # similarity in fp32


def test_reference_numerics_override_the_policy():
    model = lseg.create_model("lseg_tiny_test")
    model.reference_numerics = True
    assert model.set_precision("bf16").precision == "fp32"
    model = lseg.create_model("lseg_tiny_test").set_precision("bf16")
    with pytest.raises(ConfigError, match="reference numerics need the fp32 weights"):
        model.reference_numerics = True


def test_bf16_agrees_with_fp32(photo):
    """bf16 image path vs fp32 on the same weights and photo: argmax agreement and embedding cosine."""
    torch.manual_seed(0)
    fp32 = lseg.create_model("lseg_tiny_test")
    bf16 = lseg.create_model("lseg_tiny_test")
    bf16.load_state_dict(fp32.state_dict())
    labels = ["sky", "grass", "sun", "other"]
    a = LSegPredictor(fp32, size=96, precision="fp32").segment(photo, labels, return_embeddings=True)
    b = LSegPredictor(bf16, size=96, precision="bf16").segment(photo, labels, return_embeddings=True)
    assert (a.label_map == b.label_map).mean() >= 0.99
    cos = (a.embeddings * b.embeddings).sum(0)
    assert cos.mean() > 0.999


def test_a_cpu_runs_a_batch_image_by_image(monkeypatch):
    """Stacking images only overflows a CPU's caches (measured in images_per_forward's docstring)."""
    assert lseg.inference.images_per_forward("cpu", 8) == 1
    assert lseg.inference.images_per_forward(torch.device("cuda", 0), 8) == 8
    predictor = LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32, batch_size=4)
    calls = []
    encode = predictor.model.encode_image
    monkeypatch.setattr(predictor.model, "encode_image", lambda x: calls.append(x.shape[0]) or encode(x))
    assert len(predictor.segment_batch([np.zeros((32, 32, 3), np.uint8)] * 5, "a, b")) == 5
    assert calls == [1] * 5


def _gpu_batching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stack images as on a GPU (the bucketing and back-off logic, run on the CPU)."""
    monkeypatch.setattr(lseg.inference, "images_per_forward", lambda device, batch_size: batch_size)


def test_segment_batch_is_batched_and_equals_one_by_one(monkeypatch):
    _gpu_batching(monkeypatch)
    torch.manual_seed(0)
    predictor = LSegPredictor(lseg.create_model("lseg_tiny_test"), size=64, batch_size=3, precision="fp32")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48 if i % 2 else 64, 64, 3), dtype=np.uint8) for i in range(7)]
    images.append(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))
    calls = []
    encode = predictor.model.encode_image
    monkeypatch.setattr(predictor.model, "encode_image", lambda x: calls.append(x.shape[0]) or encode(x))
    batched = predictor.segment_batch(images, "a, b, c")
    assert sorted(calls) == [1, 1, 3, 3]  # 4 of one size -> 3 + 1, 3 of another -> 3, 1 of a third
    calls.clear()
    single = [predictor.segment(im, "a, b, c") for im in images]
    assert calls == [1] * len(images)
    for x, y in zip(batched, single):
        assert x.image_size == y.image_size
        assert (x.label_map == y.label_map).mean() >= 0.999
        torch.testing.assert_close(x.logits, y.logits, atol=1e-4, rtol=1e-4)


def test_out_of_memory_halves_the_batch_and_stays_there(monkeypatch):
    _gpu_batching(monkeypatch)
    torch.manual_seed(0)
    predictor = LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32, batch_size=8, precision="fp32")
    encode = predictor.model.encode_image
    sizes = []

    def limited(x):
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return encode(x)

    monkeypatch.setattr(predictor.model, "encode_image", limited)
    images = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(7)]
    results = predictor.segment_batch(images, "a, b")
    assert len(results) == 7 and predictor.batch_size == 2
    assert sizes == [7, 4, 2, 2, 2, 1]
