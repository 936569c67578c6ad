"""Predictor: encode an image once, score any label set against it.

>>> predictor = LSegPredictor(lseg.load_model("lseg-vitl16/"))          # doctest: +SKIP
>>> emb = predictor.embed_image("street.jpg")                           # doctest: +SKIP
>>> a = predictor.segment(emb, ["road", "car", "sky", "other"])         # doctest: +SKIP
>>> b = predictor.segment(emb, ["person", "building", "other"])         # no image pass again

Geometry. By default the image is resized so that its long side is ``size`` (480) and run whole
(any aspect ratio; the model pads to a multiple of 32 internally). Larger working sizes are run as
overlapping ``crop_size`` windows (stride ``stride``) whose pixel embeddings are averaged, so memory
stays bounded whatever the image size. ``multiscale=True`` runs the reference evaluator instead
(scales 0.5-1.75 of base 520, 480 crops with stride 320, flip, logits summed: spec section 7).
"""

from __future__ import annotations

import functools
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lseg.allocator import tune_allocator  # noqa: F401  (its old home: lseg.inference.tune_allocator)
from lseg.errors import ConfigError
from lseg.io import DEFAULT_MAX_PIXELS, load_image
from lseg.labels import parse_labels, validate_templates
from lseg.models.lseg import LSeg

#: Reference multi-scale evaluation settings (ADE20K and the others; spec section 7).
ADE20K_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


@dataclass(frozen=True)
class MultiScaleConfig:
    """The reference's ``MultiEvalModule`` settings."""

    scales: tuple[float, ...] = ADE20K_SCALES
    base_size: int = 520
    crop_size: int = 480
    stride_rate: float = 2 / 3
    flip: bool = True


@dataclass
class ImageEmbedding:
    """Pixel embeddings of one image, reusable for any number of label sets.

    Attributes:
        pixels: (D, h', w') float32 L2-normalised pixel embeddings at half the working resolution
            (averaged, hence slightly shorter than unit length, where sliding windows overlap), on
            the model's device; float32 whatever the model's dtype or an active autocast.
        input_size: (h, w) working resolution the network saw (after resizing).
        image_size: (H, W) original image size.
    """

    pixels: torch.Tensor
    input_size: tuple[int, int]
    image_size: tuple[int, int]

    def __repr__(self) -> str:  # the shape, not the tensor's values
        p = self.pixels
        return (f"ImageEmbedding(pixels=<{tuple(p.shape)} {str(p.dtype).replace('torch.', '')} on {p.device}>, "
                f"input_size={self.input_size}, image_size={self.image_size})")


@dataclass
class PreparedImage:
    """An image decoded and resized to the working size, ready for the model.

    Attributes:
        pixels: (3, h, w) float32 RGB in [0, 1] (on the CPU when made by a loader worker).
        image_size: (H, W) of the original image.
    """

    pixels: torch.Tensor
    image_size: tuple[int, int]


