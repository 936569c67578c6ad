"""Precision policy: the dtype the image path (ViT/ResNet, decoder, pixel head) runs in; its matrix
weights are stored in it, the rest in fp32, and it runs under autocast. ``int8`` (CPU): the ViT blocks'
linear layers on oneDNN's int8 kernels. What ``auto`` picks and why: docs/python-api.md#precision."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import get_args

import torch
from torch import nn

from lseg.errors import ConfigError
from lseg.options import Precision

PRECISIONS: tuple[str, ...] = get_args(Precision)
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) without native bf16 dot products.
_NO_BF16_ISAS = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX-BF16 or AVX512-BF16) and torch's oneDNN may use
    it (``ONEDNN_MAX_CPU_ISA`` can cap it; emulated bf16 is several times slower than fp32)."""
    caps = torch.cpu.get_capabilities()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    # capped below AVX512_CORE_BF16, oneDNN emulates bf16 although the CPU has it (and torch says "supported")
    native = (caps.get("amx_bf16") or caps.get("avx512_bf16")) and cap.strip().upper() not in _NO_BF16_ISAS
    try:
        return bool(native and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN: keep fp32, never the slow path
        return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` -> the precision for ``device`` (CUDA: bf16 where supported, else fp16; CPU: bf16 if
    native, else fp32; others fp32); any other value checked and returned."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "int8":
        if device.type != "cpu":
            raise ConfigError(f"precision int8 runs on a CPU, not on {device}")
        if not int8_supported():
            raise ConfigError("precision int8 needs torch's oneDNN int8 kernels, which this torch build lacks")
        return precision
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def int8_supported() -> bool:
    """Whether torch has oneDNN's int8 linear kernels (x86 builds do)."""
    return hasattr(torch.ops.onednn, "qlinear_pointwise") and torch.backends.mkldnn.is_available()


# Autocast runs these in the low precision anyway: storing their weights there costs no accuracy.
MATRIX_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)


def store_image_path(modules: Iterable[nn.Module], dtype: torch.dtype) -> None:
    """Store the matrix weights of ``modules`` in ``dtype``, everything else in fp32, in place."""
    for module in modules:
        module.float()
        if dtype == torch.float32:
            continue
        for layer in module.modules():
            if isinstance(layer, MATRIX_LAYERS):
                layer.weight.data = layer.weight.data.to(dtype)


def image_path_compute(device_type: str, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype``, or nothing for fp32 (a caller's own autocast, e.g. mixed-precision
    training, stays in force)."""
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device_type, dtype=dtype)


_ACTIVATION_ZERO = torch.tensor(128)


class Int8Linear(nn.Module):
    """A linear layer on oneDNN's int8 kernels for inference: int8 weights with one scale per output
    channel, the input quantised at each call with one scale (its largest magnitude over 127). The
    weights live only in oneDNN's packed layout: a plain int8 copy beside it would cost as much memory
    as bf16 weights."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(1).clamp_min(1e-12) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight_int8 = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self._packed = torch.ops.onednn.qlinear_prepack(weight_int8, None)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero", torch.zeros_like(scale, dtype=torch.int64), persistent=False)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    @property
    def weight_int8(self) -> torch.Tensor:
        """The (out_features, in_features) int8 weights, read back from the packed layout."""
        return self._packed.to_dense().t()

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight_int8"] = self.weight_int8  # what identifies the layer's weights

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_packed": self.weight_int8.contiguous()}  # copies and pickles hold plain int8

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._packed = torch.ops.onednn.qlinear_prepack(self._packed, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        scale = flat.abs().amax().float().clamp_min(1e-12) / 127
        # uint8 around 128, as oneDNN's x86 int8 path expects activations (int8 ones can hang its first call);
        # rounded in fp32 in one copy (never in the caller's tensor), in place: each temporary of this size
        # is a fresh mmap (page faults) when the allocator is tuned. |x| / scale <= 127, so no clamp.
        q = flat.to(torch.float32, copy=True).mul_(1 / scale).round_().add_(128).to(torch.uint8)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        y = torch.ops.onednn.qlinear_pointwise.tensor(
            q, scale, _ACTIVATION_ZERO, self._packed, self.weight_scale, self.weight_zero,
            bias, 1.0, 0, x.dtype, "none", [None], "")
        return y.reshape(*x.shape[:-1], self.out_features)

    def to_linear(self) -> nn.Linear:
        """The fp32 layer these int8 weights stand for (the quantisation's rounding kept)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear.weight.data = self.weight_int8.float() * self.weight_scale[:, None]
        if self.bias is not None:
            linear.bias.data = self.bias.clone()
        return linear


def quantize_linears(module: nn.Module, int8: bool) -> None:
    """Replace every ``nn.Linear`` under ``module`` with an :class:`Int8Linear` (``int8``), or back."""
    for name, child in list(module.named_children()):
        if int8 and type(child) is nn.Linear:
            setattr(module, name, Int8Linear(child))
        elif not int8 and isinstance(child, Int8Linear):
            setattr(module, name, child.to_linear())
        else:
            quantize_linears(child, int8)
