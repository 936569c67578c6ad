"""The GPU paths without a GPU: the tiny model under ``FakeTensorMode`` on a fake ``"cuda"`` device.

Fake tensors carry device, dtype and shape but no data, and every op runs its real meta kernel, so
a CPU tensor meeting a CUDA one, a dtype mismatch, a read of a device value on the host (an ``.item()``,
a boolean mask, ``torch.unique``: each a GPU sync) all raise here as they would on a GPU. With CUDA
autocast switched on, the real CUDA autocast rules pick each op's dtype.

What cannot be faked: reading weights (safetensors fills real storage: the model is loaded on the
CPU for real, then moved); a result crossing to numpy (fake tensors have no data), so
``lseg.inference.predictor.to_numpy`` (the one place results leave the device) is replaced by a recorder that
returns zeros of the right shape and dtype; the Fabric training loop (Fabric asks the CUDA driver for
devices), so the training step is the loop's body run by hand; and a GradScaler (its CUDA kernels
check for infs on the data).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_photo
from PIL import Image
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import lseg
import lseg.features.export
import lseg.inference.predictor
import lseg.inference.results
import lseg.models.lseg
from lseg.inference.predictor import ImageEmbedding, LSegPredictor, MultiScaleConfig

CUDA = torch.device("cuda", 0)
D = lseg.get_config("lseg_tiny_test").embed_dim
DTYPES = [None, torch.float16, torch.bfloat16]  # None: no autocast (fp32)

# Ops that make the host wait for the device (a value read back, or an output size that depends on
# the data).
_SYNC_OPS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::_unique2", "aten::unique_dim",
             "aten::masked_select", "aten::bincount", "aten::repeat_interleave"}


@contextlib.contextmanager
def cuda_autocast(dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast("cuda", dtype)`` without a driver. The context manager itself turns CUDA
    autocast off when ``torch.cuda.is_available()`` is False (and asks the driver whether bf16 is
    supported), so this sets the same thread-local state it would."""
    if dtype is None:
        yield
        return
    enabled, old = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    torch.set_autocast_enabled("cuda", True)
    torch.set_autocast_dtype("cuda", dtype)
    torch.autocast_increment_nesting()
    try:
        yield
    finally:
        if torch.autocast_decrement_nesting() == 0:
            torch.clear_autocast_cache()
        torch.set_autocast_enabled("cuda", enabled)
        torch.set_autocast_dtype("cuda", old)


@pytest.fixture(autouse=True)
def _image_path_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image path of a bf16/fp16 model runs under ``torch.autocast("cuda")``, which switches
    itself off without a driver: the same state is set by :func:`cuda_autocast` instead."""
    real = lseg.models.lseg.image_path_compute
    monkeypatch.setattr(lseg.models.lseg, "image_path_compute",
                        lambda device_type, dtype: cuda_autocast(None if dtype == torch.float32 else dtype)
                        if device_type == "cuda" else real(device_type, dtype))


_TO = {torch.ops.aten.to.dtype_layout, torch.ops.aten.to.device, torch.ops.aten.to.dtype, torch.ops.aten.to.other}
_NUMPY = {torch.float32: np.float32, torch.float16: np.float16, torch.int32: np.int32, torch.int64: np.int64}


class OpLog(TorchDispatchMode):
    """Records host syncs and device-to-host copies (ops run below it, in the fake mode).

    It also decomposes ``Tensor.to`` into ``_to_copy``: under ``inference_mode`` torch 2.14's fake
    mode gets ``aten.to`` undecomposed and, for a real one-element tensor (``torch.tensor([i])``,
    a 0-dim buffer), runs the copy to CUDA for real ("no NVIDIA driver") instead of faking it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[str] = []
        self.to_host: list[tuple[tuple[int, ...], torch.dtype]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = func._schema.name
        if name in _SYNC_OPS:
            self.syncs.append(name)
        if name in ("aten::to", "aten::_to_copy", "aten::copy_"):
            src = args[1] if name == "aten::copy_" else args[0]
            if name == "aten::copy_":
                dst = args[0].device
            else:
                dst = kwargs.get("device") or next((a for a in args[1:] if isinstance(a, torch.device)), None)
            if src.device.type == "cuda" and dst is not None and torch.device(dst).type == "cpu":
                self.to_host.append((tuple(src.shape), src.dtype))
        if func in _TO:
            out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        return func(*args, **kwargs)


@pytest.fixture
def to_numpy_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """Replace the one device -> numpy crossing by a recorder returning zeros of the right kind."""
    seen: list[tuple[str, tuple[int, ...], torch.dtype]] = []

    def fake_to_numpy(t: torch.Tensor) -> np.ndarray:
        seen.append((t.device.type, tuple(t.shape), t.dtype))
        return np.zeros(tuple(t.shape), dtype=_NUMPY[t.dtype])

    monkeypatch.setattr(lseg.inference.predictor, "to_numpy", fake_to_numpy)
    monkeypatch.setattr(lseg.inference.results, "to_numpy", fake_to_numpy)
    monkeypatch.setattr(lseg.features.export, "to_numpy", fake_to_numpy)
    return seen


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path_factory.mktemp("m") / "tiny")


