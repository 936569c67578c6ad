"""An independent port of the reference network (isl-org/lang-seg ``LSegNet``) for parity tests.

Written from the reference's code as described in ``shared/docs/reference-lseg.md`` sections 3-4:
the same module names (so its ``state_dict()`` has exactly the official keys and shapes), forward
hooks collecting block outputs, ``forward_flex`` with the bilinear pos-embed resize, the
``act_postprocess`` ``nn.Sequential`` stacks run as ``[0:2]`` + unflatten + ``[3:]``, RefineNet
fusion blocks, and the fp16 similarity of ``LSeg.forward``. The CLIP model is OpenAI's own code
(the ``openai-clip`` package, the module lang-seg imports as ``clip``), converted to fp16 as
``clip.load(device="cuda")`` leaves it, and the ResNet-101 trunk of the zero-shot ``LSegRNNetZS`` is
torchvision's, as in the reference. It shares no code with ``lseg.models`` on purpose.
"""

from __future__ import annotations

import math
import warnings

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

with warnings.catch_warnings():  # openai-clip imports pkg_resources (deprecated)
    warnings.simplefilter("ignore")
    import clip
    from clip.model import CLIP, convert_weights

#: ``clip.model.CLIP`` constructor arguments of the released models (as ``clip.build_model`` reads
#: them from the OpenAI state dicts).
CLIP_DIMS = {
    "ViT-B-32": {"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768, "vision_patch_size": 32,
                     "context_length": 77, "vocab_size": 49408, "transformer_width": 512, "transformer_heads": 8,
                     "transformer_layers": 12},
    "RN50x16": {"embed_dim": 768, "image_resolution": 384, "vision_layers": (6, 8, 18, 8), "vision_width": 96,
                    "vision_patch_size": None, "context_length": 77, "vocab_size": 49408, "transformer_width": 768,
                    "transformer_heads": 12, "transformer_layers": 12},
}


def make_clip(dims: dict) -> CLIP:
    """OpenAI's CLIP with the weights ``clip.load(..., device="cuda", jit=False)`` returns: OpenAI's
    files hold fp16 tensors, so every value is fp16-representable, also in the parameters (embeddings,
    LayerNorms) that ``convert_weights`` leaves fp32."""
    model = CLIP(**dims)
    for p in model.parameters():
        p.data = p.data.half().float()
    convert_weights(model)
    return model


BACKBONES = {
    # name: (timm model, hooks, reassemble features, CLIP model)
    "clip_vitl16_384": ("vit_large_patch16_384", [5, 11, 17, 23], [256, 512, 1024, 1024], "ViT-B-32"),
    "clipRN50x16_vitl16_384": ("vit_large_patch16_384", [5, 11, 17, 23], [256, 512, 1024, 1024], "RN50x16"),
    "clip_vitb32_384": ("vit_base_patch32_384", [2, 5, 8, 11], [96, 192, 384, 768], "ViT-B-32"),
}


class Transpose(nn.Module):
    def __init__(self, d0: int, d1: int) -> None:
        super().__init__()
        self.d0, self.d1 = d0, d1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.d0, self.d1)


class ProjectReadout(nn.Module):
    def __init__(self, in_features: int, start_index: int = 1) -> None:
        super().__init__()
        self.start_index = start_index
        self.project = nn.Sequential(nn.Linear(2 * in_features, in_features), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        readout = x[:, 0].unsqueeze(1).expand_as(x[:, self.start_index:])
        return self.project(torch.cat((x[:, self.start_index:], readout), -1))


class Slice(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 1:]


class AddReadout(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 1:] + x[:, 0].unsqueeze(1)


class Interpolate(nn.Module):
    def __init__(self, scale_factor: float, mode: str, align_corners: bool = False) -> None:
        super().__init__()
        self.scale_factor, self.mode, self.align_corners = scale_factor, mode, align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode, align_corners=self.align_corners)


