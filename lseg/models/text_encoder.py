"""Frozen CLIP text tower (open_clip ``TextTransformer`` with the OpenAI CLIP parameter layout).

Two numerics:

* default (fp32): computed in fp32 (the matrices are stored in fp16 as in the official files), and
  the token sequence is cut to the longest label
  (CLIP's mask is causal and the feature is read at the EOT token, so positions after it cannot
  change the result; 150 ADE20K labels need 5-8 tokens instead of 77, about 15x faster on CPU).
* ``reference=True``: the reference's CUDA-fp16 path: fp16 linear/attention weights, LayerNorm in
  fp32 with the result cast back to fp16, the full 77-token context. Used to reproduce the
  official logits bit-for-bit-ish (see README "Numerical parity").
"""

from __future__ import annotations

import logging
import warnings
from functools import cached_property

import torch
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import LayerNormFp32, QuickGELU, TextTransformer
import torch.nn.functional as F
from torch import nn

from lseg.errors import LabelError
from lseg.models.config import TextEncoderConfig

_logger = logging.getLogger(__name__)


class CLIPTextEncoder(nn.Module):
    """Label strings -> L2-normalised text embeddings (K, D).

    ``self.model`` holds the CLIP text parameters under OpenAI's names (``token_embedding``,
    ``positional_embedding``, ``transformer.resblocks.*``, ``ln_final``, ``text_projection``).
    Parameters are frozen (``requires_grad=False``), as LSeg never trains them.
    """

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = TextTransformer(
            context_length=cfg.context_length,
            vocab_size=cfg.vocab_size,
            width=cfg.width,
            heads=cfg.heads,
            layers=cfg.layers,
            output_dim=cfg.embed_dim,
            act_layer=QuickGELU,  # OpenAI CLIP weights use QuickGELU
            norm_layer=LayerNormFp32,  # OpenAI LayerNorm: compute in fp32, cast back
        )
        self.requires_grad_(False)
        # Store the matrices in fp16, as the official checkpoints and OpenAI's CLIP release do (so
        # loading them is lossless) and compute in fp32: saves ~76 MB for ViT-B/32. Embeddings and
        # LayerNorms stay fp32, as in those files.
        for name in _matrix_names(self.model):
            param = self.model.get_parameter(name)
            param.data = param.data.half()

    @cached_property
    def tokenizer(self) -> SimpleTokenizer:
        # Built lazily: loading the BPE vocab takes ~0.3 s and tiny test models may never need it.
        return SimpleTokenizer(context_length=self.cfg.context_length)

    def tokenize(self, labels: list[str]) -> torch.Tensor:
        """Tokenise labels to (K, context_length) int64, warning once per over-long label.

        CLIP's context is 77 tokens including start/end; longer labels are cut (the reference raises
        instead). An empty label list raises :class:`LabelError`.
        """
        if not labels:
            raise LabelError("no labels given: pass at least one label string")
        limit = self.cfg.context_length - 2
        cut = []
        for i, label in enumerate(labels):
            n = len(self.tokenizer.encode(label))
            if n > limit:
                cut.append(i)
                warnings.warn(
                    f"label {label[:40]!r}... has {n} tokens; CLIP reads only the first {limit}",
                    stacklevel=3,
                )
        tokens = self.tokenizer(labels)
        if cut:  # two labels equal in their first `limit` tokens would get one embedding
            rows = [tuple(r) for r in tokens.tolist()]
            first = {}
            for i, row in enumerate(rows):
                j = first.setdefault(row, i)
                if j != i and (i in cut or j in cut):
                    raise LabelError(
                        f"labels {j + 1} and {i + 1} ({labels[j][:30]!r}..., {labels[i][:30]!r}...) are identical "
                        f"within CLIP's {limit}-token context and would get the same embedding; make them "
                        "differ earlier"
                    )
        return tokens

    def encode_tokens(self, tokens: torch.Tensor, reference: bool = False) -> torch.Tensor:
        """Token ids (K, T) -> L2-normalised embeddings (K, D): fp32, or fp16 if ``reference``."""
        m = self.model
        tokens = tokens.to(m.token_embedding.weight.device)
        eot = tokens.argmax(dim=-1)  # EOT has the largest id in CLIP's vocabulary
        # The reference always runs the full 77-token context; the causal mask makes the trimmed
        # sequence give the same result (max abs diff ~4e-6 in fp32).
        length = tokens.shape[1] if reference else int(eot.max()) + 1
        dtype = torch.float16 if reference else torch.float32
        x = m.token_embedding(tokens[:, :length]).to(dtype) + m.positional_embedding[:length].to(dtype)
        mask = m.attn_mask[:length, :length].to(dtype)
        for block in m.transformer.resblocks:
            x = x + self._attention(block, block.ln_1(x), mask)
            h = _linear(block.ln_2(x), block.mlp.c_fc, dtype)
            x = x + _linear(h * torch.sigmoid(1.702 * h), block.mlp.c_proj, dtype)  # QuickGELU
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot] @ m.text_projection.to(dtype)
        return x / x.norm(dim=-1, keepdim=True)

    @staticmethod
    def _attention(block: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attn = block.attn
        dtype = x.dtype
        q = x.transpose(0, 1)  # (T, K, C): nn.MultiheadAttention's sequence-first layout
        out = F.multi_head_attention_forward(
            q, q, q, attn.embed_dim, attn.num_heads,
            attn.in_proj_weight.to(dtype), attn.in_proj_bias.to(dtype), None, None, False, 0.0,
            attn.out_proj.weight.to(dtype), attn.out_proj.bias.to(dtype),
            training=False, need_weights=False, attn_mask=mask,
        )[0]
        return out.transpose(0, 1)

    def forward(self, labels: list[str], reference: bool = False) -> torch.Tensor:
        """Label strings -> (K, D) L2-normalised embeddings."""
        return self.encode_tokens(self.tokenize(labels), reference=reference)


def _linear(x: torch.Tensor, layer: nn.Linear, dtype: torch.dtype) -> torch.Tensor:
    return F.linear(x, layer.weight.to(dtype), layer.bias.to(dtype))


def _matrix_names(model: nn.Module) -> list[str]:
    """Parameters that OpenAI CLIP (and the official LSeg checkpoints) store in fp16."""
    return [
        n for n, p in model.named_parameters()
        if p.ndim >= 1 and "ln_" not in n and "embedding" not in n
    ]
