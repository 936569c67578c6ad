"""Precision policy: the dtype the image path (ViT/ResNet, decoder, pixel head) runs in; the text tower,
the similarity and the spatial block stay fp32 (docs/python-api.md#precision).

``auto`` asks torch for capability: CUDA: bf16 where supported, else fp16; CPU: bf16 where computed
natively (AMX-BF16 or AVX512-BF16) and oneDNN may use it, else fp32 (emulated bf16 is several times
*slower*); anything else: fp32. The matrix weights are stored in the chosen dtype, the rest in fp32, and
the image path runs under autocast: a third less error than casting it whole, at the same speed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Literal, get_args

import torch
from torch import nn

from lseg.errors import ConfigError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX-BF16 or AVX512-BF16) and torch's oneDNN may use
    it (``ONEDNN_MAX_CPU_ISA`` can cap it to the slow emulated path)."""
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16")) and _onednn_computes_bf16()


def _onednn_computes_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN: keep fp32, never the slow path
        return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` -> the precision for ``device`` (see the module docstring); others checked and returned."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


# Autocast runs these in the low precision anyway: storing their weights there costs no accuracy.
MATRIX_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)


def store_image_path(modules: Iterable[nn.Module], dtype: torch.dtype) -> None:
    """Store the matrix weights of ``modules`` in ``dtype`` and every other parameter and buffer in fp32,
    in place."""
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