def _fake_cuda_model(saved: Path) -> tuple[FakeTensorMode, lseg.LSeg]:
    """Load the saved tiny model (for real: safetensors cannot read into fake tensors) and move it
    to the fake GPU in a fresh fake mode."""
    model = lseg.load_model(saved)
    # Fake parameters cannot be converted a second time (module._apply swaps tensors, and the fake
    # mode's memo holds weak references to them), so the layout a predictor sets is set here, before
    # the move; on a GPU the order does not matter.
    model.set_numerics("fast")
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model = model.to("cuda")
    return mode, model


def _all_on(model: torch.nn.Module, device: torch.device) -> None:
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        assert t.device == device, f"{name} on {t.device}"
    assert model.text_encoder.model.attn_mask.device == device


def test_load_move_and_cast_leave_nothing_behind(saved_model: Path) -> None:
    mode, model = _fake_cuda_model(saved_model)
    with mode:
        _all_on(model, CUDA)
        assert model.device == CUDA and model.dtype == torch.float32
        # the CLIP matrices stay fp16-stored, the rest fp32
        assert model.text_encoder.model.text_projection.dtype == torch.float16
    # a cast model (cast before the move: see _fake_cuda_model)
    half = lseg.load_model(saved_model).half()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        half = half.to("cuda")
        _all_on(half, CUDA)
        assert half.dtype == torch.float16 and half.text_encoder.model.ln_final.weight.dtype == torch.float16


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_and_text(saved_model: Path, dtype: torch.dtype | None) -> None:
    mode, model = _fake_cuda_model(saved_model)
    with mode, OpLog() as log, torch.inference_mode(), cuda_autocast(dtype):
        x = model.normalize(torch.randint(0, 255, (1, 3, 70, 90), dtype=torch.uint8, device="cuda"))
        assert x.device == CUDA and x.dtype == torch.float32
        pixels = model.encode_image(x)
        assert pixels.device == CUDA and pixels.dtype == torch.float32 and pixels.shape == (1, D, 35, 45)
        # item 1: the text tower keeps its own precision under autocast (fp32; fp16 reference)
        text = model.encode_text(["dog", "a photo of grass", "sky"])
        assert text.device == CUDA and text.dtype == torch.float32
        logits = model(x, ["dog", "a photo of grass", "sky"])
        assert logits.device == CUDA and logits.shape == (1, 3, 70, 90)
        assert model.text_encoder(["dog", "sky"], reference=True).dtype == torch.float16
    assert log.syncs == [] and log.to_host == []