class ResidualConvUnit_custom(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(features)
        self.bn2 = nn.BatchNorm2d(features)
        self.activation = nn.ReLU(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation(x)
        out = self.bn1(self.conv1(out))
        out = self.activation(out)
        out = self.bn2(self.conv2(out))
        return out + x


class FeatureFusionBlock_custom(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1, 1, 0, bias=True)
        self.resConfUnit1 = ResidualConvUnit_custom(features)
        self.resConfUnit2 = ResidualConvUnit_custom(features)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        output = xs[0]
        if len(xs) == 2:
            output = output + self.resConfUnit1(xs[1])
        output = self.resConfUnit2(output)
        output = F.interpolate(output, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(output)


class depthwise_conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(1, 1, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C, H, W = x.shape[1:]
        return self.depthwise(x.reshape(-1, 1, H, W)).view(-1, C, H, W)


class HeadBlock(nn.Module):
    """``bottleneck_block`` (arch_option 1) / ``depthwise_block`` (arch_option 2)."""

    def __init__(self, bottleneck: bool, activation: str) -> None:
        super().__init__()
        self.depthwise = depthwise_conv()
        self.bottleneck = bottleneck
        self.activation = {"relu": nn.ReLU(), "lrelu": nn.LeakyReLU(), "tanh": nn.Tanh()}[activation]

    def forward(self, x: torch.Tensor, act: bool = True) -> torch.Tensor:
        if self.bottleneck:
            sum_layer = torch.max(x, dim=1, keepdim=True)[0]
            x = self.depthwise(x) + sum_layer
        else:
            x = self.depthwise(x)
        return self.activation(x) if act else x


class RefLSegNet(nn.Module):
    """``LSegNet`` as the reference builds it. ``tiny`` overrides sizes for fast tests.

    Args:
        backbone: a key of :data:`BACKBONES`.
        vit_overrides: timm kwargs (embed_dim, depth, num_heads, img_size) for tiny variants.
        hooks, vit_features, features: tiny-variant overrides.
        clip_dims: ``clip.model.CLIP`` arguments (tiny variants; default: the released model's).
    """

    def __init__(
        self,
        backbone: str = "clip_vitl16_384",
        features: int = 256,
        readout: str = "project",
        arch_option: int = 0,
        block_depth: int = 0,
        activation: str = "lrelu",
        vit_overrides: dict | None = None,
        hooks: list[int] | None = None,
        vit_features: list[int] | None = None,
        clip_dims: dict | None = None,
    ) -> None:
        super().__init__()
        timm_name, def_hooks, def_feats, clip_name = BACKBONES[backbone]
        self.hooks = hooks or def_hooks
        feats = vit_features or def_feats
        self.clip_pretrained = make_clip(clip_dims or CLIP_DIMS[clip_name])
        # Reference: one nn.Module holding the timm model and the reassemble stacks.
        self.pretrained = nn.Module()
        self.pretrained.model = timm.create_model(timm_name, pretrained=False, **(vit_overrides or {}))
        vit = self.pretrained.model
        # The reference pins timm 0.4.12, whose attention is explicit (softmax((q @ k^T) * scale) @ v);
        # timm's unfused path scales q first, the same bits for head widths 16 and 64 (scale 1/4, 1/8).
        for block in vit.blocks:
            block.attn.fused_attn = False
        self.patch = vit.patch_embed.proj.kernel_size[0]
        dim = vit.embed_dim
        self.activations: dict[str, torch.Tensor] = {}
        for i, h in enumerate(self.hooks):
            vit.blocks[h].register_forward_hook(self._hook(str(i + 1)))
        size = [384, 384]
        for i, (c, stride) in enumerate(zip(feats, (4, 8, 16, 32))):
            readout_op = {"project": ProjectReadout(dim), "ignore": Slice(), "add": AddReadout()}[readout]
            layers = [readout_op, Transpose(1, 2), nn.Unflatten(2, torch.Size([size[0] // 16, size[1] // 16])),
                      nn.Conv2d(dim, c, kernel_size=1, stride=1, padding=0)]
            if self.patch > stride:
                f = self.patch // stride
                layers.append(nn.ConvTranspose2d(c, c, kernel_size=f, stride=f, padding=0, bias=True, dilation=1, groups=1))
            elif self.patch < stride:
                layers.append(nn.Conv2d(c, c, kernel_size=3, stride=2, padding=1))
            setattr(self.pretrained, f"act_postprocess{i + 1}", nn.Sequential(*layers))
        self.scratch = nn.Module()
        for i, c in enumerate(feats):
            setattr(self.scratch, f"layer{i + 1}_rn", nn.Conv2d(c, features, 3, 1, 1, bias=False))
            setattr(self.scratch, f"refinenet{i + 1}", FeatureFusionBlock_custom(features))
        out_c = self.clip_pretrained.text_projection.shape[1]
        self.scratch.head1 = nn.Conv2d(features, out_c, kernel_size=1)
        self.arch_option, self.block_depth = arch_option, block_depth
        if arch_option in (1, 2):
            self.scratch.head_block = HeadBlock(arch_option == 1, activation)
        self.scratch.output_conv = nn.Sequential(Interpolate(scale_factor=2, mode="bilinear", align_corners=True))
        self.logit_scale = torch.tensor(math.exp(math.log(1 / 0.07)), dtype=torch.float32)

    def _hook(self, name: str):  # type: ignore[no-untyped-def]
        def fn(module, inp, out):  # type: ignore[no-untyped-def]
            self.activations[name] = out
        return fn

    def _resize_pos_embed(self, posemb: torch.Tensor, gs_h: int, gs_w: int) -> torch.Tensor:
        posemb_tok, posemb_grid = posemb[:, :1], posemb[0, 1:]
        gs_old = int(math.sqrt(len(posemb_grid)))
        posemb_grid = posemb_grid.reshape(1, gs_old, gs_old, -1).permute(0, 3, 1, 2)
        posemb_grid = F.interpolate(posemb_grid, size=(gs_h, gs_w), mode="bilinear")
        posemb_grid = posemb_grid.permute(0, 2, 3, 1).reshape(1, gs_h * gs_w, -1)
        return torch.cat([posemb_tok, posemb_grid], dim=1)

    def forward_flex(self, x: torch.Tensor) -> torch.Tensor:
        m = self.pretrained.model
        b, _, h, w = x.shape
        pos_embed = self._resize_pos_embed(m.pos_embed, h // self.patch, w // self.patch)
        x = m.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((m.cls_token.expand(b, -1, -1), x), dim=1)
        x = m.pos_drop(x + pos_embed)
        for blk in m.blocks:
            x = blk(x)
        return m.norm(x)

    def forward_vit(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        self.forward_flex(x)
        out = []
        for i in range(4):
            pp = getattr(self.pretrained, f"act_postprocess{i + 1}")
            layer = pp[0:2](self.activations[str(i + 1)])
            layer = nn.Unflatten(2, torch.Size([h // self.patch, w // self.patch]))(layer)
            out.append(pp[3: len(pp)](layer))
        return out

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        return self.clip_pretrained.encode_text(text)  # OpenAI's code, fp16

    def forward(self, x: torch.Tensor, labelset: list[str]) -> torch.Tensor:
        text = clip.tokenize(labelset)
        path_1 = self._path_1(x)
        s = self.scratch
        text_features = self.encode_text(text)
        image_features = s.head1(path_1)
        imshape = image_features.shape
        image_features = image_features.permute(0, 2, 3, 1).reshape(-1, s.head1.out_channels)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        logits = self.logit_scale * image_features.half() @ text_features.t()
        out = logits.float().view(imshape[0], imshape[2], imshape[3], -1).permute(0, 3, 1, 2)
        if self.arch_option in (1, 2):
            for _ in range(self.block_depth - 1):
                out = s.head_block(out)
            out = s.head_block(out, False)
        return s.output_conv(out)

    def _path_1(self, x: torch.Tensor) -> torch.Tensor:
        l1, l2, l3, l4 = self.forward_vit(x)
        return _fuse(self.scratch, l1, l2, l3, l4)

    def forward_zs(self, x: torch.Tensor, labels: list[str]) -> torch.Tensor:
        """``LSegNetZS.forward(x, class_info)``: sample i scored against ``["others", labels[i]]``."""
        return _forward_zs(self, self._path_1(x), labels)


def _fuse(s: nn.Module, l1: torch.Tensor, l2: torch.Tensor, l3: torch.Tensor, l4: torch.Tensor) -> torch.Tensor:
    path_4 = s.refinenet4(s.layer4_rn(l4))
    path_3 = s.refinenet3(path_4, s.layer3_rn(l3))
    path_2 = s.refinenet2(path_3, s.layer2_rn(l2))
    return s.refinenet1(path_2, s.layer1_rn(l1))


def _forward_zs(net: nn.Module, path_1: torch.Tensor, labels: list[str]) -> torch.Tensor:
    """The zero-shot networks' forward after the decoder (``lseg_net_zs.py``), per sample."""
    texts = [clip.tokenize(["others", label]) for label in labels]
    text_features = [net.clip_pretrained.encode_text(t) for t in texts]
    image_features = net.scratch.head1(path_1)
    imshape = image_features.shape
    out_c = imshape[1]
    image_features = [image_features[i].unsqueeze(0).permute(0, 2, 3, 1).reshape(-1, out_c) for i in range(imshape[0])]
    image_features = [f / f.norm(dim=-1, keepdim=True) for f in image_features]
    text_features = [f / f.norm(dim=-1, keepdim=True) for f in text_features]
    logits = [net.logit_scale * f.half() @ t.t() for f, t in zip(image_features, text_features)]
    outs = [lg.float().view(1, imshape[2], imshape[3], -1).permute(0, 3, 1, 2) for lg in logits]
    return net.scratch.output_conv(torch.cat(outs, dim=0))


class RefLSegRNNetZS(nn.Module):
    """``LSegRNNetZS`` as the reference builds it: torchvision ResNet-101 trunk wrapped by
    ``_make_resnet_backbone``, scratch on [256, 512, 1024, 2048], CLIP ViT-B/32 (fp16).

    Args:
        layers, width_per_group: torchvision ``ResNet(Bottleneck, layers, width_per_group=...)``
            (tiny variants; default: ResNet-101).
    """

    def __init__(
        self, features: int = 256, layers: tuple[int, ...] = (3, 4, 23, 3), width_per_group: int = 64,
        clip_dims: dict | None = None,
    ) -> None:
        super().__init__()
        self.clip_pretrained = make_clip(clip_dims or CLIP_DIMS["ViT-B-32"])
        if tuple(layers) == (3, 4, 23, 3) and width_per_group == 64:
            resnet = models.resnet101()
        else:
            resnet = models.ResNet(models.resnet.Bottleneck, list(layers), width_per_group=width_per_group)
        self.pretrained = nn.Module()
        self.pretrained.layer1 = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1)
        self.pretrained.layer2 = resnet.layer2
        self.pretrained.layer3 = resnet.layer3
        self.pretrained.layer4 = resnet.layer4
        self.scratch = nn.Module()
        for i, c in enumerate([256, 512, 1024, 2048]):
            setattr(self.scratch, f"layer{i + 1}_rn", nn.Conv2d(c, features, 3, 1, 1, bias=False))
            setattr(self.scratch, f"refinenet{i + 1}", FeatureFusionBlock_custom(features))
        self.auxlayer = nn.Sequential(Interpolate(scale_factor=2, mode="bilinear", align_corners=True))
        self.scratch.head1 = nn.Conv2d(features, self.clip_pretrained.text_projection.shape[1], kernel_size=1)
        self.scratch.output_conv = nn.Sequential(Interpolate(scale_factor=2, mode="bilinear", align_corners=True))
        self.logit_scale = torch.tensor(math.exp(math.log(1 / 0.07)), dtype=torch.float32)

    def forward_zs(self, x: torch.Tensor, labels: list[str]) -> torch.Tensor:
        p = self.pretrained
        l1 = p.layer1(x)
        l2 = p.layer2(l1)
        l3 = p.layer3(l2)
        l4 = p.layer4(l3)
        return _forward_zs(self, _fuse(self.scratch, l1, l2, l3, l4), labels)
