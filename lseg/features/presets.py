"""Preprocessing presets: the L2-normalised (D, H, W) feature maps each LSeg consumer computes, reproduced
step by step (docs/features-3d.md, "Presets"): ``ours`` with the predictor's geometry, the others with the
reference's ``MultiEvalModule``'s (:mod:`lseg.inference.multiscale`)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from lseg.errors import LSegError
from lseg.features.options import Resolution, parse_resolution
from lseg.geometry import pad_value, resize, scaled_size, working_size
from lseg.inference.images import rgb_pixels
from lseg.inference.multiscale import evaluate_scales
from lseg.inference.predictor import ADE20K_SCALES, LSegPredictor


@dataclass(frozen=True)
class Preset:
    """One preprocessing recipe.

    Attributes:
        name: preset name (recorded in the store).
        engine: ``predictor`` (``ours``) or ``evaluator`` (the reference's ``MultiEvalModule``).
        base_size: long side at scale 1; ``None``: twice the image's long side (OpenScene).
        crop_size: window size; ``None``: the base size.
        stride_rate: window stride = ``int(crop * stride_rate)``.
        scales: scales of ``base_size``.
        flip: add the mirrored image's (mirrored back) map.
        half_res_windows: windows give the network's half-resolution map (OpenScene's extractor)
            instead of the x2-upsampled one.
        mean, std: input normalisation; ``None``: the model's.
        output: default output resolution (``half | input | original``).
    """

    name: str
    engine: Literal["predictor", "evaluator"] = "evaluator"
    base_size: int | None = 520
    crop_size: int | None = 480
    stride_rate: float = 2 / 3
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    half_res_windows: bool = False
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    output: str = "original"

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dataclasses.asdict(self))


def json_safe(obj: Any) -> Any:
    """``obj`` as a JSON round trip gives it back (tuples -> lists), for comparisons."""
    return json.loads(json.dumps(obj))


_HALF = (0.5, 0.5, 0.5)

PRESETS: dict[str, Preset] = {
    "ours": Preset("ours", engine="predictor", base_size=None, crop_size=None, output="half"),
    "reference": Preset("reference", scales=ADE20K_SCALES, flip=True),
    "reference-ss": Preset("reference-ss", flip=True),
    "openscene": Preset("openscene", base_size=None, crop_size=None, flip=True, half_res_windows=True,
                        mean=_HALF, std=_HALF),
    "vlmaps": Preset("vlmaps", mean=_HALF, std=_HALF, output="input"),
}


def get_preset(preset: str | Preset) -> Preset:
    """A :class:`Preset` by name (:data:`PRESETS`), or the preset itself."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise LSegError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    return PRESETS[preset]


def describe(preset: str | Preset, resolution: Resolution | None, geometry: tuple[int | None, int, int]
             ) -> dict[str, Any]:
    """What an extraction computes, known before the model is built: the preset, the ``geometry``
    ``(size, crop_size, stride)`` for ``ours``, and the output resolution (``None``: the preset's)."""
    p = get_preset(preset)
    out: dict[str, Any] = {"preset": p.to_dict()}
    if p.engine == "predictor":
        size, crop, stride = geometry
        out["geometry"] = {"size": size, "crop_size": crop, "stride": stride, "normalization": "model"}
    out["resolution"] = parse_resolution(resolution if resolution is not None else p.output)
    return json_safe(out)