@pytest.mark.parametrize("cast", [torch.float16, torch.bfloat16], ids=str)
def test_forward_of_a_cast_model(saved_model: Path, cast: torch.dtype) -> None:
    model = lseg.load_model(saved_model).to(cast)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, OpLog(), torch.inference_mode():
        model = model.to("cuda")
        x = model.normalize(torch.rand(1, 3, 64, 64, device="cuda"))
        assert x.dtype == cast  # item 2: inputs in the model's dtype
        assert model.encode_image(x).dtype == torch.float32  # normalised in fp32
        assert model(x, ["dog", "sky"]).dtype == torch.float32  # the similarity runs in fp32
        assert model.encode_text(["dog"]).dtype == torch.float32


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_forward_in_a_precision(saved_model: Path, precision: str) -> None:
    """``set_precision``: matrix weights in bf16/fp16, the rest fp32, the image path under autocast."""
    model = lseg.load_model(saved_model).set_numerics("fast", precision=precision)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, OpLog() as log, torch.inference_mode():
        model = model.to("cuda")
        assert model.precision == precision
        x = model.normalize(torch.randint(0, 255, (1, 3, 70, 90), dtype=torch.uint8, device="cuda"))
        assert model.encode_image(x).dtype == torch.float32
        assert model(x, ["dog", "sky"]).dtype == torch.float32
    assert log.syncs == [] and log.to_host == []


@pytest.mark.slow  # every predictor path under fake CUDA
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_predictor_paths(saved_model: Path, to_numpy_log: list, dtype: torch.dtype | None) -> None:
    mode, model = _fake_cuda_model(saved_model)
    photo = make_photo(96, 128)
    labels = ["sky", "grass", "sun", "other"]
    with mode, OpLog() as log, cuda_autocast(dtype):
        p = LSegPredictor(model, size=96, crop_size=64, stride=48, label_chunk_size=3)
        assert p.device == CUDA

        # single window (size <= crop) ...
        single = LSegPredictor(model, size=64)
        emb = single.embed_image(photo)
        assert (emb.pixels.device, emb.pixels.dtype, emb.pixels.shape) == (CUDA, torch.float32, (D, 24, 32))
        r = single.segment(emb, labels[:3], return_embeddings=True)  # item 4
        assert r.embeddings is not None and r.embeddings.dtype == np.float32
        assert r.label_map.shape == (96, 128) and r.label_map.dtype == np.int32
        assert isinstance(r.logits, np.ndarray) and r.logits.dtype == np.float32

        # ... sliding windows ...
        emb = p.embed_image(photo)
        assert (emb.pixels.device, emb.pixels.dtype, emb.pixels.shape) == (CUDA, torch.float32, (D, 36, 48))

        # ... label chunks: only the label map comes back; the lazy logits hold no GPU memory (item 7)
        to_numpy_log.clear()
        log.to_host.clear()
        r = p.segment(emb, labels)
        assert to_numpy_log == [("cuda", (96, 128), torch.int32)]
        held = [a for a in r._logits.args if isinstance(a, (torch.Tensor, ImageEmbedding))]  # type: ignore[union-attr]
        assert {(a.pixels if isinstance(a, ImageEmbedding) else a).device.type for a in held} == {"cpu"}
        assert r.logits.shape == (4, 72, 96) and isinstance(r.logits, np.ndarray)

        # ... a uint8 image already on the GPU is not copied to the host (item 6) ...
        log.to_host.clear()
        to_numpy_log.clear()
        image = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8, device="cuda")
        r = p.segment(image, labels[:3])
        assert r.label_map.shape == (96, 128)
        # only the results cross: the (K, h, w) logits and the int32 label map (via to_numpy)
        assert log.to_host == [((3, 72, 96), torch.float32)]
        assert to_numpy_log == [("cuda", (96, 128), torch.int32)]

        # ... multiscale: resize and argmax at full resolution stay on the GPU
        log.to_host.clear()
        to_numpy_log.clear()
        ms = MultiScaleConfig(scales=(0.5, 1.0), base_size=96, crop_size=64)
        r = p.segment(image, labels[:2], multiscale=ms)
        assert log.to_host == [((2, 96, 128), torch.float32)]
        assert to_numpy_log == [("cuda", (96, 128), torch.int32)]
        r = p.segment_batch([photo, image], labels[:2])
        assert len(r) == 2
    assert log.syncs == []