@dataclass
class SegmentationResult:
    """Output of :meth:`LSegPredictor.segment`.

    Attributes:
        labels: the label strings, index ``i`` in ``label_map`` is ``labels[i]``.
        label_map: (H, W) int32 argmax label index at the original resolution.
        logits: (K, h, w) float32 numpy array of scaled cosine similarities at the working resolution.
            With more labels than the predictor's ``label_chunk_size`` they are not kept (the label
            map is a running argmax over label chunks on the model's device, so memory does not
            grow with K); they are computed on first access then (K*h*w*4 bytes; for that the result
            keeps a CPU copy of the image embedding and the text, never memory on the GPU).
        probs: (K, H, W) float32 numpy softmax over the labels at the original resolution.
        masks: ``{label: (H, W) bool mask}``; :meth:`mask` gives one.
        embeddings: (D, h', w') float32 pixel embeddings if requested, else ``None``.
        image: the input image as given (path, array, ...), for :meth:`overlay` and :meth:`save`;
            ``None`` when segmenting an :class:`ImageEmbedding`.

    Every array attribute is numpy; :meth:`overlay` and :meth:`save` write what ``lseg segment`` writes.
    """

    labels: list[str]
    label_map: np.ndarray
    image_size: tuple[int, int]
    embeddings: np.ndarray | None = field(default=None, repr=False)
    # The logits, or (many labels) a function that computes them on first access.
    _logits: torch.Tensor | Callable[[], torch.Tensor] | None = field(default=None, repr=False)
    image: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        h, w = self.image_size
        top = sorted(self.scores().items(), key=lambda kv: -kv[1])[:5]
        shares = ", ".join(f"{lb!r}: {v:.0%}" for lb, v in top)
        return f"SegmentationResult({len(self.labels)} labels, {w}x{h}, {{{shares}{', ...' if len(self.labels) > 5 else ''}}})"

    def _logits_tensor(self) -> torch.Tensor:
        if not isinstance(self._logits, torch.Tensor):
            assert self._logits is not None
            self._logits = self._logits()
        return self._logits

    @property
    def logits(self) -> np.ndarray:
        """(K, h, w) float32 logits at the working resolution (see the class docstring)."""
        return to_numpy(self._logits_tensor())

    @property
    def probs(self) -> np.ndarray:
        """(K, H, W) float32 softmax over the labels at the original resolution.

        Computed on access (K*H*W*4 bytes): use :meth:`probs_at` for another size.
        """
        return self.probs_at(self.image_size)

    def probs_at(self, size: tuple[int, int]) -> np.ndarray:
        """(K, size[0], size[1]) float32 per-label probabilities."""
        logits = _resize(self._logits_tensor()[None], size)[0]
        return to_numpy(torch.softmax(logits, dim=0))

    def scores(self) -> dict[str, float]:
        """Fraction of pixels assigned to each label."""
        counts = np.bincount(self.label_map.ravel(), minlength=len(self.labels))
        total = max(1, self.label_map.size)
        return {label: float(c) / total for label, c in zip(self.labels, counts)}

    def mask(self, label: str | int) -> np.ndarray:
        """(H, W) bool: the pixels assigned to ``label`` (its name, or its index)."""
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= label < len(self.labels):
                raise IndexError(f"label index {label} out of range for {len(self.labels)} labels")
            return self.label_map == label
        key = " ".join(str(label).split())
        matches = [i for i, lb in enumerate(self.labels) if lb == key] or \
            [i for i, lb in enumerate(self.labels) if lb.casefold() == key.casefold()]
        if not matches:
            raise KeyError(f"{label!r} is not one of the labels: {', '.join(map(repr, self.labels))}")
        return self.label_map == matches[0]

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """``{label: (H, W) bool mask}`` for every label, in label order."""
        return {lb: self.label_map == i for i, lb in enumerate(self.labels)}

    def _image(self, image: Any) -> Any:
        image = self.image if image is None else image
        if image is None:
            raise ValueError("this result was made from an ImageEmbedding: pass the image, e.g. result.overlay(image)")
        return image

    def overlay(self, image: Any = None, *, alpha: float = 0.5, legend: bool = True) -> Any:
        """The photo with each label's colour and a legend (:func:`lseg.viz.overlay`), as a PIL image."""
        from lseg.viz import overlay

        return overlay(self._image(image), self.label_map, self.labels, alpha=alpha, legend=legend)

    def save(self, folder: str | os.PathLike[str], stem: str | None = None, *, image: Any = None,
             alpha: float = 0.5, scores: bool = False) -> dict[str, Path]:
        """Write what ``lseg segment`` writes into ``folder``: ``<stem>_labels.png`` (label indices,
        names in its ``lseg:labels`` text chunk), ``<stem>_labels.json`` (labels, colours, shares),
        ``<stem>_overlay.png`` when the image is known, and with ``scores`` ``<stem>_scores.npz``.
        ``stem`` defaults to the image file's stem (else ``"image"``). Returns ``{kind: path}``."""
        import json

        from lseg.io import atomic_write
        from lseg.viz import hex_colors, save_label_map

        source = self.image if image is None else image
        if stem is None:
            stem = Path(source).stem if isinstance(source, (str, os.PathLike)) else "image"
        out = Path(folder)
        paths = {"labels": save_label_map(out / f"{stem}_labels.png", self.label_map, self.labels)}
        if source is not None:
            picture = self.overlay(source, alpha=alpha)
            paths["overlay"] = atomic_write(out / f"{stem}_overlay.png", lambda p: picture.save(p, format="PNG"))
        if scores:
            probs = self.probs.astype(np.float16)

            def write_npz(p: Path) -> None:
                with open(p, "wb") as f:
                    np.savez_compressed(f, probs=probs, labels=np.array(self.labels))

            paths["scores"] = atomic_write(out / f"{stem}_scores.npz", write_npz)
        info = {"labels": self.labels, "colors": hex_colors(len(self.labels)), "shares": self.scores()}
        text = json.dumps(info, indent=1, ensure_ascii=False) + "\n"
        paths["json"] = atomic_write(out / f"{stem}_labels.json", lambda p: p.write_text(text, encoding="utf-8"))
        return paths


