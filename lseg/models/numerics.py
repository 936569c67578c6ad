"""Numerics: the one setting that says how an :class:`lseg.LSeg` computes at inference.

Every model is in exactly one of three named modes (``model.numerics``), set with
:meth:`lseg.LSeg.set_numerics`; the decoder reads the mode from its forward call, it keeps no flags
of its own:

============ ================== ============ ============= =============== =================== ==============
mode         CLIP text tower    similarity   BatchNorm     decoder layout  last two 1x1 convs  ViT attention
============ ================== ============ ============= =============== =================== ==============
reference    fp16, 77 tokens    fp16         separate op   as computed     as written          explicit [2]_
plain        fp32, trimmed      fp32         folded [1]_   as computed     as written          timm's (fused)
fast         fp32, trimmed      fp32         folded [1]_   channels-last   merged, before x2 up timm's (fused)
============ ================== ============ ============= =============== =================== ==============

.. [1] folded into the preceding conv on the fly at inference; parameters and state dict untouched.
.. [2] ``softmax((q @ k^T) * scale) @ v`` as matrices, in the op order of the official code's pinned
   timm 0.4.12 (:class:`lseg.models.backbone.OfficialAttention`, switched on by
   :meth:`lseg.models.backbone.ViTBackbone.set_explicit_attention`); timm's default is the fused
   ``scaled_dot_product_attention``, ~1.25x faster on a CPU.

* ``reference`` reproduces the official code op for op (fp32 weights only: it refuses weights that
  were already rounded to bf16/fp16, and it overrides the precision policy): bit-identical logits
  to the official ``isl-org/lang-seg`` code run on the same CPU with the same thread count
  (``scripts/official_parity.py``; CPU kernels may split work, hence round, by thread count).
* ``plain`` is what :class:`lseg.LSeg`, :func:`lseg.load_model` and :func:`lseg.create_model` return:
  the stored weights as they are, in their usual layout (what training, evaluation and ONNX export
  see).
* ``fast`` re-lays the decoder's weights out channels-last once (when the mode changes): the mode
  :class:`lseg.LSegPredictor` puts a ``plain`` model in (its ``fast`` argument) and the CLI runs.

Training mode (``model.train()``) always runs the decoder as written, whatever the mode. The image
path's *precision* (fp32/bf16/fp16, :mod:`lseg.models.precision`) sits beside the mode and is set by
the same call: ``model.set_numerics("fast", precision="auto")``.
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
