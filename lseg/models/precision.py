"""Precision policy: which dtype the image path (ViT/ResNet, decoder, pixel head) runs in.

The text tower and the similarity stay in fp32 whatever the policy: they are cheap, and the
similarity is where precision shows in the argmax. What ``auto`` picks is decided by capability,
asked of torch, never by assumption about the machine:

* CUDA: bf16 where the GPU supports it (Ampere and later), else fp16;
* CPU: bf16 where the CPU computes it natively (AMX-BF16 or AVX512-BF16: ~2.5-4x faster than fp32
  there), else fp32 (on AVX2-only CPUs bf16 is emulated and ~7x *slower* than fp32);
* anything else (MPS, ...): fp32.

Measured side by side (``lseg bench``): see the README's performance section.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from lseg.errors import ConfigError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX-BF16 tiles or AVX512-BF16 instructions)."""
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


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