class LSegPredictor:
    """Image -> pixel embeddings (cached per call) and labels -> text embeddings (LRU-cached).

    Args:
        model: an :class:`LSeg` network, put in eval mode. It may be cast to fp16/bf16
            (``model.half()``), and calls may run under ``torch.autocast``: outputs keep their
            documented dtypes (float32 embeddings and logits, int32 label maps).
        device: where to run; default: the model's device.
        size: long side of the working resolution (``None``: the image's own size).
        crop_size, stride: sliding-window geometry when the working size exceeds ``crop_size``.
        text_cache_size: how many label embeddings to keep.
        templates: optional prompt templates with ``{}`` (e.g. ``"a photo of a {}."``); the
            embeddings of all templates are averaged per label. ``None``: the raw label, as the
            reference (and the official checkpoints' training) did.
        label_chunk_size: labels scored at once (bounds memory for thousands of labels).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``: store and run the image path in that
            precision (:meth:`LSeg.set_precision`; ``auto`` picks by the device's capability: bf16 on
            CPUs with AMX/AVX512-BF16 and on recent GPUs, fp16 on older GPUs, else fp32). This
            casts the model in place. ``None`` (default) leaves the model as it is.
        fast: switch a model in ``plain`` numerics to ``fast`` (BatchNorm folded, channels-last
            decoder, merged head convs: :mod:`lseg.models.numerics`). This changes the model in
            place (``model.set_numerics("fast")``), for every user of it; a model in ``reference``
            numerics is left in it. ``False`` leaves the mode as it is.
        batch_size: images per forward in :meth:`embed_images` / :meth:`segment_batch`; halved
            (and kept halved) when a batch runs out of GPU memory.
        compile: ``torch.compile`` the image encoder and decoder (in place; pays off on GPUs).
    """

    def __init__(
        self,
        model: LSeg,
        device: str | torch.device | None = None,
        *,
        size: int | None = 480,
        crop_size: int = 480,
        stride: int = 320,
        text_cache_size: int = 4096,
        templates: Sequence[str] | None = None,
        label_chunk_size: int = 256,
        precision: str | None = None,
        batch_size: int = 8,
        compile: bool = False,
        fast: bool = True,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            hint = f"lseg.load_model({model!r})" if isinstance(model, (str, os.PathLike)) else "lseg.load_model(...)"
            raise TypeError(f"LSegPredictor takes a model, not a {type(model).__name__}: use "
                            f"LSegPredictor({hint})")
        if size is not None and size < 1:
            raise ConfigError(f"size must be a positive number of pixels or None (native), got {size}")
        if crop_size < 32 or not 1 <= stride <= crop_size:
            raise ConfigError(f"crop_size must be >= 32 and stride in [1, crop_size], got {crop_size} and {stride}")
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        if precision is not None:
            self.model.set_precision(precision)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        if compile:
            self.model.backbone.compile()
            self.model.decoder.compile()
        if fast and model.numerics == "plain":
            self.model.set_numerics("fast")
        self.size = size
        self.crop_size = crop_size
        self.stride = stride
        self.templates = validate_templates(templates) if templates else None
        self.label_chunk_size = label_chunk_size
        # Keyed by (device, dtype, numerics, label): moving or casting the model, or toggling
        # reference_numerics, must not return embeddings computed for another state.
        self._text_cache: OrderedDict[tuple[str, torch.dtype, bool, str], torch.Tensor] = OrderedDict()
        self._text_cache_size = text_cache_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def precision(self) -> str:
        """The precision the image path runs in (``fp32``, ``bf16``, ``fp16``)."""
        return self.model.precision

    # ------------------------------------------------------------------ text
    @torch.inference_mode()
    def embed_text(self, labels: str | Sequence[str]) -> torch.Tensor:
        """Labels (a comma-separated string or a list) -> (K, D) L2-normalised embeddings.

        Each label's embedding is cached (LRU, ``text_cache_size`` entries), so repeated label sets
        cost nothing. Label strings are validated with :func:`lseg.labels.parse_labels`.
        """
        labels = parse_labels(labels)
        state = (str(self.device), self.model.dtype, self.model.reference_numerics)
        missing = [lb for lb in dict.fromkeys(labels) if (*state, lb) not in self._text_cache]
        for i in range(0, len(missing), self.label_chunk_size):
            chunk = missing[i : i + self.label_chunk_size]
            for label, emb in zip(chunk, self._encode_labels(chunk)):
                self._text_cache[(*state, label)] = emb
        out = []
        for label in labels:
            self._text_cache.move_to_end((*state, label))
            out.append(self._text_cache[(*state, label)])
        while len(self._text_cache) > self._text_cache_size:
            self._text_cache.popitem(last=False)
        return torch.stack(out)

    def _encode_labels(self, labels: list[str]) -> torch.Tensor:
        if not self.templates:
            return self.model.encode_text(labels).float()
        per_template = torch.stack(
            [self.model.encode_text([t.format(lb) for lb in labels]).float() for t in self.templates]
        )
        return F.normalize(per_template.mean(0), dim=-1)

    # ------------------------------------------------------------------ image
    def _to_tensor(self, image: Any) -> torch.Tensor:
        """Any accepted image -> (1, 3, H, W) float in [0, 1] on the model's device."""
        return _as_tensor(_rgb_pixels(image, self.device)).to(self.device).permute(2, 0, 1)[None].float().div_(255.0)

    @torch.inference_mode()
    def embed_image(self, image: Any) -> ImageEmbedding:
        """Image (path, PIL, HxWx3 uint8 array, CHW tensor) -> :class:`ImageEmbedding`.

        The image is resized from its uint8 pixels in row strips, so a large photo costs its own
        3 bytes/pixel plus a few MB, not a float copy of it (12000x8000: 288 MB, not 1.15 GB). An
        RGB tensor already on the model's device is used there (no trip through the host).
        """
        prepared = prepare_image(image, self.size, self.device)
        image_size, x = prepared.image_size, self.model.normalize(prepared.pixels[None])
        del prepared  # the resized float copy: only its normalised version is needed from here
        return ImageEmbedding(self._embed_windows(x)[0].float(), (x.shape[-2], x.shape[-1]), image_size)

    def prepare(self, image: Any, device: torch.device | str = "cpu") -> PreparedImage:
        """Decode and resize one image to the working size, on ``device`` (by default the CPU work
        that a DataLoader worker can do ahead of the model: see :func:`prepare_image`)."""
        return prepare_image(image, self.size, device)

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Any]) -> list[ImageEmbedding]:
        """Several images -> one :class:`ImageEmbedding` each, ``batch_size`` images per forward.

        Images whose working sizes are equal share a forward (bucketing); images above
        ``crop_size`` run through sliding windows one at a time. Items may be anything
        :meth:`embed_image` takes, or :class:`PreparedImage` (already decoded and resized).
        """
        out: list[ImageEmbedding | None] = [None] * len(images)
        buckets: dict[tuple[int, int], list[tuple[int, PreparedImage]]] = {}

        def flush(key: tuple[int, int]) -> None:
            items = buckets.pop(key)
            start = 0
            while start < len(items):
                part = items[start : start + self.batch_size]
                x = torch.stack([p.pixels for _, p in part]).to(self.device, non_blocking=True)
                try:
                    pixels = self.model.encode_image(self.model.normalize(x)).float()
                except torch.OutOfMemoryError:
                    if len(part) == 1:
                        raise
                    del x
                    self.batch_size = (len(part) + 1) // 2  # back off, and stay there
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                for (i, p), e in zip(part, pixels):
                    out[i] = ImageEmbedding(e, key, p.image_size)
                start += len(part)

        for i, image in enumerate(images):
            prepared = image if isinstance(image, PreparedImage) else self.prepare(image, self.device)
            h, w = prepared.pixels.shape[-2:]
            if h > self.crop_size or w > self.crop_size:  # sliding windows: one image at a time
                x = self.model.normalize(prepared.pixels[None].to(self.device))
                out[i] = ImageEmbedding(self._embed_windows(x)[0].float(), (h, w), prepared.image_size)
                continue
            buckets.setdefault((h, w), []).append((i, prepared))
            if len(buckets[(h, w)]) >= self.batch_size:
                flush((h, w))
        for key in list(buckets):
            flush(key)
        return [e for e in out if e is not None]

    def _embed_windows(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) -> (1, D, ceil(h/2), ceil(w/2)); sliding windows above ``crop_size``."""
        h, w = x.shape[-2:]
        c = self.crop_size
        if h <= c and w <= c:
            return self.model.encode_image(x)
        canvas: torch.Tensor | None = None
        count = torch.zeros(1, 1, math.ceil(h / 2), math.ceil(w / 2), device=x.device)
        for y0, x0 in _windows(h, w, c, self.stride):
            e = self.model.encode_image(x[..., y0 : y0 + c, x0 : x0 + c])
            if canvas is None:
                canvas = torch.zeros(1, e.shape[1], *count.shape[-2:], device=x.device)
            ys, xs = y0 // 2, x0 // 2
            canvas[..., ys : ys + e.shape[-2], xs : xs + e.shape[-1]] += e
            count[..., ys : ys + e.shape[-2], xs : xs + e.shape[-1]] += 1
        assert canvas is not None
        return canvas.div_(count)

    # ------------------------------------------------------------------ scoring
    @torch.inference_mode()
    def segment(
        self,
        image: Any,
        labels: str | Sequence[str],
        *,
        multiscale: bool | MultiScaleConfig = False,
        return_embeddings: bool = False,
    ) -> SegmentationResult:
        """Segment one image (or a precomputed :class:`ImageEmbedding`) with a label set.

        Args:
            image: path, PIL image, HxWx3 uint8 RGB array, CHW tensor, or an ``ImageEmbedding``.
            labels: comma-separated string or list of label strings.
            multiscale: run the reference's multi-scale + flip + sliding-window evaluator
                (``True`` for the ADE20K settings, or a :class:`MultiScaleConfig`).
            return_embeddings: also return the (D, h', w') pixel embeddings.
        """
        label_list = parse_labels(labels)
        text = self.embed_text(label_list)
        if multiscale:
            if isinstance(image, ImageEmbedding):
                raise ValueError("multiscale needs the image itself, not an ImageEmbedding")
            cfg = multiscale if isinstance(multiscale, MultiScaleConfig) else MultiScaleConfig()
            x = self._to_tensor(image)
            logits = multiscale_logits(self.model, self.model.normalize(x), text, cfg)[0]
            emb = self.embed_image(image) if return_embeddings else None
            result = self._result(label_list, logits, (x.shape[-2], x.shape[-1]), emb)
            result.image = image
            return result
        emb = image if isinstance(image, ImageEmbedding) else self.embed_image(image)
        source = None if isinstance(image, ImageEmbedding) else image
        chunk = self._chunk_size()
        if text.shape[0] <= chunk:
            logits = self._score(emb, text)
            result = self._result(label_list, logits, emb.image_size, emb if return_embeddings else None)
            result.image = source
            return result
        # Many labels: a running argmax over label chunks; the K x h x w logits are never all held
        # (computed on demand if ``result.logits`` is read).
        argmax = _ResizedArgmax(emb.image_size, emb.pixels.device)
        for i in range(0, text.shape[0], chunk):
            part = self.model.score(emb.pixels[None], text[i : i + chunk], size=emb.input_size)[0]
            argmax.add(part.float(), more=i + chunk < text.shape[0])
            del part
        # The lazy logits keep host copies: a list of results must not pin GPU memory.
        pixels = emb.pixels.cpu()
        host_emb = ImageEmbedding(pixels, emb.input_size, emb.image_size)
        return SegmentationResult(
            labels=label_list,
            label_map=argmax.result(),
            image_size=emb.image_size,
            _logits=functools.partial(self._lazy_logits, host_emb, text.cpu()),
            embeddings=to_numpy(pixels) if return_embeddings else None,
            image=source,
        )

    @torch.inference_mode()
    def _lazy_logits(self, emb: ImageEmbedding, text: torch.Tensor) -> torch.Tensor:
        on_device = ImageEmbedding(emb.pixels.to(self.device), emb.input_size, emb.image_size)
        return self._score(on_device, text.to(self.device)).float().cpu()

    def _chunk_size(self) -> int:
        """Labels scored at once. The bottleneck spatial block (arch_option 1) mixes the labels (it
        adds their per-pixel maximum), so those models score all labels together."""
        block = self.model.spatial_block
        if block is not None and getattr(block, "bottleneck", False):
            return 1 << 62
        return max(1, int(self.label_chunk_size))

    def _score(self, emb: ImageEmbedding, text: torch.Tensor) -> torch.Tensor:
        chunk = self._chunk_size()
        chunks = [
            self.model.score(emb.pixels[None], text[i : i + chunk], size=emb.input_size)[0]
            for i in range(0, text.shape[0], chunk)
        ]
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0]

    def _result(
        self, labels: list[str], logits: torch.Tensor, image_size: tuple[int, int], emb: ImageEmbedding | None
    ) -> SegmentationResult:
        logits = logits.float()
        return SegmentationResult(
            labels=labels,
            label_map=_ResizedArgmax(image_size, logits.device).add(logits).result(),
            image_size=image_size,
            _logits=logits.cpu(),
            embeddings=to_numpy(emb.pixels) if emb is not None else None,
        )

    def segment_batch(
        self, images: Sequence[Any], labels: str | Sequence[str], *, multiscale: bool | MultiScaleConfig = False,
        return_embeddings: bool = False,
    ) -> list[SegmentationResult]:
        """:meth:`segment` for several images with the same labels: text encoded once, images
        ``batch_size`` per forward (see :meth:`embed_images`). ``multiscale`` runs one image at a time."""
        if multiscale:
            return [self.segment(img, labels, multiscale=multiscale, return_embeddings=return_embeddings)
                    for img in images]
        results = [self.segment(e, labels, return_embeddings=return_embeddings) for e in self.embed_images(images)]
        for result, image in zip(results, images):
            result.image = None if isinstance(image, PreparedImage) else image
        return results


# ---------------------------------------------------------------------- geometry helpers

def working_size(h: int, w: int, size: int | None) -> tuple[int, int]:
    """The working resolution of an (h, w) image: long side ``size``, aspect kept (``None``: as is)."""
    if size is None:
        return h, w
    s = size / max(h, w)
    return max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))


def prepare_image(image: Any, size: int | None, device: torch.device | str = "cpu") -> PreparedImage:
    """Any accepted image -> :class:`PreparedImage` at the working size for long side ``size``.

    Needs no model: DataLoader workers run it ahead of the forward (:mod:`lseg.loader`)."""
    device = torch.device(device)
    rgb = _rgb_pixels(image, device)
    image_size = (int(rgb.shape[0]), int(rgb.shape[1]))
    return PreparedImage(_resize_rgb(rgb, working_size(*image_size, size), device)[0], image_size)


def _windows(h: int, w: int, crop: int, stride: int) -> Iterator[tuple[int, int]]:
    """Top-left corners of ``crop`` windows covering (h, w), the last one flush with the edge."""
    ny = max(1, math.ceil((h - crop) / stride) + 1) if h > crop else 1
    nx = max(1, math.ceil((w - crop) / stride) + 1) if w > crop else 1
    for iy in range(ny):
        for ix in range(nx):
            y0 = max(0, min(iy * stride, h - crop))
            x0 = max(0, min(ix * stride, w - crop))
            yield y0, x0


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A result tensor as a numpy array: the one place results cross from the device to the host."""
    return t.cpu().numpy()


