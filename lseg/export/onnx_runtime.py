"""Run an :func:`lseg.export.onnx.export_onnx` folder: onnxruntime for the two graphs, numpy for the rest
(nothing on this module's import path imports torch)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lseg import geometry
from lseg.errors import CheckpointError, ConfigError, LabelError, LSegError, one_line
from lseg.io import load_image
from lseg.labels import LabelCache, first_clash, label_index, parse_labels

__all__ = ["OnnxImageEmbedding", "OnnxPredictor", "OnnxSegmentation", "session"]

IMAGE_ENCODER = "image_encoder.onnx"
TEXT_ENCODER = "text_encoder.onnx"
METADATA = "lseg_onnx.json"
FORMAT_VERSION = 1
#: What OnnxPredictor reads from METADATA.
_META_KEYS = ("image_encoder", "text_encoder", "dynamic_size", "input_size", "mean", "std", "size_multiple",
              "pad_value", "logit_scale", "context_length")


def session(path: Path, providers: Sequence[str] | None = None, threads: int | None = None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise LSegError("onnxruntime is not installed: pip install 'lseg[export]'") from None
    if not path.is_file():
        raise CheckpointError(f"ONNX graph not found: {path}")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as e:  # noqa: BLE001 - onnxruntime's own types (InvalidProtobuf, InvalidGraph, ...)
        raise CheckpointError(f"cannot load ONNX graph {path} (truncated or corrupt? export it again): "
                              f"{one_line(e)}") from None


@dataclass
class OnnxImageEmbedding:
    """Pixel embeddings (D, ceil(h/2), ceil(w/2)) of one image at working size ``input_size`` (h, w)
    (before letterbox padding); ``image_size`` is the original (H, W)."""

    pixels: np.ndarray
    input_size: tuple[int, int]
    image_size: tuple[int, int]


@dataclass
class OnnxSegmentation:
    """Output of :meth:`OnnxPredictor.segment` (numpy twin of :class:`lseg.SegmentationResult`).

    Attributes:
        labels: label strings; value ``i`` in ``label_map`` is ``labels[i]``.
        label_map: (H, W) int32 argmax at the original resolution.
        logits: (K, h, w) float32 logits at the working resolution.
        image_size: (H, W) original image size.
    """

    labels: list[str]
    label_map: np.ndarray
    logits: np.ndarray = field(repr=False)
    image_size: tuple[int, int] = (0, 0)

    @property
    def probs(self) -> np.ndarray:
        """(K, H, W) float32 softmax over labels at the original resolution."""
        logits = geometry.resize_bilinear(self.logits, self.image_size)
        e = np.exp(logits - logits.max(axis=0, keepdims=True))
        return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)

    def scores(self) -> dict[str, float]:
        """Fraction of pixels assigned to each label (as :meth:`lseg.SegmentationResult.scores`)."""
        counts = np.bincount(self.label_map.ravel(), minlength=len(self.labels))
        total = max(1, self.label_map.size)
        return {label: float(c) / total for label, c in zip(self.labels, counts)}

    def mask(self, label: str | int) -> np.ndarray:
        """(H, W) bool: the pixels assigned to ``label`` (its name, or its index), as
        :meth:`lseg.SegmentationResult.mask`."""
        return self.label_map == label_index(self.labels, label)


class OnnxPredictor:
    """Run an :func:`export_onnx` folder with onnxruntime, as :class:`lseg.LSegPredictor` without sliding
    windows: the image is resized to long side ``size`` (``None``: as it is; a fixed-size export gets
    it letterboxed into its size), encoded once, and any label set scored against it in numpy.
    ``tokenizer``: ``labels -> (K, context_length)`` token ids (default: open_clip's CLIP BPE, which
    imports torch); ``providers``: onnxruntime's (default CPU)."""

    def __init__(self, directory: str | os.PathLike[str], *, size: int | None = 480,
                 providers: Sequence[str] | None = None, threads: int | None = None,
                 tokenizer: Callable[[list[str]], Any] | None = None, text_cache_size: int = 4096) -> None:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(f"size must be an int of at least 1, or None (the image as it is), "
                              f"got {size!r}")
        d = Path(directory).expanduser()
        if d.exists() and not d.is_dir():
            raise CheckpointError(f"{d} is a file, not an lseg ONNX export folder (lseg export onnx)")
        try:
            self.meta: dict[str, Any] = json.loads((d / METADATA).read_text())
        except FileNotFoundError:
            raise CheckpointError(
                f"{d} has no {METADATA}: not an lseg ONNX export (lseg export onnx)") from None
        except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
            raise CheckpointError(f"cannot read {d / METADATA} (truncated or corrupt?): {one_line(e)}") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != "lseg-onnx" \
                or self.meta.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{d / METADATA}: not an lseg ONNX export of version {FORMAT_VERSION}")
        if missing := [k for k in _META_KEYS if k not in self.meta]:
            raise CheckpointError(f"{d / METADATA}: missing {', '.join(missing)} (edited? export it again)")
        self.image_session = session(d / self.meta["image_encoder"], providers, threads)
        self.text_session = session(d / self.meta["text_encoder"], providers, threads)
        self.size = size
        self.mean = np.asarray(self.meta["mean"], np.float32).reshape(3, 1, 1)
        self.std = np.asarray(self.meta["std"], np.float32).reshape(3, 1, 1)
        self.logit_scale = np.float32(self.meta["logit_scale"])
        self._tokenizer = tokenizer
        self.pad_value = np.asarray(self.meta["pad_value"], np.float32)
        self._text_cache: LabelCache[np.ndarray] = LabelCache(text_cache_size)

    def tokenize(self, labels: list[str]) -> np.ndarray:
        """Labels -> (K, T) int64 token ids, cut after the longest label's end token."""
        if self._tokenizer is None:
            from open_clip.tokenizer import SimpleTokenizer

            self._tokenizer = SimpleTokenizer(context_length=int(self.meta["context_length"]))
        return _cut(np.asarray(self._tokenizer(labels), dtype=np.int64))

    def embed_text(self, labels: str | Sequence[str]) -> np.ndarray:
        """Labels (comma-separated string or list) -> (K, D) float32 L2-normalised embeddings (cached);
        labels with the same tokens (one text to CLIP) are a :class:`LabelError`, as in LSegPredictor."""
        label_list = parse_labels(labels)
        tokens = self.tokenize(label_list)  # all of them: a clash with a cached label counts too
        if clash := first_clash(row.tobytes() for row in tokens):
            j, i = clash
            raise LabelError(f"labels {label_list[j]!r} (position {j + 1}) and {label_list[i]!r} (position {i + 1}) "
                             "are the same tokens to CLIP's tokenizer (it repairs mojibake, unescapes HTML, "
                             "lower-cases and reads 75 tokens) and would get one embedding; remove one")
        rows = dict(zip(label_list, tokens))
        return np.stack(self._text_cache.get(label_list, lambda new: self._encode([rows[lb] for lb in new])))

    def _encode(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        return list(self.text_session.run(None, {"tokens": _cut(np.stack(rows))})[0].astype(np.float32))

    def working_size(self, h: int, w: int) -> tuple[int, int]:
        """(h, w) the image graph sees for an (h, w) image."""
        if not self.meta["dynamic_size"]:
            return geometry.fit_size(h, w, tuple(self.meta["input_size"]))
        return geometry.working_size(h, w, self.size)

    def embed_image(self, image: Any) -> OnnxImageEmbedding:
        """Image (anything :func:`lseg.io.load_image` takes) -> embedding."""
        from PIL import Image

        rgb = load_image(image)
        image_size = (rgb.shape[0], rgb.shape[1])
        h, w = self.working_size(*image_size)
        if (h, w) != image_size:
            rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
        x = (rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0) - self.mean) / self.std
        if self.meta["dynamic_size"]:
            x = geometry.pad_to_multiple(x, self.pad_value, self.meta["size_multiple"])
        else:  # letterbox into the export size
            x = geometry.pad_to(x, tuple(self.meta["input_size"]), self.pad_value)
        hh, ww = geometry.half_size(h, w)
        pixels = self.image_session.run(None, {"image": np.ascontiguousarray(x[None])})[0][0, :, :hh, :ww]
        return OnnxImageEmbedding(np.ascontiguousarray(pixels, dtype=np.float32), (h, w), image_size)

    def score(self, pixels: np.ndarray, text: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(D, h', w') pixels x (K, D) text -> (K, *size) logits: :meth:`lseg.LSeg.score` in numpy."""
        d, hh, ww = pixels.shape
        logits = (text.astype(np.float32) @ pixels.reshape(d, hh * ww)).reshape(-1, hh, ww) * self.logit_scale
        block = self.meta.get("spatial_block")
        if block:  # as LSeg._head: depth - 1 activated passes, then one without (depth 0: that one)
            passes = max(1, block["depth"])
            for i in range(passes):
                logits = _spatial_block(logits, block, activate=i < passes - 1)
        logits = geometry.resize_bilinear(logits, (2 * hh, 2 * ww))
        return np.ascontiguousarray(logits[:, : size[0], : size[1]])

    def segment(self, image: Any, labels: str | Sequence[str]) -> OnnxSegmentation:
        """Segment an image (or an :class:`OnnxImageEmbedding`) with a label set."""
        label_list = parse_labels(labels)
        emb = image if isinstance(image, OnnxImageEmbedding) else self.embed_image(image)
        logits = self.score(emb.pixels, self.embed_text(label_list), emb.input_size)
        label_map = geometry.argmax_resized(logits, emb.image_size)
        return OnnxSegmentation(label_list, label_map, logits, emb.image_size)


def _cut(tokens: np.ndarray) -> np.ndarray:
    """(K, T) token ids cut after the longest row's end token (the largest id in CLIP's vocabulary)."""
    return tokens[:, : int(tokens.argmax(axis=1).max()) + 1]


def _spatial_block(x: np.ndarray, block: dict[str, Any], activate: bool) -> np.ndarray:
    """:class:`lseg.models.lseg.SpatialBlock` in numpy."""
    weight = np.asarray(block["weight"], np.float32)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    h, w = x.shape[1:]
    out = np.full_like(x, np.float32(block["bias"]))
    for dy in range(3):
        for dx in range(3):
            out += weight[dy, dx] * padded[:, dy : dy + h, dx : dx + w]
    if block["bottleneck"]:
        out += x.max(axis=0, keepdims=True)
    if not activate:
        return out
    act = block["activation"]
    if act == "relu":
        return np.maximum(out, 0)
    if act == "tanh":
        return np.tanh(out)
    return np.where(out >= 0, out, np.float32(0.01) * out)  # LeakyReLU's default slope
