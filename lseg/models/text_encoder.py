"""Frozen CLIP text tower (open_clip ``TextTransformer`` with the OpenAI CLIP parameter layout).

Two numerics:

* default (fp32): computed in fp32 (the matrices are stored in fp16 as in the official files), and
  the token sequence is cut to the longest label
  (CLIP's mask is causal and the feature is read at the EOT token, so positions after it cannot
  change the result; 150 ADE20K labels need 5-8 tokens instead of 77, about 15x faster on CPU).
* ``reference=True``: the reference's CUDA-fp16 path: fp16 linear/attention weights, LayerNorm in
  fp32 with the result cast back to fp16, the full 77-token context. Used to reproduce the
  official logits bit for bit in reference numerics (docs/performance.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property

import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import LayerNormFp32, QuickGELU, TextTransformer
from torch import nn

from lseg.errors import LabelError
from lseg.labels import NO_TEMPLATE, apply_templates
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
        return self._tokenize(labels)[0]

    def check_distinct(self, labels: list[str], templates: Sequence[str] = NO_TEMPLATE) -> None:
        """Refuse (:class:`LabelError`) labels that CLIP reads as equal: two labels whose prompts
        (``templates`` filled with them) match within the context for a template would get one
        embedding. :meth:`tokenize` checks the labels it encodes the same way; this checks a whole
        set. Cheap unless some prompt may exceed the context (each token covers at least one UTF-8
        byte, so shorter prompts never do): only then are the prompts built and tokenised."""
        self._check_tokenizer_text(labels)
        limit = self.cfg.context_length - 2
        if len(labels) < 2 or (max(len(lb.encode()) for lb in labels)
                               + max(len(t.encode()) for t in templates)) <= limit:
            return
        prompts = apply_templates(labels, templates)
        for j in range(len(templates)):  # the over-long warning comes once, when they are encoded
            self._tokenize([row[j] for row in prompts], warn=False)

    def _check_tokenizer_text(self, labels: list[str]) -> None:
        """Refuse two labels that CLIP's tokenizer reads as the same text: it repairs mojibake and
        unescapes HTML (ftfy, ``html.unescape``) and lower-cases, so ``"salt &amp; pepper"`` is
        ``"salt & pepper"`` and ``"cafÃ©"`` is ``"café"``; their embeddings would be identical."""
        clean = getattr(self.tokenizer, "clean_fn", None)
        if clean is None or len(labels) < 2:
            return
        memo = self.__dict__.setdefault("_clean_memo", {})
        if len(memo) > 65536:
            memo.clear()
        seen: dict[str, int] = {}
        for i, label in enumerate(labels):
            key = memo.get(label)
            if key is None:
                key = memo[label] = clean(label)
            j = seen.setdefault(key, i)
            if j != i:
                raise LabelError(f"labels {labels[j]!r} (position {j + 1}) and {label!r} (position {i + 1}) are "
                                 "the same text to CLIP's tokenizer (it repairs mojibake, unescapes HTML and "
                                 "lower-cases) and would get one embedding; remove one")

    def _tokenize(self, labels: list[str], warn: bool = True) -> tuple[torch.Tensor, list[int]]:
        """:meth:`tokenize`, plus each label's sequence length (start and end tokens included),
        known here without reading the tensor back (so grouping never waits on a device)."""
        if not labels:
            raise LabelError("no labels given: pass at least one label string")
        limit = self.cfg.context_length - 2
        cut = []
        lengths = []
        for i, label in enumerate(labels):
            n = len(self.tokenizer.encode(label))
            lengths.append(min(n, limit) + 2)
            if n > limit:
                cut.append(i)
                if warn:
                    _logger.warning("label %r... has %d tokens; CLIP reads only the first %d", label[:40], n, limit)
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
        return tokens, lengths

    def encode_tokens(
        self, tokens: torch.Tensor, reference: bool = False, lengths: list[int] | None = None
    ) -> torch.Tensor:
        """Token ids (K, T) -> L2-normalised embeddings (K, D): fp32, or fp16 if ``reference``.

        The tower computes in that dtype whatever the storage dtype of its weights (``model.half()``)
        and whatever autocast is active around it: the embeddings of a label never depend on the
        caller's precision context. ``lengths`` (from :meth:`_tokenize`) saves reading ``tokens``.
        """
        device = self.model.token_embedding.weight.device
        with torch.autocast(device.type, enabled=False):
            if reference:
                return self.encode_reference(tokens.to(device))
            # The causal mask and EOT pooling make each label's result independent of the positions
            # after its EOT, so labels run in groups of equal length, each cut right after its EOT
            # (same result up to ~4e-6; 150 ADE20K labels: 483 token positions instead of 11,550).
            if lengths is None:  # EOT has the largest id in CLIP's vocabulary
                lengths = (tokens.argmax(dim=-1) + 1).tolist()
            rows: dict[int, list[int]] = {}
            for i, n in enumerate(lengths):
                rows.setdefault(n, []).append(i)
            groups = [(torch.tensor(r).to(device), n) for n, r in sorted(rows.items())]
            return self.encode_groups(tokens.to(device), groups, torch.float32)

    def encode_groups(
        self, tokens: torch.Tensor, groups: list[tuple[torch.Tensor | None, int]], dtype: torch.dtype
    ) -> torch.Tensor:
        """Run the text tower on groups of rows of ``tokens``, each cut to its length.

        Args:
            tokens: (K, T) token ids.
            groups: ``(row indices or None for all rows, sequence length)`` pairs covering every row.
            dtype: compute dtype.

        Returns:
            (K, D) L2-normalised embeddings in ``dtype``.
        """
        m = self.model
        eot = tokens.argmax(dim=-1)
        rows = [tokens if idx is None else tokens[idx] for idx, _ in groups]
        xs = [m.token_embedding(r[:, :n]).to(dtype) + m.positional_embedding[:n].to(dtype) for r, (_, n) in zip(rows, groups)]
        masks = [m.attn_mask[:n, :n].to(dtype) for _, n in groups]
        for block in m.transformer.resblocks:
            # cast this block's (fp16-stored) matrices once for all groups
            attn = block.attn
            w_in, b_in = attn.in_proj_weight.to(dtype), attn.in_proj_bias.to(dtype)
            w_out, b_out = attn.out_proj.weight.to(dtype), attn.out_proj.bias.to(dtype)
            fc, proj = block.mlp.c_fc, block.mlp.c_proj
            w_fc, b_fc, w_proj, b_proj = fc.weight.to(dtype), fc.bias.to(dtype), proj.weight.to(dtype), proj.bias.to(dtype)
            for g, (x, mask) in enumerate(zip(xs, masks)):
                q = _layer_norm(block.ln_1, x).transpose(0, 1)  # (T, K, C): nn.MultiheadAttention's sequence-first layout
                h = F.multi_head_attention_forward(
                    q, q, q, attn.embed_dim, attn.num_heads, w_in, b_in, None, None, False, 0.0, w_out, b_out,
                    training=False, need_weights=False, attn_mask=mask,
                )[0]
                x = x + h.transpose(0, 1)
                h = F.linear(_layer_norm(block.ln_2, x), w_fc, b_fc)
                xs[g] = x + F.linear(h * torch.sigmoid(1.702 * h), w_proj, b_proj)  # QuickGELU
        projection = m.text_projection.to(dtype)
        pooled = []
        for (idx, _), x in zip(groups, xs):
            e = eot if idx is None else eot[idx]
            pooled.append(_layer_norm(m.ln_final, x)[torch.arange(x.shape[0], device=x.device), e] @ projection)
        if len(groups) == 1 and groups[0][0] is None:
            out = pooled[0]
        else:
            out = torch.empty(tokens.shape[0], projection.shape[1], dtype=dtype, device=tokens.device)
            for (idx, _), p in zip(groups, pooled):
                out[idx] = p
        return out / out.norm(dim=-1, keepdim=True)

    def encode_reference(self, tokens: torch.Tensor) -> torch.Tensor:
        """OpenAI ``CLIP.encode_text`` as the reference runs it: fp16, full context, L2-normalised.

        Follows ``clip/model.py`` op for op *and* layout for layout: the sequence-first view made by
        one ``permute`` of the embeddings, LayerNorm in fp32 (contiguous output) fed to attention as
        one tensor (``attn(x, x, x)``), residual adds on the view. fp16 matrix products round
        differently for different memory layouts, so this is what makes the result bit-identical to
        ``clip.model.CLIP.encode_text`` (tested against the ``openai-clip`` package).
        """
        m, dt = self.model, torch.float16
        x = m.token_embedding(tokens).to(dt) + m.positional_embedding.to(dt)
        x = x.permute(1, 0, 2)  # NLD -> LND
        mask = m.attn_mask.to(dt)
        for block in m.transformer.resblocks:
            attn, fc, proj = block.attn, block.mlp.c_fc, block.mlp.c_proj
            h = _layer_norm(block.ln_1, x)
            x = x + F.multi_head_attention_forward(
                h, h, h, attn.embed_dim, attn.num_heads, attn.in_proj_weight.to(dt), attn.in_proj_bias.to(dt),
                None, None, False, 0.0, attn.out_proj.weight.to(dt), attn.out_proj.bias.to(dt),
                training=False, need_weights=False, attn_mask=mask,
            )[0]
            h = F.linear(_layer_norm(block.ln_2, x), fc.weight.to(dt), fc.bias.to(dt))
            x = x + F.linear(h * torch.sigmoid(1.702 * h), proj.weight.to(dt), proj.bias.to(dt))  # QuickGELU
        x = _layer_norm(m.ln_final, x.permute(1, 0, 2)).to(dt)
        out = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ m.text_projection.to(dt)
        return out / out.norm(dim=-1, keepdim=True)

    def forward(self, labels: list[str], reference: bool = False) -> torch.Tensor:
        """Label strings -> (K, D) L2-normalised embeddings."""
        tokens, lengths = self._tokenize(labels)
        return self.encode_tokens(tokens, reference=reference, lengths=lengths)


def _layer_norm(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """OpenAI's LayerNorm (``LayerNormFp32``): computed in fp32 and cast back to ``x``'s dtype, with
    the weights read in fp32 whatever they are stored in (a model cast with ``.half()``)."""
    weight = ln.weight.float() if ln.weight is not None else None
    bias = ln.bias.float() if ln.bias is not None else None
    return F.layer_norm(x.float(), ln.normalized_shape, weight, bias, ln.eps).to(x.dtype)


def _matrix_names(model: nn.Module) -> list[str]:
    """Parameters that OpenAI CLIP (and the official LSeg checkpoints) store in fp16."""
    return [
        n for n, p in model.named_parameters()
        if p.ndim >= 1 and "ln_" not in n and "embedding" not in n
    ]