def _as_tensor(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(rgb) if isinstance(rgb, np.ndarray) else rgb


def _rgb_pixels(image: Any, device: torch.device) -> np.ndarray | torch.Tensor:
    """``HxWx3 uint8`` pixels of any accepted image: a numpy array, or a tensor view where the image
    is a ``3xHxW`` uint8 or [0, 1] float tensor already on ``device`` (not the CPU), so a GPU image
    is never copied to the host and back; other inputs go through :func:`lseg.io.load_image`."""
    if isinstance(image, torch.Tensor) and image.device.type != "cpu" and image.device == torch.device(device):
        t = image.detach()
        if t.ndim == 3 and t.shape[0] == 3 and 0 < t.shape[1] * t.shape[2] <= DEFAULT_MAX_PIXELS:
            if t.dtype == torch.uint8:
                return t.permute(1, 2, 0)
            # As load_image: [0, 1] floats, rounded to uint8 (one check, one sync; bad values go
            # to load_image for its error message).
            if t.is_floating_point() and not bool(((t < 0) | (t > 1) | t.isnan()).any()):
                return t.float().mul(255.0).round_().to(torch.uint8).permute(1, 2, 0)
    return _rgb_array(image)


def _rgb_array(image: Any) -> np.ndarray:
    """``HxWx3 uint8`` pixels of any accepted image; a plain C-contiguous writable RGB uint8 array
    within :data:`lseg.io.DEFAULT_MAX_PIXELS` is used as is (read only, not copied)."""
    if (
        isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        and image.flags.c_contiguous and image.flags.writeable
        and 0 < image.shape[0] * image.shape[1] <= DEFAULT_MAX_PIXELS
    ):
        return image
    return load_image(image)


def _resize_rgb(
    rgb: np.ndarray | torch.Tensor, size: tuple[int, int], device: torch.device, max_elems: int = 1 << 22
) -> torch.Tensor:
    """``HxWx3 uint8`` (array, or tensor on any device) -> (1, 3, h, w) float in [0, 1] on ``device``,
    resized bilinearly with antialiasing.

    Bit for bit ``F.interpolate(whole_float_image, size, antialias=True)`` (whose filter is separable,
    width first), but only ``max_elems`` floats of the input are converted at a time: the width pass
    runs on row strips, the height pass on the (3, H, w) result.
    """
    src = _as_tensor(rgb)
    H, W = src.shape[:2]
    h, w = size
    if (h, w) == (H, W):
        return src.to(device).permute(2, 0, 1)[None].float().div_(255.0)
    rows = max(1, max_elems // (3 * W))
    mid = torch.empty(1, 3, H, w, device=device)
    for r0 in range(0, H, rows):
        strip = src[r0 : r0 + rows].to(device).permute(2, 0, 1)[None].float().div_(255.0)
        if w != W:
            strip = F.interpolate(strip, size=(strip.shape[-2], w), mode="bilinear", align_corners=False,
                                  antialias=True)
        mid[..., r0 : r0 + strip.shape[-2], :] = strip
    if h == H:
        return mid
    return F.interpolate(mid, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


class _ResizedArgmax:
    """Label map = argmax over labels of (K, h, w) logits bilinearly resized (align_corners=True)
    to ``size``, computed in row strips of about ``max_elems`` floats and fed in label chunks (a
    running maximum), so memory is the (H, W) result (+ (H, W) float32 between chunks) plus
    one strip, whatever K and the image size. Ties go to the lowest label index, as ``argmax``.
    Runs on ``device`` (the logits' device): only the int32 label map goes to the host."""

    def __init__(self, size: tuple[int, int], device: torch.device | str = "cpu", max_elems: int = 1 << 23) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.device = torch.device(device)
        self.max_elems = max_elems
        self.index = torch.empty(self.size, dtype=torch.int32, device=self.device)  # every row is written by add()
        self.best: torch.Tensor | None = None
        self.offset = 0

    def add(self, logits: torch.Tensor, more: bool = False) -> _ResizedArgmax:
        """Feed the next ``k`` labels' logits (k, h, w) on ``device``; ``more``: other chunks follow."""
        first = self.offset == 0
        if more and self.best is None:
            self.best = torch.empty(self.size, dtype=logits.dtype, device=self.device)
        for r0, r1, band in _resized_row_strips(logits, self.size, self.max_elems):
            values, idx = band.max(0)
            idx = idx.to(torch.int32)
            if self.offset:
                idx += self.offset
            if first:
                self.index[r0:r1] = idx
                if self.best is not None:
                    self.best[r0:r1] = values
            else:
                assert self.best is not None
                better = values > self.best[r0:r1]
                self.index[r0:r1] = torch.where(better, idx, self.index[r0:r1])
                self.best[r0:r1] = torch.where(better, values, self.best[r0:r1])
        self.offset += logits.shape[0]
        if not more:
            self.best = None
        return self

    def result(self) -> np.ndarray:
        return to_numpy(self.index)


def _resized_row_strips(
    logits: torch.Tensor, size: tuple[int, int], max_elems: int
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(r0, r1, band)``: rows r0:r1 of ``logits`` (K, h, w) resized to ``size`` (bilinear,
    align_corners=True): rows blended at the input width, then a linear pass along the width."""
    k, h, w = logits.shape
    H, W = size
    # pixels per strip: the band holds k floats for each, the max() results 12 bytes.
    rows = max(1, max_elems // max(3, k) // max(1, W))
    if (h, w) == (H, W):
        for r0 in range(0, H, rows):
            yield r0, min(H, r0 + rows), logits[:, r0 : r0 + rows]
        return
    y = torch.linspace(0, h - 1, H, device=logits.device) if H > 1 else torch.zeros(1, device=logits.device)
    for r0 in range(0, H, rows):
        ys = y[r0 : r0 + rows]
        lo = ys.floor().long().clamp(max=h - 1)
        hi = (lo + 1).clamp(max=h - 1)
        t = (ys - lo.float()).view(1, -1, 1)
        band = torch.lerp(logits.index_select(1, lo), logits.index_select(1, hi), t)  # (K, rows, w)
        if w != W:
            n = band.shape[1]
            band = F.interpolate(band.reshape(1, k * n, w), size=W, mode="linear", align_corners=True).view(k, n, W)
        yield r0, r0 + band.shape[1], band


def multiscale_logits(
    model: LSeg, x: torch.Tensor, text: torch.Tensor, cfg: MultiScaleConfig = MultiScaleConfig()
) -> torch.Tensor:
    """The reference's ``MultiEvalModule``: (1, 3, H, W) normalised image -> (1, K, H, W) summed logits.

    For each scale: resize the long side to ``ceil(base_size * scale)`` (bilinear, align_corners=True);
    if it fits in ``crop_size`` pad to a square crop with the normalised black value and run once,
    else slide ``crop_size`` windows with stride ``int(crop_size * stride_rate)`` (edge windows padded),
    averaging overlaps;
    with ``flip`` add the flipped prediction; resize back and add to the running sum.
    """
    _, _, h, w = x.shape
    crop = cfg.crop_size
    stride = int(crop * cfg.stride_rate)
    pad_value = -1.0
    total = torch.zeros(1, text.shape[0], h, w, device=x.device)

    def infer(img: torch.Tensor) -> torch.Tensor:
        out = model(img, text)
        if cfg.flip:
            out = out + model(img.flip(-1), text).flip(-1)
        return out

    for scale in cfg.scales:
        long_size = math.ceil(cfg.base_size * scale)
        if h > w:
            height, width = long_size, int(1.0 * w * long_size / h + 0.5)
        else:
            width, height = long_size, int(1.0 * h * long_size / w + 0.5)
        cur = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=True)
        if long_size <= crop:
            pad = F.pad(cur, (0, crop - width, 0, crop - height), value=pad_value)
            out = infer(pad)[..., :height, :width]
        else:
            ph, pw = max(height, crop), max(width, crop)
            pad = F.pad(cur, (0, pw - width, 0, ph - height), value=pad_value)
            out = torch.zeros(1, text.shape[0], ph, pw, device=x.device)
            count = torch.zeros(1, 1, ph, pw, device=x.device)
            ny = math.ceil(1.0 * (ph - crop) / stride) + 1
            nx = math.ceil(1.0 * (pw - crop) / stride) + 1
            for iy in range(ny):
                for ix in range(nx):
                    y0, x0 = iy * stride, ix * stride
                    # As the reference: the last windows are partial and padded, not shifted back.
                    y1, x1 = min(y0 + crop, ph), min(x0 + crop, pw)
                    window = pad[..., y0:y1, x0:x1]
                    wp = F.pad(window, (0, crop - window.shape[-1], 0, crop - window.shape[-2]), value=pad_value)
                    o = infer(wp)
                    out[..., y0:y1, x0:x1] += o[..., : y1 - y0, : x1 - x0]
                    count[..., y0:y1, x0:x1] += 1
            out = (out / count)[..., :height, :width]
        total += F.interpolate(out, size=(h, w), mode="bilinear", align_corners=True)
    return total
