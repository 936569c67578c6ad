"""The predictor: encode an image once, score any label set against it (docs/python-api.md)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lseg.errors import ConfigError, LSegError
from lseg.geometry import ResizedArgmax, windows, working_size
from lseg.inference.allocator import tune_allocator  # also importable from here (benchmarks, tests)
from lseg.inference.images import _decoded_if_stream, as_list, images_per_forward, prepare_image, rgb_pixels
from lseg.inference.multiscale import ADE20K_SCALES, MultiScaleConfig, multiscale_logits
from lseg.inference.options import PredictorOptions
from lseg.inference.results import ImageEmbedding, PreparedImage, SegmentationResult, to_numpy
from lseg.labels import NO_TEMPLATE, LabelCache, apply_templates, parse_labels
from lseg.models.config import unwrapped
from lseg.models.devices import check_device
from lseg.models.lseg import LSeg
from lseg.models.precision import DTYPES, resolve_precision
from lseg.options import coerce_value

__all__ = [
    "ADE20K_SCALES", "ImageEmbedding", "LSegPredictor", "MultiScaleConfig", "PreparedImage", "SegmentationResult",
    "images_per_forward", "multiscale_logits", "prepare_image", "to_numpy", "tune_allocator", "working_size",
]

_DEFAULTS = PredictorOptions()


def _inference(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` without autograd (not inference mode: its tensors may feed a training step), with the model in
    eval mode for the call (a model the predictor shares, ``inplace`` or with nothing to change, may be back
    in training mode since: it is restored)."""
    @functools.wraps(method)
    def run(self: LSegPredictor, *args: Any, **kwargs: Any) -> Any:
        training = [m for m in self.model.modules() if m.training] if self._shared else []  # a walk: ~1 ms for ViT-L
        for m in training:
            m.training = False
        try:
            with torch.no_grad():
                return method(self, *args, **kwargs)
        finally:
            for m in training:
                m.training = True
    return run


