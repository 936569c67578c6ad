"""The LSeg network: image encoder + DPT decoder -> per-pixel embeddings; logits are ``scale * cos``
with label embeddings at 1/2 resolution, the optional spatial block, then x2 bilinear upsampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lseg.errors import ConfigError
from lseg.geometry import SIZE_MULTIPLE, pad_to_multiple, pad_value
from lseg.models import precision as prec
from lseg.models.backbone import ResNetBackbone, ViTBackbone
from lseg.models.config import NUMERICS, Activation, LSegConfig, Numerics, ResNetConfig
from lseg.models.decoder import DPTDecoder
from lseg.models.precision import image_path_compute
from lseg.models.text_encoder import CLIPTextEncoder
from lseg.options import Precision, check_compile


class SpatialBlock(nn.Module):
    """Reference ``depthwise_block`` (arch_option 2) / ``bottleneck_block`` (1): one 3x3 conv shared by
    every class map (+ the per-pixel max over classes for the bottleneck), reused at every depth."""

    def __init__(self, bottleneck: bool, activation: Activation) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel_size=3, padding=1)
        self.bottleneck = bottleneck
        self.activation = {"relu": nn.ReLU, "lrelu": nn.LeakyReLU, "tanh": nn.Tanh}[activation]()

    def forward(self, x: torch.Tensor, act: bool = True) -> torch.Tensor:
        b, k, h, w = x.shape
        out = self.conv(x.reshape(b * k, 1, h, w)).view(b, k, h, w)
        if self.bottleneck:
            out = out + x.max(dim=1, keepdim=True)[0]
        return self.activation(out) if act else out


class LSeg(nn.Module):
    """LSeg network (reference ``LSegNet``; with a ResNet config, the zero-shot ``LSegRNNetZS``):
    ``backbone``, ``decoder``, ``pixel_proj`` (reference ``head1``), optional ``spatial_block``
    (``head_block``) and the frozen ``text_encoder``. ``pretrained_backbone``: the image encoder starts
    from ImageNet weights (for training)."""

    def __init__(self, config: LSegConfig, pretrained_backbone: bool = False) -> None:
        super().__init__()
        self.config = config
        tokens = None
        if isinstance(config.backbone, ResNetConfig):
            self.backbone: ViTBackbone | ResNetBackbone = ResNetBackbone(config.backbone, pretrained_backbone)
            channels = (256, 512, 1024, 2048)  # Bottleneck expansion 4 x (64, 128, 256, 512)
        else:
            vit = ViTBackbone(config.backbone, pretrained=pretrained_backbone)
            self.backbone, tokens = vit, (config.readout, vit.embed_dim, vit.patch_size)
            channels = config.backbone.reassemble_channels
        self.decoder = DPTDecoder(channels, config.features, tokens)
        self.pixel_proj = nn.Conv2d(config.features, config.embed_dim, kernel_size=1)
        block = config.spatial_block
        self.spatial_block = (SpatialBlock(bottleneck=block.arch_option == 1, activation=block.activation)
                              if block.arch_option else None)
        self.text_encoder = CLIPTextEncoder(config.text)
        # constants of the config: buffers (not saved) so that they follow .to(device)
        self.register_buffer("logit_scale", torch.empty(()), persistent=False)
        self.register_buffer("pixel_mean", torch.empty(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.empty(1, 3, 1, 1), persistent=False)
        self.init_non_persistent_buffers()
        self._numerics: Numerics = "plain"

    def init_non_persistent_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)create the buffers not in the state dict (after building on the meta device)."""
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
        """The image path's compute dtype (anything but fp32 runs it under autocast to that)."""
        return self.pixel_proj.weight.dtype

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float (B, 3, H, W) RGB -> normalised input in :attr:`dtype`."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return ((x - self.pixel_mean.float()) / self.pixel_std.float()).to(self.dtype)

    @property
    def numerics(self) -> Numerics:
        """``reference`` (the official code op for op: bit-identical logits to ``isl-org/lang-seg`` on the same
        CPU and thread count; fp32 weights only), ``plain`` (a new or loaded model: the stored weights in their
        usual layout) or ``fast`` (``plain`` with the decoder channels-last and its last two 1x1 convs merged;
        what :class:`lseg.LSegPredictor` runs). Training mode always runs the decoder as written."""
        return self._numerics

    def set_numerics(self, numerics: Numerics | None = None, *, precision: Precision | None = None) -> LSeg:
        """Set the numerics mode (:attr:`numerics`; ``reference`` needs fp32 weights) and then the precision
        (:meth:`set_precision`); ``None`` keeps either. Returns ``self``."""
        if numerics is not None:
            if numerics not in NUMERICS:
                raise ConfigError(f"numerics must be one of {', '.join(NUMERICS)}, got {numerics!r}")
            if numerics == "reference" and self.precision != "fp32":
                raise ConfigError(
                    f"reference numerics need the fp32 weights, but the image path is stored in {self.precision} "
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
        """Whether the mode is ``reference``; clearing it sets ``fast``."""
        return self._numerics == "reference"

    @reference_numerics.setter
    def reference_numerics(self, enabled: bool) -> None:
        self.set_numerics("reference" if enabled else "fast")

    @property
    def precision(self) -> str:
        """The image path's precision: ``fp32``, ``bf16``, ``fp16`` or ``int8``."""
        if any(isinstance(m, prec.Int8Linear) for m in self.backbone.modules()):
            return "int8"
        return {v: k for k, v in prec.DTYPES.items()}.get(self.dtype, str(self.dtype))

    def set_precision(self, precision: str = "auto") -> LSeg:
        """Store and run the image path in ``precision`` (:mod:`lseg.models.precision`; fp32 in
        ``reference`` numerics), in place and lossy (going back to fp32 keeps the rounding). Returns ``self``."""
        chosen = "fp32" if self.reference_numerics else prec.resolve_precision(precision, self.device)
        int8 = chosen == "int8"
        if int8 and not isinstance(self.backbone, ViTBackbone):
            raise ConfigError("precision int8 quantises a ViT's linear layers; this network's ResNet trunk has "
                              "none: use auto or fp32")
        prec.quantize_linears(self.backbone, False)  # int8 layers back to fp32 ones (their rounding kept)
        stored = prec.resolve_precision("auto", self.device) if int8 else chosen
        prec.store_image_path((self.backbone, self.decoder, self.pixel_proj), prec.DTYPES[stored])
        if int8:
            prec.quantize_linears(self.backbone, True)
        return self

    def compile_image_path(self) -> LSeg:
        """``torch.compile`` the image encoder and decoder in place; on a CPU with inductor's freezing (the
        weights become constants: call it once weights and precision are final). Returns ``self``."""
        check_compile(True, (self.precision,))
        options = {"freezing": True} if self.device.type == "cpu" else None
        self.backbone.compile(options=options)
        self.decoder.compile(options=options)
        return self

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters as the reference's optimiser groups: ``encoder`` (backbone + reassemble)
        and ``decoder`` (the rest but the frozen text encoder)."""
        reassemble = self.decoder.reassemble
        encoder = [*self.backbone.parameters(), *(reassemble.parameters() if reassemble is not None else ())]
        not_decoder = {id(p) for p in encoder} | {id(p) for p in self.text_encoder.parameters()}
        groups = {"encoder": encoder, "decoder": [p for p in self.parameters() if id(p) not in not_decoder]}
        return {k: [p for p in v if p.requires_grad] for k, v in groups.items()}

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> L2-normalised fp32 pixel embeddings (B, D, ceil(H/2),
        ceil(W/2)); the input is padded bottom/right to a multiple of 32 with black, as the reference."""
        x = x.to(self.dtype)
        h, w = x.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            x = pad_to_multiple(x, pad_value(self.pixel_mean, self.pixel_std))
        with image_path_compute(x.device.type, self.dtype):
            taps, grid = self.backbone(x)
            if self._numerics == "fast" and not self.training:
                feats = self._fused_head(self.decoder(taps, grid, refine_only=True, numerics="fast"))
            else:
                feats = self.pixel_proj(self.decoder(taps, grid, numerics=self._numerics))
        feats = feats[..., : math.ceil(h / 2), : math.ceil(w / 2)].contiguous()
        if self._numerics == "reference":
            # The reference normalises (N, D) matrices: the whole batch in LSegNet, one image at a time in
            # the zero-shot (ResNet) networks; the reduction order shows in fp16.
            _, d, fh, fw = feats.shape
            out = []
            for f in feats.split(1) if isinstance(self.backbone, ResNetBackbone) else [feats]:
                flat = f.permute(0, 2, 3, 1).reshape(-1, d)
                flat = flat / flat.norm(dim=-1, keepdim=True)
                out.append(flat.view(f.shape[0], fh, fw, d).permute(0, 3, 1, 2))
            return out[0] if len(out) == 1 else torch.cat(out)
        feats = feats.float()  # normalised in fp32: in bf16 alone it is off by ~2e-3
        if torch.is_grad_enabled() and feats.requires_grad:
            return F.normalize(feats, dim=1)
        # In place at inference: saves a full-size copy (118 MB at 480x480).
        return feats.div_(feats.norm(dim=1, keepdim=True).clamp_min_(1e-12))

    def _fused_head(self, x: torch.Tensor) -> torch.Tensor:
        """``pixel_proj(out_conv(up2(x)))`` as ``up2(conv1x1(x))``: 1x1 convs commute with bilinear
        upsampling and merge (same result up to rounding, ~4x less work for the two largest convs)."""
        out_conv = self.decoder.fusion[0].out_conv
        with torch.autocast(x.device.type, enabled=False):  # merged in fp32 whatever the storage
            wp = self.pixel_proj.weight.flatten(1).float()  # (D, F)
            weight = (wp @ out_conv.weight.flatten(1).float())[..., None, None]
            bias = wp @ out_conv.bias.float() + self.pixel_proj.bias.float()
        # contiguous fp32 at a quarter of the size: the upsampled map then needs no copy nor cast
        y = F.conv2d(x, weight, bias).contiguous().float()
        return F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)

    def encode_text(self, labels: list[str]) -> torch.Tensor:
        """Label strings -> (K, D) L2-normalised embeddings (fp16 in reference-numerics mode)."""
        return self.text_encoder(labels, reference=self.reference_numerics)

    def score(self, pixel_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
              size: tuple[int, int] | None = None) -> torch.Tensor:
        """Pixel embeddings (B, D, h, w) x text embeddings (K, D), or (B, K, D) per sample -> fp32 logits
        (B, K, 2h, 2w), cropped to ``size``."""
        if text_embeddings.ndim == 3:
            return torch.cat([
                self.score(pixel_embeddings[i : i + 1], text_embeddings[i], size)
                for i in range(pixel_embeddings.shape[0])
            ])
        if self.reference_numerics:
            # Reference order: (fp32 0-dim scale * fp16(img)) stays fp16, @ fp16 text, then .float().
            b, d, h, w = pixel_embeddings.shape
            img = pixel_embeddings.permute(0, 2, 3, 1).reshape(-1, d).half()
            # `scale * fp16` (this operand order) rounds the scale to fp16 first: the reference's effective
            # temperature is 14.2890625, not 14.2857 (`fp16 * scale` would compute in fp32).
            logits = self.logit_scale * img @ text_embeddings.half().t()  # 2-D mm, as the reference
            logits = logits.float().view(b, h, w, -1).permute(0, 3, 1, 2)
            return self._head(logits, size)
        with torch.autocast(pixel_embeddings.device.type, enabled=False):
            pixels, text = pixel_embeddings.float(), text_embeddings.float()
            logits = torch.einsum("bdhw,kd->bkhw", pixels, text) * self.logit_scale.float()
            return self._head(logits, size)

    def _head(self, logits: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
        """The spatial block (if any), then x2 bilinear upsampling, cropped to ``size``."""
        if self.spatial_block is not None:
            dtype = logits.dtype
            logits = logits.to(self.spatial_block.conv.weight.dtype)  # a model cast whole with .half()
            for _ in range(self.config.block_depth - 1):
                logits = self.spatial_block(logits)
            logits = self.spatial_block(logits, act=False).to(dtype)
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=True)
        return logits if size is None else logits[..., : size[0], : size[1]]

    def forward(self, x: torch.Tensor, labels: list[str] | torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) and labels (strings or precomputed (K, D) embeddings)
        -> logits (B, K, H, W)."""
        text = labels if isinstance(labels, torch.Tensor) else self.encode_text(list(labels))
        return self.score(self.encode_image(x), text, size=(x.shape[-2], x.shape[-1]))
