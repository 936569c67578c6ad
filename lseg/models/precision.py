"""Precision policy: which dtype the image path (ViT/ResNet, decoder, pixel head) runs in.

The text tower and the similarity stay in fp32 whatever the policy: they are cheap, and the
similarity is where precision shows in the argmax. What ``auto`` picks is decided by capability,
asked of torch, never by assumption about the machine:

* CUDA: bf16 where the GPU supports it (Ampere and later), else fp16;
* CPU: bf16 where the CPU computes it natively (AMX-BF16 or AVX512-BF16: ~2.5-4x faster than fp32
  there) and torch's oneDNN may use it, else fp32 (on AVX2-only CPUs bf16 is emulated and several
  times *slower* than fp32);
* anything else (MPS, ...): fp32.

How a precision is stored and run (:func:`store_image_path`, :func:`image_path_compute`): the
matrix weights (every ``Linear`` and ``Conv2d``: ~all the image path's bytes) are stored in the chosen
dtype, everything else (norms, biases, position embedding, BatchNorm statistics) stays fp32, and the
image path runs under ``torch.autocast`` for that dtype. So the matrix products run in bf16/fp16 while
the ViT's residual stream, its LayerNorms and the decoder's residual sums stay fp32: the memory of
a fully cast model, at its speed, with a third less error (random-weight full-size model, 480x480,
three photos: mean logit error 0.0024-0.0032 against 0.0036-0.0051 for the image path cast whole,
argmax agreement with fp32 98.95-99.11% against 98.19-99.07%).

Measured side by side (``lseg bench``): docs/performance.md.
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
    """Whether this CPU computes bf16 in hardware (AMX-BF16 tiles or AVX512-BF16 instructions) and
    torch's oneDNN, which runs the bf16 matrix products, may use it: an ISA capped with
    ``ONEDNN_MAX_CPU_ISA`` (to AVX2, say) makes bf16 the slow emulated path again."""
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16")) and _onednn_computes_bf16()


def _onednn_computes_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN: keep fp32, never the slow path
        return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` -> the concrete precision for ``device`` (see the module docstring); others are
    validated and returned as they are."""
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


# The layers whose weights are matrices: autocast runs them in the low precision anyway, so storing
# them there saves their memory and a cast per call, and costs no accuracy beyond autocast's own.
MATRIX_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)


def store_image_path(modules: Iterable[nn.Module], dtype: torch.dtype) -> None:
    """Store the matrix weights of ``modules`` in ``dtype`` and every other parameter and buffer in
    fp32, in place (see the module docstring). ``dtype=torch.float32`` stores everything in fp32."""
    for module in modules:
        module.float()
        if dtype == torch.float32:
            continue
        for layer in module.modules():
            if isinstance(layer, MATRIX_LAYERS):
                layer.weight.data = layer.weight.data.to(dtype)


def image_path_compute(device_type: str, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """The context the image path runs in: autocast to ``dtype``, or nothing for fp32 (so a caller's
    own autocast, e.g. mixed-precision training of an fp32 model, stays in force)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)