class LSegPredictor:
    """Image -> pixel embeddings and labels -> text embeddings (LRU-cached), scored against each other;
    the arguments are in docs/python-api.md ("The predictor"), ``size`` to ``compile`` those of
    :class:`PredictorOptions` (``options=`` takes them as one object)."""

    def __init__(self, model: LSeg, device: str | torch.device | None = None, *,
                 size: int | None = _DEFAULTS.size, crop_size: int = _DEFAULTS.crop_size,
                 stride: int | None = _DEFAULTS.stride, templates: Sequence[str] | None = None,
                 precision: str | None = None, batch_size: int = _DEFAULTS.batch_size,
                 compile: bool = _DEFAULTS.compile, fast: bool = True, inplace: bool = False,
                 text_cache_size: int = 4096, label_chunk_size: int = 256,
                 options: PredictorOptions | None = None) -> None:
        model = unwrapped(model, "LSegPredictor")
        if options is not None and not isinstance(options, PredictorOptions):
            raise TypeError(f"options must be a lseg.PredictorOptions, not a {type(options).__name__}")
        if options is None:
            options = PredictorOptions(size=size, crop_size=crop_size, stride=stride,
                                       templates=() if templates is None else templates,
                                       precision=precision or "auto", batch_size=batch_size, compile=compile)
        else:
            beside = {"size": size, "crop_size": crop_size, "stride": stride, "batch_size": batch_size,
                      "compile": compile}
            clash = [k for k, v in beside.items() if v != getattr(_DEFAULTS, k)]
            clash += ["templates"] if templates is not None else []
            if clash:
                raise ConfigError(f"{', '.join(clash)} given beside options=: set them in the PredictorOptions")
            precision = precision or options.precision
        fast, inplace = coerce_value(fast, bool, "fast"), coerce_value(inplace, bool, "inplace")
        label_chunk_size = coerce_value(label_chunk_size, int, "label_chunk_size")
        text_cache_size = coerce_value(text_cache_size, int, "text_cache_size")
        if label_chunk_size < 1 or text_cache_size < 0:
            raise ConfigError(f"label_chunk_size must be >= 1 and text_cache_size >= 0, got {label_chunk_size} "
                              f"and {text_cache_size}")
        if device is not None:
            check_device(device)
        self.model = _prepared(model, device, precision, fast, options.compile, inplace)
        self._shared = self.model is model  # the caller's model: it may put it in training mode between calls
        self.options = dataclasses.replace(options, precision=self.model.precision)  # what runs, not "auto"
        self.batch_size, self.label_chunk_size = options.batch_size, label_chunk_size
        self.size, self.crop_size, self.stride = options.size, options.crop_size, options.window_stride
        self.templates = list(options.templates) or None
        # scoped by (device, dtype, numerics): a moved or cast model must not get another state's embeddings
        self._text_cache: LabelCache[torch.Tensor] = LabelCache(text_cache_size)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def precision(self) -> str:
        """The precision the image path runs in (``fp32``, ``bf16``, ``fp16``)."""
        return self.model.precision

    # ------------------------------------------------------------------ text
    @_inference
    def embed_text(self, labels: str | Sequence[str]) -> torch.Tensor:
        """Labels (a comma-separated string or a list; :func:`lseg.labels.parse_labels`) -> (K, D)
        L2-normalised embeddings, each label's cached."""
        labels = parse_labels(labels)
        # cached labels are not re-encoded, so the encoder's own check would miss a clash with them
        self.model.text_encoder.check_distinct(labels, self.templates or NO_TEMPLATE)
        state = (str(self.device), self.model.dtype, self.model.reference_numerics)
        return torch.stack(self._text_cache.get(labels, self._encode_labels, scope=state))

    def _encode_labels(self, labels: list[str]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for i in range(0, len(labels), self.label_chunk_size):
            chunk = labels[i : i + self.label_chunk_size]
            if not self.templates:
                out.extend(self.model.encode_text(chunk).float())
                continue
            prompts = apply_templates(chunk, self.templates)  # prompts[label][template]
            per_template = [self.model.encode_text([p[j] for p in prompts]).float() for j in range(len(self.templates))]
            out.extend(F.normalize(torch.stack(per_template).mean(0), dim=-1))
        return out

    # ------------------------------------------------------------------ image
    def embed_image(self, image: Any) -> ImageEmbedding:
        """Image (path, PIL, HxWx3 uint8 array, CHW tensor) -> :class:`ImageEmbedding`."""
        return self.embed_images([image])[0]

    def prepare(self, image: Any, device: torch.device | str = "cpu") -> PreparedImage:
        """Decode and resize one image to the working size on ``device`` (:func:`prepare_image`)."""
        return prepare_image(image, self.size, device)

    @_inference
    def embed_images(self, images: Sequence[Any]) -> list[ImageEmbedding]:
        """Images (or :class:`PreparedImage` s) -> an :class:`ImageEmbedding` each: images of equal
        working size share forwards of ``batch_size`` (halved for good on a GPU out of memory);
        those above ``crop_size`` run windows alone."""
        images = as_list(images, "embed_images")
        out: list[ImageEmbedding | None] = [None] * len(images)
        buckets: dict[tuple[int, int], list[tuple[int, PreparedImage]]] = {}

        def flush(key: tuple[int, int]) -> None:
            items = buckets.pop(key)
            start = 0
            while start < len(items):
                part = items[start : start + images_per_forward(self.device, self.batch_size)]
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
                x, image_size = self.model.normalize(prepared.pixels[None].to(self.device)), prepared.image_size
                del prepared  # the resized float copy: only its normalised version is needed from here
                out[i] = ImageEmbedding(self._embed_windows(x)[0].float(), (h, w), image_size)
                continue
            buckets.setdefault((h, w), []).append((i, prepared))
            if len(buckets[(h, w)]) >= self.batch_size:
                flush((h, w))
        for key in list(buckets):
            flush(key)
        return [e for e in out if e is not None]

    def _embed_windows(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) -> (1, D, ceil(h/2), ceil(w/2)) with sliding windows."""
        h, w = x.shape[-2:]
        c = self.crop_size
        canvas: torch.Tensor | None = None
        count = torch.zeros(1, 1, math.ceil(h / 2), math.ceil(w / 2), device=x.device)
        for y0, x0 in windows(h, w, c, self.stride):
            e = self.model.encode_image(x[..., y0 : y0 + c, x0 : x0 + c])
            if canvas is None:
                canvas = torch.zeros(1, e.shape[1], *count.shape[-2:], device=x.device)
            ys, xs = y0 // 2, x0 // 2
            canvas[..., ys : ys + e.shape[-2], xs : xs + e.shape[-1]] += e
            count[..., ys : ys + e.shape[-2], xs : xs + e.shape[-1]] += 1
        assert canvas is not None
        return canvas.div_(count)

    # ------------------------------------------------------------------ scoring
    @_inference
    def segment(self, image: Any, labels: str | Sequence[str], *, multiscale: bool | MultiScaleConfig = False,
                return_embeddings: bool = False) -> SegmentationResult:
        """Segment one image (anything :meth:`embed_image` takes, or an :class:`ImageEmbedding`) with
        ``labels``; ``multiscale``: the reference's evaluator (``True``: the ADE20K settings, or a
        :class:`MultiScaleConfig`), from the image only; ``return_embeddings``: keep the pixel embeddings."""
        label_list = parse_labels(labels)
        return self._segment(image, label_list, self.embed_text(label_list), multiscale, return_embeddings)

    @_inference
    def _segment(self, image: Any, label_list: list[str], text: torch.Tensor, multiscale: bool | MultiScaleConfig,
                 return_embeddings: bool) -> SegmentationResult:
        """:meth:`segment` with the labels parsed and encoded (``text``)."""
        image = _decoded_if_stream(image)
        if multiscale:
            if isinstance(image, ImageEmbedding):
                raise ConfigError("multiscale needs the image itself, not an ImageEmbedding")
            cfg = multiscale if isinstance(multiscale, MultiScaleConfig) else MultiScaleConfig()
            x = torch.as_tensor(rgb_pixels(image, self.device)).to(self.device).permute(2, 0, 1)[None].float().div_(255.0)
            # averaged, not the reference's sum (the same label map): probs and logits on one pass's scale
            passes = len(cfg.scales) * (2 if cfg.flip else 1)
            logits = multiscale_logits(self.model, self.model.normalize(x), text, cfg)[0].div_(passes)
            emb = self.embed_image(image) if return_embeddings else None
            return self._result(label_list, logits, (x.shape[-2], x.shape[-1]), emb, image)
        emb = image if isinstance(image, ImageEmbedding) else self.embed_image(image)
        source = None if isinstance(image, ImageEmbedding) else image
        chunk = self._chunk_size()
        if text.shape[0] <= chunk:
            logits = self._score(emb, text)
            return self._result(label_list, logits, emb.image_size, emb if return_embeddings else None, source)
        # Many labels: a running argmax over label chunks; the logits are computed only if read.
        argmax = ResizedArgmax(emb.image_size)
        for i in range(0, text.shape[0], chunk):
            part = self.model.score(emb.pixels[None], text[i : i + chunk], size=emb.input_size)[0]
            argmax.add(part.float(), more=i + chunk < text.shape[0])
            del part
        # The lazy logits keep host copies: a list of results must not pin GPU memory.
        pixels = emb.pixels.cpu()
        host_emb = ImageEmbedding(pixels, emb.input_size, emb.image_size)
        return SegmentationResult(label_list, to_numpy(argmax.result()), emb.image_size,
                                  embeddings=to_numpy(pixels) if return_embeddings else None,
                                  _logits=functools.partial(self._lazy_logits, host_emb, text.cpu()), image=source)

    @_inference
    def _lazy_logits(self, emb: ImageEmbedding, text: torch.Tensor) -> torch.Tensor:
        on_device = ImageEmbedding(emb.pixels.to(self.device), emb.input_size, emb.image_size)
        return self._score(on_device, text.to(self.device)).float().cpu()

    def _chunk_size(self) -> int:
        """Labels scored at once: all of them for the bottleneck spatial block (arch_option 1), which
        mixes the labels."""
        mixes = getattr(self.model.spatial_block, "bottleneck", False)  # no block: None, no bottleneck
        return 1 << 62 if mixes else max(1, int(self.label_chunk_size))

    def _score(self, emb: ImageEmbedding, text: torch.Tensor) -> torch.Tensor:
        chunk = self._chunk_size()
        chunks = [self.model.score(emb.pixels[None], text[i : i + chunk], size=emb.input_size)[0]
                  for i in range(0, text.shape[0], chunk)]
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0]

    def _result(self, labels: list[str], logits: torch.Tensor, image_size: tuple[int, int],
                emb: ImageEmbedding | None, image: Any) -> SegmentationResult:
        logits = logits.float()
        return SegmentationResult(labels, to_numpy(ResizedArgmax(image_size).add(logits).result()), image_size,
                                  embeddings=to_numpy(emb.pixels) if emb is not None else None, _logits=logits.cpu(),
                                  image=image)

    def segment_batch(
        self, images: Sequence[Any], labels: str | Sequence[str], *, multiscale: bool | MultiScaleConfig = False,
        return_embeddings: bool = False, errors: Literal["raise", "return"] = "raise",
    ) -> list[SegmentationResult]:
        """:meth:`segment` for several images (or embeddings) with one label set, batched as
        :meth:`embed_images` does; ``errors="return"``: an image's :class:`LSegError` takes its place
        in the list (``"raise"``: the first is raised)."""
        images = as_list(images, "segment_batch")
        if errors not in ("raise", "return"):
            raise ConfigError(f"errors must be 'raise' or 'return', got {errors!r}")
        # parsed and encoded once: a bad label set is the caller's error, never one per image
        label_list = parse_labels(labels)
        text = self.embed_text(label_list)
        out: list[Any] = [None] * len(images)
        todo: list[tuple[int, Any, ImageEmbedding | PreparedImage]] = []  # (index, source, prepared)
        for i, image in enumerate(images):
            try:
                image = _decoded_if_stream(image)
                if multiscale:
                    out[i] = self._segment(image, label_list, text, multiscale, return_embeddings)
                elif isinstance(image, (ImageEmbedding, PreparedImage)):
                    todo.append((i, None, image))
                else:  # decoded here: a bad file fails alone
                    todo.append((i, image, self.prepare(image, self.device)))
            except LSegError as e:
                if errors == "raise":
                    raise
                out[i] = e
        # prepared images through the batched forward; embeddings straight to scoring
        pending = [(i, item) for i, _, item in todo if isinstance(item, PreparedImage)]
        embeddings = dict(zip((i for i, _ in pending), self.embed_images([item for _, item in pending])))
        for i, source, item in todo:
            out[i] = self._segment(embeddings.get(i, item), label_list, text, False, return_embeddings)
            out[i].image = source
        return out


def _prepared(model: LSeg, device: str | torch.device | None, precision: str | None, fast: bool, compile: bool,
              inplace: bool) -> LSeg:
    """``model`` (unless ``inplace``, a copy where something must change) on ``device``, in eval mode,
    ``precision`` and numerics, compiled where asked."""
    target = torch.device(device) if device is not None else model.device
    if precision is None and model.precision not in (*DTYPES, "int8"):
        raise ConfigError(f"the model computes in {model.dtype}, which the predictor does not run: give a precision "
                          "(fp32, bf16, fp16) or cast the model (model.float())")
    wanted = resolve_precision(precision, target) if precision is not None else model.precision
    to_fast = fast and model.numerics == "plain"
    if not inplace and (model.training or target != model.device or wanted != model.precision or to_fast or compile):
        model = copy.deepcopy(model)
    if target != model.device:
        model = model.to(target)
    model.eval()
    if wanted != model.precision:
        model.set_precision(wanted)
    if to_fast:
        model.set_numerics("fast")
    if compile:
        model.compile_image_path()
    return model
