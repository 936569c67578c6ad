"""The precision policy: chosen by capability, image path stored in it, text/similarity in fp32.

Real CPU runs under bf16/fp16 autocast and with the model cast to bf16/fp16, against fp32.

CPU autocast and cast models hit the dtype bugs CUDA mixed precision hits (an in-place op gets no
autocast promotion on either device); ``tests/test_fake_cuda.py`` checks the CUDA rules themselves.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import lseg
import lseg.inference.predictor
from lseg.errors import ConfigError
from lseg.inference.predictor import LSegPredictor
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


def test_auto_on_cpu_follows_what_onednn_may_use(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True, "avx512_bf16": True})
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert prec.resolve_precision("auto", "cpu") == "fp32"


@pytest.mark.parametrize("cap,expected", [("AVX512_CORE", "fp32"), ("avx512_core_vnni", "fp32"), ("AVX2", "fp32"),
                                           ("AVX512_CORE_BF16", "bf16"), ("AVX512_CORE_AMX", "bf16"), ("", "bf16")])
def test_auto_on_cpu_follows_the_onednn_isa_cap(monkeypatch, cap, expected):
    """ONEDNN_MAX_CPU_ISA=AVX512_CORE on a CPU with AVX512-BF16: oneDNN still says bf16 is supported
    (it emulates it, 2x slower than fp32 there), and auto picked it."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": False, "avx512_bf16": True})
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert prec.resolve_precision("auto", "cpu") == expected


@pytest.mark.slow  # a process (oneDNN reads its ISA cap at start)
def test_auto_under_an_isa_capped_to_avx2_is_fp32():
    """For real: ONEDNN_MAX_CPU_ISA=AVX2 (how an AVX2-only host is emulated on a newer one) -> fp32."""
    code = "from lseg.models.precision import resolve_precision; print(resolve_precision('auto', 'cpu'))"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "fp32"


@pytest.mark.parametrize("bf16_ok,expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_follows_the_gpu(monkeypatch, bf16_ok, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    assert prec.resolve_precision("auto", "cuda") == expected
    assert prec.resolve_precision("auto", "mps") == "fp32"
    with pytest.raises(ConfigError, match="precision must be one of"):
        prec.resolve_precision("int4", "cpu")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_set_precision_casts_only_the_image_path_and_halves_its_memory(precision):
    torch.manual_seed(0)
    model = lseg.create_model("lseg_tiny_test")
    image_params = [*model.backbone.parameters(), *model.decoder.parameters(), *model.pixel_proj.parameters()]
    before = sum(p.numel() * p.element_size() for p in image_params)
    text_before = {k: v.dtype for k, v in model.text_encoder.state_dict().items()}
    model.set_precision(precision)
    dtype = prec.DTYPES[precision]
    for part in (model.backbone, model.decoder, model.pixel_proj):
        for layer in part.modules():  # matrix weights in the precision, norms/biases/pos_embed in fp32
            for name, p in layer.named_parameters(recurse=False):
                matrix = isinstance(layer, prec.MATRIX_LAYERS) and name == "weight"
                assert p.dtype == (dtype if matrix else torch.float32), (layer, name)
    image_params = [*model.backbone.parameters(), *model.decoder.parameters(), *model.pixel_proj.parameters()]
    assert sum(p.numel() * p.element_size() for p in image_params) < 0.52 * before  # 0.501 at full size
    assert model.precision == precision
    assert {k: v.dtype for k, v in model.text_encoder.state_dict().items()} == text_before
    x = model.normalize(torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8))
    with torch.no_grad():
        assert model.encode_image(x).dtype == torch.float32  # normalised in fp32
        assert model.encode_text(["dog"]).dtype == torch.float32
        assert model(x, ["dog", "sky"]).dtype == torch.float32  # similarity in fp32