class FeatureExtractor:
    """Images -> (D, H, W) float32 L2-normalised feature maps, with one preset (a name in
    :data:`PRESETS` or a :class:`Preset`) and one resolution (``half | input | original | HxW |
    (H, W)``; ``None``: the preset's ``output``); ``predictor`` holds the model (and ``ours``'
    geometry)."""

    def __init__(self, predictor: LSegPredictor, preset: str | Preset = "ours",
                 resolution: Resolution | None = None) -> None:
        self.predictor = predictor
        self.preset = p = get_preset(preset)
        self.resolution = parse_resolution(resolution if resolution is not None else p.output)
        if p.engine == "evaluator":
            if not p.scales or min(p.scales) <= 0 or not 0 < p.stride_rate <= 1:
                raise LSegError(f"preset {p.name}: scales must be positive and 0 < stride_rate <= 1")
            if p.half_res_windows and p.base_size is not None:
                stride = int((p.crop_size or p.base_size) * p.stride_rate)
                if stride % 2 or (p.crop_size or p.base_size) % 2:
                    raise LSegError(f"preset {p.name}: half-resolution windows need an even crop and stride")
            model = predictor.model
            mean = torch.tensor(p.mean, device=model.device) if p.mean else model.pixel_mean.flatten()
            std = torch.tensor(p.std, device=model.device) if p.std else model.pixel_std.flatten()
            self._mean, self._std = mean.view(1, 3, 1, 1).float(), std.view(1, 3, 1, 1).float()

    @property
    def model(self):  # type: ignore[no-untyped-def]
        return self.predictor.model

    def to(self, device: str | torch.device) -> FeatureExtractor:
        """Move the model (and the preset's constants) to ``device``; returns ``self``."""
        self.predictor.model.to(device)
        if self.preset.engine == "evaluator":
            self._mean, self._std = self._mean.to(device), self._std.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        """Preset, effective geometry and resolution, as recorded in a store's manifest."""
        pr = self.predictor
        return describe(self.preset, self.resolution, (pr.size, pr.crop_size, pr.stride))

    def working_size(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) the network sees (the evaluator presets: at scale 1)."""
        if self.preset.engine == "predictor":
            return working_size(h, w, self.predictor.size)
        return scaled_size(h, w, self._base(h, w))

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) of the map for an h x w image."""
        r = self.resolution
        if isinstance(r, tuple):
            return r
        if r == "original":
            return h, w
        wh, ww = self.working_size(h, w)
        return (wh, ww) if r == "input" else (math.ceil(wh / 2), math.ceil(ww / 2))

    def _base(self, h: int, w: int) -> int:
        return self.preset.base_size if self.preset.base_size is not None else 2 * max(h, w)

    @torch.inference_mode()
    def __call__(self, images: Sequence[Any]) -> list[torch.Tensor]:
        """Images (anything :func:`lseg.io.load_image` reads) -> maps on the CPU."""
        rgbs = [rgb_pixels(im, torch.device("cpu")) for im in images]
        if self.preset.engine == "predictor":
            embs = self.predictor.embed_images(rgbs)
            return [self._from_half(e.pixels, e.input_size, self.output_size(*e.image_size)) for e in embs]
        return [self._evaluate(rgb) for rgb in rgbs]

    def _from_half(self, pixels: torch.Tensor, input_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        x = pixels[None].float()
        if tuple(size) != tuple(x.shape[-2:]):
            # as LSeg upsamples its logits: x2 (align_corners=True), crop to the working size, resize
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)[..., : input_size[0], : input_size[1]]
            x = resize(x, size)
        return F.normalize(x, dim=1)[0].cpu()

    def _evaluate(self, rgb: np.ndarray) -> torch.Tensor:
        p, model = self.preset, self.model
        h, w = rgb.shape[:2]
        x = torch.from_numpy(rgb).to(model.device).permute(2, 0, 1)[None].float().div_(255.0)
        x = (x - self._mean) / self._std
        black = pad_value(self._mean, self._std)  # the preset's normalisation, not necessarily the model's
        crop = p.crop_size if p.crop_size is not None else self._base(h, w)
        f = 2 if p.half_res_windows else 1  # window maps on the half-resolution grid
        total = evaluate_scales(x, p.scales, self._base(h, w), crop, int(crop * p.stride_rate), black,
                                self._window, self.output_size(h, w), f)
        return F.normalize(total, dim=1)[0].cpu()

    def _window(self, win: torch.Tensor) -> torch.Tensor:
        """(1, 3, crop, crop) -> its map (+ the mirrored window's, mirrored back, with ``flip``)."""

        def one(x: torch.Tensor) -> torch.Tensor:
            half = self.model.encode_image(x).float()
            if self.preset.half_res_windows:
                return half
            return F.interpolate(half, scale_factor=2, mode="bilinear", align_corners=True)[..., : x.shape[-2], : x.shape[-1]]

        out = one(win)
        if self.preset.flip:
            out += one(win.flip(-1)).flip(-1)
        return out
