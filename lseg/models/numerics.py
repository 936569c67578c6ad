"""How an :class:`lseg.LSeg` computes at inference, ``model.numerics`` (the table:
docs/python-api.md#numerics): ``reference`` (the official code op for op: bit-identical logits to
``isl-org/lang-seg`` on the same CPU and thread count; fp32 weights only), ``plain`` (a new or loaded
model: the stored weights in their usual layout) or ``fast`` (``plain`` with the decoder channels-last
and its last two 1x1 convs merged; what :class:`lseg.LSegPredictor` runs). Training mode always runs
the decoder as written."""

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
