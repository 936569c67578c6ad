"""Numerics: the one setting that says how an :class:`lseg.LSeg` computes at inference
(``model.numerics``, set with :meth:`lseg.LSeg.set_numerics`; the table: docs/python-api.md#numerics).

* ``reference``: the official code op for op (fp16 CLIP text tower on 77 tokens, fp16 similarity,
  BatchNorm as a separate op, explicit attention in timm 0.4.12's op order; fp32 weights only):
  bit-identical logits to ``isl-org/lang-seg`` on the same CPU and thread count
  (``scripts/official_parity.py``; CPU kernels split work, hence round, by thread count).
* ``plain``: what a new or loaded model is in: the stored weights in their usual layout (what training,
  evaluation and ONNX export see); fp32 text on trimmed tokens, BatchNorm folded at inference.
* ``fast``: as ``plain``, with the decoder channels-last and its last two 1x1 convs merged (what
  :class:`lseg.LSegPredictor` runs a ``plain`` model in).

Training mode always runs the decoder as written, whatever the mode.
"""

from __future__ import annotations

from typing import Literal, get_args

from lseg.errors import ConfigError

Numerics = Literal["reference", "plain", "fast"]
NUMERICS: tuple[str, ...] = get_args(Numerics)


def check_numerics(numerics: str) -> Numerics:
    """``numerics`` if it names a mode, else :class:`ConfigError` listing them."""
    if numerics not in NUMERICS:
        raise ConfigError(f"numerics must be one of {', '.join(NUMERICS)}, got {numerics!r}")
    return numerics  # type: ignore[return-value]
