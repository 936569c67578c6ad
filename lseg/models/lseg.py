"""The LSeg network: ViT encoder + DPT decoder -> per-pixel embeddings, scored against label embeddings.

``logits = scale * cos(pixel_embedding, label_embedding)`` at 1/2 resolution, optional spatial
regularisation blocks, then x2 bilinear upsampling (align_corners=True), as in the reference's
``LSeg.forward``. The image and text halves are separate methods so a caller can encode an image
once and score any number of label sets against it (see :class:`lseg.inference.predictor.LSegPredictor`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lseg.errors import ConfigError
from lseg.geometry import SIZE_MULTIPLE, pad_to_multiple, pad_value
from lseg.models.backbone import ResNetBackbone, ViTBackbone
from lseg.models.config import Activation, LSegConfig, ResNetConfig
from lseg.models.decoder import DPTDecoder, TokenLayout
from lseg.models.numerics import Numerics, check_numerics
from lseg.models.precision import DTYPES, Precision, image_path_compute, resolve_precision, store_image_path
from lseg.models.text_encoder import CLIPTextEncoder


def _activation(name: Activation) -> nn.Module:
    return {"relu": nn.ReLU(), "lrelu": nn.LeakyReLU(), "tanh": nn.Tanh()}[name]


class SpatialBlock(nn.Module):
    """Reference ``depthwise_block`` (arch_option 2) / ``bottleneck_block`` (arch_option 1).

    One shared 3x3 conv (1 -> 1 channel) is applied to every class map; the bottleneck variant adds
    the per-pixel max over classes. The same instance is reused at every depth (shared weights).
    """

    def __init__(self, bottleneck: bool, activation: Activation) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel_size=3, padding=1)
        self.bottleneck = bottleneck
        self.activation = _activation(activation)

    def forward(self, x: torch.Tensor, act: bool = True) -> torch.Tensor:
        b, k, h, w = x.shape
        out = self.conv(x.reshape(b * k, 1, h, w)).view(b, k, h, w)
        if self.bottleneck:
            out = out + x.max(dim=1, keepdim=True)[0]
        return self.activation(out) if act else out


class LSeg(nn.Module):
    """LSeg network (reference ``LSegNet``; with a ResNet config, the zero-shot ``LSegRNNetZS``).

    The reference's zero-shot networks (``LSegNetZS``, ``LSegRNNetZS``) have the same parameters as
    ``LSegNet`` without the spatial block; their forward scores each sample against its own
    ``["others", class name]``: :meth:`score` with per-sample text embeddings (B, K, D).

    Save with :func:`lseg.save_pretrained` / :func:`lseg.push_to_hub`; load with :func:`lseg.load_model`.

    Submodules: ``backbone`` (timm ViT or torchvision ResNet), ``decoder`` (reassemble + RefineNet), ``pixel_proj``
    (1x1 conv to the embedding dimension, reference ``head1``), optional ``spatial_block``
    (reference ``head_block``), and ``text_encoder`` (frozen CLIP text tower).

    Args:
        config: architecture.
        pretrained_backbone: initialise the ViT from timm's ImageNet weights (needs network access
            or a timm cache; only useful for training from scratch).
    """

    def __init__(self, config: LSegConfig, pretrained_backbone: bool = False) -> None:
        super().__init__()
        self.config = config
        tokens: TokenLayout | None
        if isinstance(config.backbone, ResNetConfig):
            self.backbone: ViTBackbone | ResNetBackbone = ResNetBackbone(config.backbone, pretrained=pretrained_backbone)
            tokens = None
        else:
            vit = ViTBackbone(config.backbone, pretrained=pretrained_backbone)
            self.backbone, tokens = vit, TokenLayout(vit.embed_dim, vit.patch_size, config.readout)
        self.decoder = DPTDecoder(config.backbone.pyramid_channels, config.features, tokens)
        self.pixel_proj = nn.Conv2d(config.features, config.embed_dim, kernel_size=1)
        block = config.spatial_block
        self.spatial_block = (
            SpatialBlock(bottleneck=block.arch_option == 1, activation=block.activation)
            if block.arch_option in (1, 2)
            else None
        )
        self.text_encoder = CLIPTextEncoder(config.text)
        # Fixed temperature; a buffer (not a parameter, not saved) so it follows .to(device).
        self.register_buffer("logit_scale", torch.empty(()), persistent=False)
        self.register_buffer("pixel_mean", torch.empty(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.empty(1, 3, 1, 1), persistent=False)
        self.init_non_persistent_buffers()
        self._numerics: Numerics = "plain"  # the one numerics setting (lseg.models.numerics)

    # ------------------------------------------------------------------ helpers
    def init_non_persistent_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)create the buffers that are not in the state dict (constants derived from the
        config). Needed after building on the meta device and loading weights with ``assign=True``."""
        device = device if device is not None else self.pixel_mean.device
        if torch.device(device).type == "meta":
            return
        cfg = self.config
        self.logit_scale = torch.tensor(cfg.logit_scale, device=device)
        self.pixel_mean = torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1)
        self.pixel_std = torch.tensor(cfg.std, device=device).view(1, 3, 1, 1)
        self.text_encoder.model.attn_mask = self.text_encoder.model.build_causal_mask().to(device)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        """The image path's compute dtype: fp32, what :meth:`set_precision` stored its matrix weights
        in, or what ``model.half()`` / ``.to(torch.bfloat16)`` cast it to. Anything but fp32 runs the
        image path under autocast to this dtype (:meth:`encode_image`)."""
        return self.pixel_proj.weight.dtype

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float (B, 3, H, W) RGB -> the network's input normalisation, in :attr:`dtype`
        (computed in fp32, then cast)."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return ((x - self.pixel_mean.float()) / self.pixel_std.float()).to(self.dtype)

    # ------------------------------------------------------------------ numerics (lseg.models.numerics)
    @property
    def numerics(self) -> Numerics:
        """The numerics mode: ``reference``, ``plain`` (a new or loaded model) or ``fast`` (see
        :mod:`lseg.models.numerics`). Change it with :meth:`set_numerics`."""
        return self._numerics

    def set_numerics(self, numerics: Numerics | None = None, *, precision: Precision | None = None) -> LSeg:
        """The one switch for how the model computes: the numerics mode and, beside it, the image
        path's precision. Returns ``self``.

        Args:
            numerics: ``reference``, ``plain`` or ``fast`` (:mod:`lseg.models.numerics`); ``None``
                keeps the mode. ``reference`` needs fp32 weights (:class:`ConfigError` for weights
                already rounded to bf16/fp16) and re-lays nothing out; ``fast`` re-lays the decoder
                and pixel head out channels-last, once, when the mode changes (not by every call).
            precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (:meth:`set_precision`); ``None``
                keeps the weights as they are. Set after the mode, so ``reference`` overrides it.
        """
        if numerics is not None:
            numerics = check_numerics(numerics)
            if numerics == "reference" and self.dtype != torch.float32:
                raise ConfigError(
                    f"reference numerics need the fp32 weights, but the image path is stored in {self.dtype} "
                    "(rounded for good): load the model again"
                )
            if (numerics == "fast") != (self._numerics == "fast"):
                fmt = torch.channels_last if numerics == "fast" else torch.contiguous_format
                self.decoder.to(memory_format=fmt)
                self.pixel_proj.to(memory_format=fmt)
            if isinstance(self.backbone, ViTBackbone):
                self.backbone.set_explicit_attention(numerics == "reference")
            self._numerics = numerics
        if precision is not None:
            self.set_precision(precision)
        return self

    @property
    def reference_numerics(self) -> bool:
        """Whether the mode is ``reference``: the official computation op for op (fp16 CLIP text
        tower on the full 77-token context, fp16 similarity, the plain decoder). Setting it is
        ``set_numerics("reference")``; clearing it is ``set_numerics("fast")``."""
        return self._numerics == "reference"

    @reference_numerics.setter
    def reference_numerics(self, enabled: bool) -> None:
        self.set_numerics("reference" if enabled else "fast")

    @property
    def precision(self) -> str:
        """The image path's precision: ``fp32``, ``bf16`` or ``fp16`` (see :meth:`set_precision`)."""
        return {v: k for k, v in DTYPES.items()}.get(self.dtype, str(self.dtype))

    def set_precision(self, precision: str = "auto") -> LSeg:
        """Store and run the image path (image encoder, decoder, pixel head) in ``precision``
        (``auto``: what :func:`lseg.models.precision.resolve_precision` picks for the model's
        device): its matrix weights are stored in that dtype, its norms, biases and position
        embedding in fp32, and it runs under autocast (:func:`lseg.models.precision.store_image_path`).
        The text tower, the similarity and the spatial block stay in fp32, so logits and
        embeddings are fp32 whatever the policy. Casting is in place and lossy: the weights' memory
        halves, and going back to fp32 later keeps the rounding. In ``reference`` numerics the
        policy is overridden: fp32. Returns ``self``. (``set_numerics(precision=...)`` calls this.)"""
        chosen = "fp32" if self.reference_numerics else resolve_precision(precision, self.device)
        store_image_path((self.backbone, self.decoder, self.pixel_proj), DTYPES[chosen])
        return self

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split as the reference's optimiser groups: ``encoder`` (ViT +
        reassemble: the reference's ``pretrained``) and ``decoder`` (fusion + heads: ``scratch``,
        trained with 10x the learning rate). The text encoder is frozen and in neither."""
        reassemble = self.decoder.reassemble
        encoder = list(self.backbone.parameters()) + (list(reassemble.parameters()) if reassemble is not None else [])
        enc_ids = {id(p) for p in encoder}
        decoder = [
            p for n, p in self.named_parameters()
            if id(p) not in enc_ids and not n.startswith("text_encoder.")
        ]
        return {"encoder": [p for p in encoder if p.requires_grad], "decoder": [p for p in decoder if p.requires_grad]}

    # ------------------------------------------------------------------ halves
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> L2-normalised pixel embeddings (B, D, ceil(H/2), ceil(W/2))
        in float32 whatever the image path's precision or an active autocast (normalised in fp32: a
        bf16 normalisation alone is off by ~2e-3).

        Any H, W is accepted: the input is padded at the bottom/right to a multiple of 32 with the
        normalised value of black (the reference evaluator's pad value) and the output is cropped.
        """
        x = x.to(self.dtype)
        h, w = x.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            x = pad_to_multiple(x, pad_value(self.pixel_mean, self.pixel_std))
        with image_path_compute(x.device.type, self.dtype):
            taps, grid = self.backbone(x)
            if self._numerics == "fast" and not self.training:
                feats = self._fused_head(self.decoder(taps, grid, refine_only=True, numerics="fast"))
            else:
                feats = self.pixel_proj(self.decoder(taps, grid, numerics=self._numerics))  # (B, D, H'/2, W'/2)
        feats = feats[..., : math.ceil(h / 2), : math.ceil(w / 2)].contiguous()
        if self._numerics == "reference":
            # The reference normalises (N, D) matrices: the whole (B*h*w, D) batch in LSegNet, one
            # (h*w, D) image at a time in the zero-shot networks. The reduction order depends on the
            # shape, and it shows once the result is rounded to fp16. ViT features come out in a
            # layout where the two give the same bits (tested); the ResNet network exists only as
            # the zero-shot one, so it normalises per image.
            b, d, fh, fw = feats.shape
            chunks = [feats[i : i + 1] for i in range(b)] if isinstance(self.backbone, ResNetBackbone) else [feats]
            out = []
            for f in chunks:
                flat = f.permute(0, 2, 3, 1).reshape(-1, d)
                out.append((flat / flat.norm(dim=-1, keepdim=True)).view(f.shape[0], fh, fw, d).permute(0, 3, 1, 2))
            return out[0] if len(out) == 1 else torch.cat(out)
        feats = feats.float()
        if torch.is_grad_enabled() and feats.requires_grad:
            return F.normalize(feats, dim=1)
        # In place at inference: saves a full-size copy (118 MB at 480x480).
        return feats.div_(feats.norm(dim=1, keepdim=True).clamp_min_(1e-12))

    def _fused_head(self, x: torch.Tensor) -> torch.Tensor:
        """``pixel_proj(out_conv(up2(x)))`` computed as ``up2(conv1x1(x))`` at a quarter of the pixels.

        Both 1x1 convs are linear and bilinear interpolation weights sum to one, so they commute
        with the upsampling and merge into one conv: the same result up to fp32 rounding, ~4x less
        work for the two largest convolutions of the decoder.
        """
        out_conv = self.decoder.fusion[0].out_conv
        with torch.autocast(x.device.type, enabled=False):  # merged in fp32 whatever the storage
            wp = self.pixel_proj.weight.flatten(1).float()  # (D, F)
            weight = (wp @ out_conv.weight.flatten(1).float())[..., None, None]
            bias = wp @ out_conv.bias.float() + self.pixel_proj.bias.float()
        # contiguous and fp32 here, at a quarter of the size: the upsampled map (the largest tensor
        # of the forward) then needs no layout copy and no cast later, and is interpolated in fp32
        y = F.conv2d(x, weight, bias).contiguous().float()
        return F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)

    def encode_text(self, labels: list[str]) -> torch.Tensor:
        """Label strings -> (K, D) L2-normalised embeddings (fp16 in reference-numerics mode)."""
        return self.text_encoder(labels, reference=self.reference_numerics)

    def score(
        self, pixel_embeddings: torch.Tensor, text_embeddings: torch.Tensor, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Pixel embeddings (B, D, h, w) x text embeddings (K, D) -> logits (B, K, H, W).

        ``H, W`` defaults to ``(2h, 2w)``; a ``size`` crops the x2-upsampled map (for odd inputs).
        Text of shape (B, K, D) scores each sample against its own labels, as the reference's
        zero-shot networks do with ``["others", class name]`` per episode. The similarity, the
        spatial block and the upsampling run in fp32 whatever the image path's precision or an
        active autocast (cheap, and where precision shows in the argmax): logits are fp32.
        """
        if text_embeddings.ndim == 3:
            return torch.cat([
                self.score(pixel_embeddings[i : i + 1], text_embeddings[i], size)
                for i in range(pixel_embeddings.shape[0])
            ])
        if self.reference_numerics:
            # Reference order: (fp32 0-dim scale * fp16(img)) stays fp16, @ fp16 text, then .float().
            b, d, h, w = pixel_embeddings.shape
            img = pixel_embeddings.permute(0, 2, 3, 1).reshape(-1, d).half()
            # `scale * fp16` (this operand order) rounds the scale to fp16 first: the reference's
            # effective temperature is 14.2890625, not 14.2857. `fp16 * scale` would compute in fp32.
            logits = self.logit_scale * img @ text_embeddings.half().t()  # 2-D mm, as the reference
            logits = logits.float().view(b, h, w, -1).permute(0, 3, 1, 2)
            return self._upsample(self._spatial_block(logits), size)
        with torch.autocast(pixel_embeddings.device.type, enabled=False):
            logits = torch.einsum(
                "bdhw,kd->bkhw", pixel_embeddings.float(), text_embeddings.float()
            ) * self.logit_scale.float()
            return self._upsample(self._spatial_block(logits), size)

    def _spatial_block(self, logits: torch.Tensor) -> torch.Tensor:
        if self.spatial_block is None:
            return logits
        dtype = logits.dtype
        logits = logits.to(self.spatial_block.conv.weight.dtype)  # a model cast whole with .half()
        for _ in range(self.config.block_depth - 1):
            logits = self.spatial_block(logits)
        return self.spatial_block(logits, act=False).to(dtype)

    @staticmethod
    def _upsample(logits: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=True)
        return logits if size is None else logits[..., : size[0], : size[1]]

    def forward(self, x: torch.Tensor, labels: list[str] | torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) and labels (strings or precomputed (K, D) embeddings)
        -> logits (B, K, H, W)."""
        text = labels if isinstance(labels, torch.Tensor) else self.encode_text(list(labels))
        return self.score(self.encode_image(x), text, size=(x.shape[-2], x.shape[-1]))