def test_the_residual_stream_stays_fp32_under_a_low_precision():
    """Matrix products in bf16, the ViT's residual stream (its block outputs, the decoder's taps) in
    fp32: where half the error of a whole-bf16 image path is saved (lseg.models.precision)."""
    model = lseg.create_model("lseg_tiny_test").set_precision("bf16")
    x = model.normalize(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    with torch.no_grad(), prec.image_path_compute("cpu", model.dtype):
        taps, _ = model.backbone(x)
        assert model.backbone.vit.blocks[0].mlp.fc1(taps[0]).dtype == torch.bfloat16
    assert {t.dtype for t in taps} == {torch.float32}


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
    assert lseg.inference.predictor.images_per_forward("cpu", 8) == 1
    assert lseg.inference.predictor.images_per_forward(torch.device("cuda", 0), 8) == 8
    predictor = LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32, batch_size=4)
    calls = []
    encode = predictor.model.encode_image
    monkeypatch.setattr(predictor.model, "encode_image", lambda x: calls.append(x.shape[0]) or encode(x))
    assert len(predictor.segment_batch([np.zeros((32, 32, 3), np.uint8)] * 5, "a, b")) == 5
    assert calls == [1] * 5


def _gpu_batching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stack images as on a GPU (the bucketing and back-off logic, run on the CPU)."""
    monkeypatch.setattr(lseg.inference.predictor, "images_per_forward", lambda device, batch_size: batch_size)


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


DTYPES = [torch.bfloat16, torch.float16]
LABELS = ["sky", "grass", "a photo of the sun", "other"]


@pytest.fixture(scope="module")
def model() -> lseg.LSeg:
    torch.manual_seed(0)
    return lseg.create_model("lseg_tiny_test").eval()


def _autocast(dtype: torch.dtype) -> torch.autocast:
    return torch.autocast("cpu", dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_label_encoding_under_autocast(model: lseg.LSeg, dtype: torch.dtype) -> None:
    """Item 1: labels of different token lengths (several groups) under autocast."""
    ref = model.encode_text(LABELS)
    with _autocast(dtype):
        out = model.encode_text(LABELS)
        emb = LSegPredictor(copy.deepcopy(model)).embed_text(LABELS)
    assert out.dtype == emb.dtype == torch.float32
    torch.testing.assert_close(out, ref)  # the text tower ignores autocast: same embeddings
    torch.testing.assert_close(emb, ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_and_training_step_under_autocast(model: lseg.LSeg, dtype: torch.dtype) -> None:
    m = copy.deepcopy(model).train()
    x = m.normalize(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    mask = torch.randint(0, 4, (2, 64, 64), generator=torch.Generator().manual_seed(1))
    ref = F.cross_entropy(m(x, LABELS).float(), mask)
    with _autocast(dtype):
        logits = m(x, LABELS)  # labels encoded inside the autocast region, as in users' loops
        loss = F.cross_entropy(logits.float(), mask)
    loss.backward()
    assert loss.dtype == torch.float32
    assert abs(loss.item() - ref.item()) < 0.05
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("optimized", [False, True], ids=["plain", "optimized"])
def test_cast_model_forward(model: lseg.LSeg, dtype: torch.dtype, optimized: bool) -> None:
    """Item 2: ``model.half()`` / ``.to(torch.bfloat16)`` runs, close to fp32."""
    m = copy.deepcopy(model).set_numerics("fast" if optimized else "plain")
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = m(m.normalize(x), LABELS)
        m = m.to(dtype)
        assert m.normalize(x).dtype == dtype
        assert m.encode_text(LABELS).dtype == torch.float32
        out = m(m.normalize(x), LABELS)
        out_fp32_input = m(x.sub(0.5).div(0.5), LABELS)  # an fp32 input is cast at the boundary
    assert out.dtype == out_fp32_input.dtype == torch.float32  # the similarity runs in fp32
    tol = 0.1 if dtype == torch.bfloat16 else 0.02
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=0)
    assert (out.float().argmax(1) == ref.argmax(1)).float().mean() > 0.98


def _results(p: LSegPredictor, photo: np.ndarray) -> dict[str, lseg.inference.predictor.SegmentationResult]:
    return {
        "single": p.segment(photo, LABELS, return_embeddings=True),
        "windows": LSegPredictor(p.model, size=96, crop_size=64, stride=48).segment(photo, LABELS),
        "chunks": LSegPredictor(p.model, label_chunk_size=3).segment(photo, LABELS),
        "multiscale": p.segment(photo, LABELS[:2], multiscale=lseg.inference.predictor.MultiScaleConfig(
            scales=(0.75, 1.0), base_size=96, crop_size=64)),
    }


@pytest.mark.parametrize("how", ["autocast", "cast"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_predictor_paths_against_fp32(model: lseg.LSeg, photo: np.ndarray, how: str, dtype: torch.dtype) -> None:
    """Items 1, 2, 4: every predictor path under autocast and with a cast model, against fp32."""
    ref = _results(LSegPredictor(copy.deepcopy(model), size=64), photo)
    if how == "autocast":
        p = LSegPredictor(copy.deepcopy(model), size=64)
        with _autocast(dtype):
            emb = p.embed_image(photo)
            got = _results(p, photo)
    else:
        p = LSegPredictor(copy.deepcopy(model).to(dtype), size=64)
        emb = p.embed_image(photo)
        got = _results(p, photo)
    assert emb.pixels.dtype == torch.float32  # item 4: as documented, whatever the precision
    assert got["single"].embeddings is not None and got["single"].embeddings.dtype == np.float32
    tol = 0.15 if dtype == torch.bfloat16 else 0.03
    for name, r in got.items():
        assert r.logits.dtype == np.float32 and r.label_map.dtype == np.int32, name
        torch.testing.assert_close(r.logits, ref[name].logits, atol=tol, rtol=0, msg=name)
        assert (r.label_map == ref[name].label_map).mean() > 0.97, name


def test_text_cache_is_keyed_by_numerics_and_dtype(model: lseg.LSeg) -> None:
    """Item 3: toggling reference_numerics or casting the model does not return stale embeddings,
    and cached and new labels mix."""
    m = copy.deepcopy(model)
    p = LSegPredictor(m, inplace=True)  # the test changes the predictor's model behind its back
    fp32 = p.embed_text(["sky", "grass"])
    m.reference_numerics = True
    ref = p.embed_text(["sky", "grass"])
    torch.testing.assert_close(ref, m.encode_text(["sky", "grass"]).float())
    assert not torch.equal(ref, fp32)  # fp16 reference tower, full context
    m.reference_numerics = False
    torch.testing.assert_close(p.embed_text(["sky", "grass"]), fp32, rtol=0, atol=0)
    m.to(torch.bfloat16)
    mixed = p.embed_text(["grass", "dog"])  # "grass" was cached for the fp32 model
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, m.encode_text(["grass", "dog"]))


def test_chunked_result_keeps_no_model_tensors(model: lseg.LSeg, photo: np.ndarray) -> None:
    """Item 7: the lazy logits hold the embedding on the host (on the CPU that is the embedding
    itself, no copy; ``test_fake_cuda`` checks a GPU embedding is not held) and compute the same
    logits as scoring directly."""
    p = LSegPredictor(copy.deepcopy(model), size=64, label_chunk_size=2)
    emb = p.embed_image(photo)
    r = p.segment(emb, LABELS)
    assert isinstance(r._logits, functools.partial)
    held = r._logits.args[0].pixels
    assert held.device.type == "cpu" and held.untyped_storage().data_ptr() == emb.pixels.untyped_storage().data_ptr()
    ref = p.segment(emb, LABELS[:2]).logits
    torch.testing.assert_close(r.logits[:2], ref)


class _Syncs(TorchDispatchMode):
    """Counts the ops that make a GPU wait (values read back, data-dependent output sizes)."""

    OPS: ClassVar[set[str]] = {"aten::_local_scalar_dense", "aten::nonzero", "aten::_unique2", "aten::bincount", "aten::masked_select"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func._schema.name in self.OPS:
            self.seen.append(func._schema.name)
        return func(*args, **(kwargs or {}))


def test_no_host_syncs_in_segment_and_one_per_meter_update(model: lseg.LSeg, photo: np.ndarray) -> None:
    """Item 6 (CPU view): nothing in a predictor call reads a value back, the eval meter once."""
    from lseg.eval.metrics import SegmentationMeter

    p = LSegPredictor(copy.deepcopy(model), size=64, label_chunk_size=3)
    p.embed_text(LABELS)  # the tokenizer's Python work is not what is measured
    with _Syncs() as s:
        p.segment(photo, LABELS)
        p.segment(photo, LABELS[:2])
        p.segment(photo, LABELS[:2], multiscale=lseg.inference.predictor.MultiScaleConfig(scales=(1.0,), base_size=64))
    assert s.seen == []
    meter = SegmentationMeter(4)
    target = torch.randint(0, 4, (1, 48, 64))
    target[0, :4] = 255
    with _Syncs() as s:
        meter.update(torch.randint(0, 4, (1, 48, 64)), target)
    assert s.seen == ["aten::_local_scalar_dense"]
    assert int(meter.cm.sum()) == 44 * 64


needs_int8 = pytest.mark.skipif(not prec.int8_supported(), reason="this torch has no oneDNN int8 kernels")


@needs_int8
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_int8_linear_is_close_to_the_layer_it_replaces(dtype):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96)
    x = torch.randn(2, 33, 64)
    x_in = x.to(dtype)
    with torch.inference_mode():
        y = prec.Int8Linear(linear)(x_in)
        ref = linear(x)
    assert torch.equal(x_in, x.to(dtype))  # quantised in a copy, never in the caller's tensor
    assert y.dtype == dtype and y.shape == ref.shape
    assert ((y.float() - ref).norm() / ref.norm()) < 0.03
    layer = prec.Int8Linear(linear)
    assert not any(b.dtype == torch.int8 for b in layer.buffers())  # only oneDNN's packed copy is held
    scale = linear.weight.abs().amax(1, keepdim=True) / 127
    assert torch.equal(layer.weight_int8, torch.round(linear.weight / scale).to(torch.int8))  # read back exactly
    assert torch.equal(layer.state_dict()["weight_int8"], layer.weight_int8)
    back = layer.to_linear()  # the fp32 layer the int8 weights stand for
    assert (back.weight - linear.weight).abs().max() <= linear.weight.abs().max() / 127


@needs_int8
def test_int8_model_agrees_with_fp32_and_leaves_the_callers_model_alone(photo, tmp_path):
    torch.manual_seed(0)
    model = lseg.create_model("lseg_tiny_test").eval()
    labels = ["sky", "grass", "sun", "other"]
    a = LSegPredictor(model, size=96, precision="fp32").segment(photo, labels)
    int8 = LSegPredictor(model, size=96, precision="int8")
    assert int8.precision == "int8" and model.precision == "fp32"  # a copy was quantised
    assert not any(isinstance(m, prec.Int8Linear) for m in model.modules())
    layers = [m for m in int8.model.backbone.modules() if isinstance(m, prec.Int8Linear)]
    assert len(layers) == 4 * len(model.backbone.vit.blocks)  # qkv, proj, fc1, fc2 of each block
    b = int8.segment(photo, labels)
    assert (a.label_map == b.label_map).mean() >= 0.99
    copied = copy.deepcopy(int8.model)  # oneDNN's packed weights are remade, not copied
    assert torch.equal(copied(copied.normalize(torch.zeros(1, 3, 64, 64)), copied.encode_text(labels)),
                       int8.model(int8.model.normalize(torch.zeros(1, 3, 64, 64)), int8.model.encode_text(labels)))
    with pytest.raises(ConfigError, match="int8 model is not saved"):
        lseg.save_pretrained(int8.model, tmp_path / "m")
    assert not (tmp_path / "m").exists()
    with pytest.raises(ConfigError, match="reference numerics need the fp32 weights"):
        int8.model.set_numerics("reference")
    assert int8.model.set_precision("fp32").precision == "fp32"  # back, rounding kept
    assert not any(isinstance(m, prec.Int8Linear) for m in int8.model.modules())


@needs_int8
def test_int8_is_refused_for_a_resnet_network_which_has_no_linear_layers():
    model = lseg.create_model("lseg_tiny_test_rn")
    with pytest.raises(ConfigError, match="ResNet trunk has none"):
        model.set_precision("int8")
    assert model.precision == "fp32"  # refused before anything was cast


def test_int8_is_refused_off_the_cpu_in_one_line():
    with pytest.raises(ConfigError, match="int8 runs on a CPU, not on cuda"):
        prec.resolve_precision("int8", "cuda")


@needs_int8
def test_segment_runs_in_int8_from_the_command_line(cli, tmp_path):
    from conftest import make_photo
    from PIL import Image

    Image.fromarray(make_photo()).save(tmp_path / "a.png")
    r = cli("segment", str(tmp_path / "a.png"), "-l", "sky, other", "-o", str(tmp_path / "out"),
            "--random-weights", "lseg_tiny_test", "--precision", "int8", "--size", "64")
    assert r.returncode == 0, r.stderr
    assert "in int8" in r.stderr