def test_text_cache_follows_the_device(saved_model: Path) -> None:
    # item 3: embeddings cached on the CPU must not come back after model.to("cuda")
    model = lseg.load_model(saved_model)
    p = LSegPredictor(model, inplace=True)  # the test moves the predictor's model
    cpu = p.embed_text(["dog", "sky"])
    assert cpu.device.type == "cpu"
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, OpLog():
        model.to("cuda")
        both = p.embed_text(["dog", "grass"])  # one cached label, one new
        assert both.device == CUDA and both.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_feature_export(saved_model: Path, to_numpy_log: list, tmp_path: Path, dtype: torch.dtype) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(make_photo(60, 80)).save(src / "a.png")
    mode, model = _fake_cuda_model(saved_model)
    with mode, OpLog(), cuda_autocast(dtype):
        # model_id given: hashing fake weights (the default identity) would read their bytes
        report = lseg.features.export_features(LSegPredictor(model, size=64), [src], tmp_path / "out", progress=False,
                                               model_id={"fake": "tiny"})
    assert not report.failed and len(report.written) == 1
    assert to_numpy_log == [("cuda", (D, 24, 32), torch.float32)]
    assert np.load(tmp_path / "out" / "a.npy").shape == (D, 24, 32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_training_step(saved_model: Path, dtype: torch.dtype | None) -> None:
    """The body of ``lseg.train.loop.train``: normalise, forward in train mode (no BatchNorm folding,
    autograd on), loss in fp32, and the SGD update. Not the backward pass: the autograd engine asks
    the CUDA driver for its device threads ("hasPrimaryContext expects a valid device index"), so
    gradients are faked with the parameters' own shape, device and dtype; ``tests/models/test_precision.py``
    runs the real backward under CPU autocast."""
    from lseg.train.optim import optimizer_step as _optimizer_step

    mode, model = _fake_cuda_model(saved_model)
    with mode, OpLog() as log:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
        with torch.no_grad():
            text = model.encode_text(["grass", "sky", "other"]).float()
        images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8, device="cuda")
        mask = torch.randint(0, 3, (2, 64, 64), device="cuda")
        with cuda_autocast(dtype):
            logits = model(model.normalize(images), text)
            loss = F.cross_entropy(logits.float(), mask, ignore_index=255)
        assert logits.requires_grad and logits.device == CUDA
        assert loss.dtype == torch.float32 and loss.device == CUDA
        for p in params:
            p.grad = torch.empty_like(p)
        assert _optimizer_step(opt, None)
        assert all(p.device == CUDA and p.dtype == torch.float32 for p in params)
    assert log.syncs == [] and log.to_host == []


def test_eval_meters_count_on_the_device() -> None:
    """item 6: one host sync per update (the range check), none in the counting itself."""
    from lseg.eval.metrics import FewShotMeter, SegmentationMeter

    fs = FewShotMeter([0, 1, 2])
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, OpLog() as log:
        pred = torch.randint(0, 4, (1, 32, 32), device="cuda")
        target = torch.randint(0, 4, (1, 32, 32), device="cuda")
        meter = SegmentationMeter(4, device="cuda")
        with pytest.raises(Exception, match="_local_scalar_dense"):  # the one range check
            meter.update(pred, target)
        fs.update(pred.clamp(max=1), target.clamp(max=1), 1)
        assert fs.inter.device == CUDA
    assert log.syncs == ["aten::_local_scalar_dense"]



@pytest.mark.slow
def test_the_gpu_smoke_script_runs_clean_on_the_cpu(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/gpu_smoke.py`` is what a GPU session runs first: on the CPU (tiny model) every row
    passes, so a failure on a GPU is the GPU's, not the script's drift from the API. Run in this
    process (its rows are API calls, not process behaviour), on a 120x160 photo instead of 360x480."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_smoke.py"
    spec = importlib.util.spec_from_file_location("gpu_smoke", script)
    assert spec is not None and spec.loader is not None
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    full_photo = smoke.photo
    monkeypatch.setattr(smoke, "photo", lambda h=120, w=160: full_photo(h, w))
    monkeypatch.setattr(sys, "argv", [str(script), "--device", "cpu", "--skip-full"])
    rc = smoke.main()
    out, err = capsys.readouterr()
    assert rc == 0, out[-3000:] + err[-3000:]
    assert out.strip().splitlines()[-1].endswith("ok") and "FAIL" not in out
