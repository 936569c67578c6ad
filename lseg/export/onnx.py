"""ONNX export of LSeg as two graphs (the segment-anything split) and a numpy/onnxruntime predictor.

LSeg factors into an expensive image half and a cheap text half, so it is exported as two graphs::

    image_encoder.onnx   image  (1, 3, H, W) float32, normalised  -> pixels     (1, D, H/2, W/2)
    text_encoder.onnx    tokens (K, T) int64 CLIP token ids       -> embeddings (K, D)
    lseg_onnx.json       metadata: normalisation, padding, logit scale, spatial block, verification

Both outputs are L2-normalised. ``H, W`` are dynamic **multiples of 32**: pad an image of any size
at the bottom/right with ``pad_value`` (the normalised value of black) and crop the output to
``ceil(h/2), ceil(w/2)`` (:func:`pad_to_multiple`; exactly what :meth:`lseg.LSeg.encode_image` does
inside, so the results are the same). ``K`` and ``T`` are dynamic; the batch is 1 (a dynamic batch
does not survive ``torch.export``'s size-1 specialisation). With ``dynamic=False`` the image graph
takes exactly the export size instead. The scoring ``logits = scale * E_pix . E_txt`` (+ the
optional spatial regularisation block), the x2 bilinear upsampling and the argmax run in numpy
(:class:`OnnxPredictor`), so label sets change without re-exporting and without running the text
graph more than once per label.

``T`` may be the full 77-token context or the token matrix cut after the longest label's end token
(faster; CLIP's causal mask makes the result identical). The graph pools at the end-of-text token,
found as the argmax of the ids (it has the largest id in CLIP's vocabulary), as CLIP does.

Exported with ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export`` based exporter, opset 18,
needs ``onnxscript``). The legacy TorchScript exporter (``dynamo=False``) is not used: it cannot trace
the position-embedding resize (``round()`` of a traced shape), even at a fixed size.

>>> from lseg.export.onnx import export_onnx, OnnxPredictor          # doctest: +SKIP
>>> export_onnx(lseg.load_model("lseg-demo/"), "lseg-onnx/")         # doctest: +SKIP
>>> OnnxPredictor("lseg-onnx/").segment("dog.jpg", "dog, grass, other").label_map   # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lseg.errors import CheckpointError, LSegError
from lseg.io import atomic_files, atomic_write, load_image
from lseg.labels import parse_labels

if TYPE_CHECKING:  # torch is needed to export, not to run the exported graphs
    import torch

    from lseg.models.lseg import LSeg

_logger = logging.getLogger(__name__)

IMAGE_ENCODER = "image_encoder.onnx"
TEXT_ENCODER = "text_encoder.onnx"
METADATA = "lseg_onnx.json"
FORMAT_VERSION = 1
DEFAULT_OPSET = 18
#: The image graph pads its input to a multiple of this (the decoder's coarsest stride).
SIZE_MULTIPLE = 32


# ============================================================================ export (needs torch)

def _graph_modules() -> tuple[type, type]:
    """The two export wrappers, defined on first use so importing this module does not import torch."""
    import torch
    from torch import nn

    from lseg.models.text_encoder import CLIPTextEncoder

    class ImageEncoderGraph(nn.Module):
        """Normalised image (1, 3, H, W) -> L2-normalised pixel embeddings (1, D, H/2, W/2).

        Exactly :meth:`LSeg.encode_image` (whatever its inference optimisations). In a dynamic
        export ``H, W`` are symbolic multiples of 32, so the model's own padding branch is known to
        be a no-op when tracing; callers pad with :data:`pad_value` and crop (see
        :meth:`OnnxPredictor.embed_image`), which is what ``encode_image`` does internally.
        """

        def __init__(self, model: LSeg) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.model.encode_image(image)

    class TextEncoderGraph(nn.Module):
        """CLIP token ids (K, T) -> L2-normalised text embeddings (K, D), fp32 numerics.

        :meth:`CLIPTextEncoder.encode_tokens` cuts the sequence at the longest label (a
        data-dependent length that cannot be traced); here the caller's ``T`` is used as is.
        """

        def __init__(self, encoder: CLIPTextEncoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            # one group of the given (dynamic) length: no data-dependent grouping in the graph
            return self.encoder.encode_groups(tokens, [(None, tokens.shape[1])], torch.float32)

    return ImageEncoderGraph, TextEncoderGraph


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        directory: the output folder.
        image_encoder, text_encoder, metadata: paths of the two graphs and of ``lseg_onnx.json``.
        exporter: ``"dynamo"`` (``torch.onnx.export(dynamo=True)``, the only one used).
        dynamic_size: whether the image graph takes any ``H, W`` (else only ``input_size``).
        input_size: (H, W) of the example input (the only accepted size if not ``dynamic_size``).
        max_abs_diff: onnxruntime vs eager PyTorch per check (``image HxW``, ``text KxT``);
            empty if not verified.
    """

    directory: Path
    image_encoder: Path
    text_encoder: Path
    metadata: Path
    exporter: str
    dynamic_size: bool
    input_size: tuple[int, int]
    max_abs_diff: dict[str, float] = field(default_factory=dict)


def export_onnx(
    model: LSeg,
    out_dir: str | os.PathLike[str],
    *,
    size: int | tuple[int, int] = 480,
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    atol: float = 1e-4,
) -> OnnxExport:
    """Export ``model`` as ``image_encoder.onnx`` + ``text_encoder.onnx`` + ``lseg_onnx.json``.

    Args:
        model: the network (exported on CPU in eval mode; its mode and device are restored).
        out_dir: output folder (created).
        size: example input size, ``S`` (``S x S``) or ``(H, W)`` (rounded up to multiples of 32 for
            tracing); with ``dynamic=False`` the only size the image graph accepts
            (:class:`OnnxPredictor` then letterboxes images into it).
        dynamic: ``H, W`` of the image graph are any multiples of 32. ``K, T`` of the text graph are
            always dynamic.
        opset: ONNX opset.
        verify: run both graphs with onnxruntime on random inputs (two more image sizes when
            dynamic, one odd and not a multiple of 32) and compare with eager
            :meth:`LSeg.encode_image` / ``encode_tokens``; :class:`LSegError` if the difference
            exceeds ``atol``.
        atol: tolerance of ``verify``.

    Returns:
        :class:`OnnxExport` (paths, exporter used, measured differences).
    """
    import torch

    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(hw) < 1:
        raise LSegError(f"export size must be positive, got {hw}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_graph_cls, text_graph_cls = _graph_modules()
    was_training, device = model.training, model.device
    model.eval().cpu()
    try:
        image_graph = image_graph_cls(model).eval()
        text_graph = text_graph_cls(model.text_encoder).eval()
        graph_hw = _padded(hw) if dynamic else hw
        example_image = torch.randn(1, 3, *graph_hw, generator=torch.Generator().manual_seed(0))
        tokens = model.text_encoder.tokenize(["dog", "grass", "a photo of the sky"])
        example_tokens = tokens[:, : int(tokens.argmax(-1).max()) + 1]
        exporter = "dynamo"
        Dim = torch.export.Dim
        # Image sides are symbolic multiples of 32; labels and tokens are free.
        image_dims = {2: SIZE_MULTIPLE * Dim("height_32", min=1), 3: SIZE_MULTIPLE * Dim("width_32", min=1)}
        text_dims = {0: Dim("labels", min=1), 1: Dim("tokens", min=2)}
        with torch.no_grad():
            _export_graph(image_graph, example_image, out / IMAGE_ENCODER, "image", "pixels",
                          image_dims if dynamic else None, opset)
            _export_graph(text_graph, example_tokens, out / TEXT_ENCODER, "tokens", "embeddings", text_dims, opset)
        diffs: dict[str, float] = {}
        if verify:
            diffs = _verify(model, out, hw, dynamic, example_tokens)
            bad = {k: v for k, v in diffs.items() if not v <= atol}
            if bad:
                raise LSegError(f"exported graphs differ from PyTorch by more than {atol}: {bad}")
        meta = _metadata(model, exporter, opset, dynamic, hw, diffs)
        atomic_write(out / METADATA, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    finally:
        model.to(device).train(was_training)
    return OnnxExport(
        directory=out, image_encoder=out / IMAGE_ENCODER, text_encoder=out / TEXT_ENCODER,
        metadata=out / METADATA, exporter=exporter, dynamic_size=dynamic, input_size=hw, max_abs_diff=diffs,
    )


def _export_graph(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_name: str,
    dynamic_shapes: dict[int, Any] | None,
    opset: int,
) -> None:
    """Export one graph to ``path`` (plus ``path.data`` if the weights are stored outside it).

    Written into a temporary folder next to ``path`` (:func:`lseg.io.atomic_files`: the graph names
    its external data file, so both are written under their final names) and moved into place when
    complete, so an interrupted export never leaves a half-written graph under the final name.
    """
    import torch

    with atomic_files(path) as tmp:
        tmp_path = tmp / path.name
        try:
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset, verbose=False,
                input_names=[input_name], output_names=[output_name],
                dynamic_shapes=(dynamic_shapes,) if dynamic_shapes else None,
            )
        except Exception as e:  # torch.export and onnxscript raise many types
            raise LSegError(f"ONNX export of {path.name} failed: {str(e).splitlines()[0]}") from e
        assert program is not None
        # Weights are inlined unless the graph is over protobuf's 2 GB limit (ViT-L is 1.2 GB).
        program.save(str(tmp_path), external_data=_too_big(module))
        path.with_name(path.name + ".data").unlink(missing_ok=True)  # a stale one from a larger export


def _too_big(module: torch.nn.Module) -> bool:
    return sum(p.numel() * p.element_size() for p in module.parameters()) > 1_800_000_000


def _verify(
    model: LSeg, out: Path, hw: tuple[int, int], dynamic: bool, tokens: torch.Tensor
) -> dict[str, float]:
    """Max abs difference between onnxruntime and eager PyTorch for the exported graphs."""
    import torch

    image_session = _session(out / IMAGE_ENCODER)
    text_session = _session(out / TEXT_ENCODER)
    sizes = [hw]
    if dynamic:  # other sizes: odd, not a multiple of 32, another aspect ratio; and multiples of 32
        sizes.append((max(2, hw[0] // 2 + 17), max(2, hw[1] * 3 // 4 + 5)))
        sizes.append((SIZE_MULTIPLE * max(1, round(hw[0] / 64)), SIZE_MULTIPLE * max(1, round(hw[1] / 48))))
    diffs: dict[str, float] = {}
    gen = torch.Generator().manual_seed(1)
    pad_value = _pad_value(model)
    for h, w in sizes:
        x = torch.randn(1, 3, h, w, generator=gen)
        with torch.no_grad():
            ref = model.encode_image(x).numpy()
        feed = pad_to_multiple(x.numpy(), pad_value) if dynamic else x.numpy()
        got = image_session.run(None, {"image": feed})[0][..., : (h + 1) // 2, : (w + 1) // 2]
        diffs[f"image {h}x{w}"] = _maxdiff(got, ref)
    with torch.no_grad():
        ref_text = model.text_encoder.encode_tokens(tokens).numpy()
    full = model.text_encoder.tokenize(["dog", "grass", "a photo of the sky"])
    for t in (tokens, full):
        got = text_session.run(None, {"tokens": t.numpy()})[0]
        diffs[f"text {t.shape[0]}x{t.shape[1]}"] = _maxdiff(got, ref_text)
    return diffs


def _pad_value(model: LSeg) -> float:
    """The normalised value of black (what :meth:`LSeg.encode_image` pads with)."""
    cfg = model.config
    return -1.0 if cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5) else 0.0


def _padded(hw: tuple[int, int]) -> tuple[int, int]:
    return (-(-hw[0] // SIZE_MULTIPLE) * SIZE_MULTIPLE, -(-hw[1] // SIZE_MULTIPLE) * SIZE_MULTIPLE)


def pad_to_multiple(x: np.ndarray, pad_value: float, multiple: int = SIZE_MULTIPLE) -> np.ndarray:
    """Pad (..., H, W) at the bottom/right to multiples of ``multiple`` with ``pad_value`` (the
    dynamic image graph's input contract; crop its output to ``ceil(H/2), ceil(W/2)``)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return np.ascontiguousarray(x)
    widths = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, widths, constant_values=np.float32(pad_value))


def _maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _metadata(
    model: LSeg, exporter: str, opset: int, dynamic: bool, hw: tuple[int, int], diffs: dict[str, float]
) -> dict[str, Any]:
    cfg = model.config
    block = None
    if model.spatial_block is not None:
        conv = model.spatial_block.conv
        block = {
            "weight": conv.weight.detach().float().reshape(3, 3).tolist(),
            "bias": float(conv.bias.detach().float().item()),
            "bottleneck": bool(model.spatial_block.bottleneck),
            "activation": cfg.activation,
            "depth": cfg.block_depth,
        }
    return {
        "format": "lseg-onnx",
        "version": FORMAT_VERSION,
        "image_encoder": IMAGE_ENCODER,
        "text_encoder": TEXT_ENCODER,
        "exporter": exporter,
        "opset": opset,
        "dynamic_size": dynamic,
        "input_size": list(hw),
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "size_multiple": SIZE_MULTIPLE if dynamic else None,
        "pad_value": _pad_value(model),
        "logit_scale": float(model.logit_scale),
        "embed_dim": cfg.embed_dim,
        "context_length": cfg.text.context_length,
        "spatial_block": block,
        "max_abs_diff": diffs,
        "model": cfg.to_dict(),
    }


# ============================================================================ runtime (numpy + onnxruntime)

def _session(path: Path, providers: Sequence[str] | None = None, threads: int | None = None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise LSegError("onnxruntime is not installed: pip install 'lseg[export]'") from None
    if not path.is_file():
        raise CheckpointError(f"ONNX graph not found: {path}")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))


@dataclass
class OnnxImageEmbedding:
    """Pixel embeddings of one image from the ONNX image graph.

    Attributes:
        pixels: (D, h', w') float32 L2-normalised embeddings, ``h' = ceil(h/2), w' = ceil(w/2)``.
        input_size: (h, w) working resolution the graph saw (before letterbox padding).
        image_size: (H, W) original image size.
    """

    pixels: np.ndarray
    input_size: tuple[int, int]
    image_size: tuple[int, int]


@dataclass
class OnnxSegmentation:
    """Output of :meth:`OnnxPredictor.segment` (numpy twin of :class:`lseg.SegmentationResult`).

    Attributes:
        labels: label strings; value ``i`` in ``label_map`` is ``labels[i]``.
        label_map: (H, W) int32 argmax at the original resolution.
        logits: (K, h, w) float32 scaled cosine similarities at the working resolution.
    """

    labels: list[str]
    label_map: np.ndarray
    logits: np.ndarray = field(repr=False)
    image_size: tuple[int, int] = (0, 0)

    @property
    def probs(self) -> np.ndarray:
        """(K, H, W) float32 softmax over labels at the original resolution."""
        logits = resize_bilinear(self.logits, self.image_size)
        e = np.exp(logits - logits.max(axis=0, keepdims=True))
        return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)

    def scores(self) -> dict[str, float]:
        """Fraction of pixels assigned to each label (as :meth:`lseg.SegmentationResult.scores`)."""
        counts = np.bincount(self.label_map.ravel(), minlength=len(self.labels))
        total = max(1, self.label_map.size)
        return {label: float(c) / total for label, c in zip(self.labels, counts)}

    def mask(self, label: str) -> np.ndarray:
        """(H, W) bool: the pixels assigned to ``label``."""
        return self.label_map == self.labels.index(label)


class OnnxPredictor:
    """Run an :func:`export_onnx` folder with onnxruntime; scoring and upsampling in numpy.

    Mirrors :class:`lseg.LSegPredictor` (whole-image inference; no sliding windows): the image is
    resized so its long side is ``size`` (Pillow bilinear with antialiasing), normalised, encoded
    once; any label set is then scored against the cached embedding. A fixed-size export is fed
    letterboxed images (resized to fit, padded bottom/right with black).

    Args:
        directory: folder with ``lseg_onnx.json`` and the two graphs.
        size: long side of the working resolution (``None``: the image's own size; ignored by
            fixed-size exports, which use their export size).
        providers: onnxruntime execution providers (default CPU).
        threads: intra-op threads (default: onnxruntime's choice).
        tokenizer: ``labels -> (K, context_length)`` int token ids; default open_clip's CLIP BPE
            tokenizer (the one the model was trained with).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        size: int | None = 480,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        tokenizer: Callable[[list[str]], Any] | None = None,
    ) -> None:
        d = Path(directory)
        try:
            self.meta: dict[str, Any] = json.loads((d / METADATA).read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{d} has no {METADATA}: not an lseg ONNX export (lseg export onnx)") from None
        if self.meta.get("format") != "lseg-onnx" or self.meta.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{d / METADATA}: not an lseg ONNX export of version {FORMAT_VERSION}")
        self.image_session = _session(d / self.meta["image_encoder"], providers, threads)
        self.text_session = _session(d / self.meta["text_encoder"], providers, threads)
        self.size = size
        self.mean = np.asarray(self.meta["mean"], np.float32).reshape(3, 1, 1)
        self.std = np.asarray(self.meta["std"], np.float32).reshape(3, 1, 1)
        self.logit_scale = np.float32(self.meta["logit_scale"])
        self._tokenizer = tokenizer
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    # ------------------------------------------------------------------ text
    def tokenize(self, labels: list[str]) -> np.ndarray:
        """Labels -> (K, T) int64 token ids, cut after the longest label's end token."""
        if self._tokenizer is None:
            from open_clip.tokenizer import SimpleTokenizer

            self._tokenizer = SimpleTokenizer(context_length=int(self.meta["context_length"]))
        tokens = np.asarray(self._tokenizer(labels), dtype=np.int64)
        return tokens[:, : int(tokens.argmax(axis=1).max()) + 1]

    def embed_text(self, labels: str | Sequence[str]) -> np.ndarray:
        """Labels (comma-separated string or list) -> (K, D) float32 L2-normalised embeddings (cached)."""
        label_list = parse_labels(labels)
        missing = [lb for lb in dict.fromkeys(label_list) if lb not in self._text_cache]
        if missing:
            emb = self.text_session.run(None, {"tokens": self.tokenize(missing)})[0]
            self._text_cache.update(zip(missing, emb.astype(np.float32)))
            while len(self._text_cache) > 4096:
                self._text_cache.popitem(last=False)
        return np.stack([self._text_cache[lb] for lb in label_list])

    # ------------------------------------------------------------------ image
    def _working_size(self, h: int, w: int) -> tuple[int, int]:
        if not self.meta["dynamic_size"]:
            fh, fw = self.meta["input_size"]
            s = min(fh / h, fw / w)
            return min(fh, max(1, int(h * s + 0.5))), min(fw, max(1, int(w * s + 0.5)))
        if self.size is None:
            return h, w
        s = self.size / max(h, w)
        return max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))

    def embed_image(self, image: Any) -> OnnxImageEmbedding:
        """Image (path, PIL, HxWx3 uint8, ...: anything :func:`lseg.io.load_image` takes) -> embedding."""
        from PIL import Image

        rgb = load_image(image)
        image_size = (rgb.shape[0], rgb.shape[1])
        h, w = self._working_size(*image_size)
        if (h, w) != image_size:
            rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
        x = (rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0) - self.mean) / self.std
        if self.meta["dynamic_size"]:
            x = pad_to_multiple(x, self.meta["pad_value"], self.meta["size_multiple"])
        else:  # letterbox into the export size
            fh, fw = self.meta["input_size"]
            x = np.pad(x, ((0, 0), (0, fh - h), (0, fw - w)), constant_values=np.float32(self.meta["pad_value"]))
        pixels = self.image_session.run(None, {"image": np.ascontiguousarray(x[None])})[0][0]
        pixels = pixels[:, : (h + 1) // 2, : (w + 1) // 2]
        return OnnxImageEmbedding(np.ascontiguousarray(pixels, dtype=np.float32), (h, w), image_size)

    # ------------------------------------------------------------------ scoring
    def score(self, pixels: np.ndarray, text: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(D, h', w') pixels x (K, D) text -> (K, size[0], size[1]) logits at the working resolution.

        ``scale * cos``, the spatial block if the model has one, x2 bilinear upsampling
        (align_corners=True) and a crop to ``size``: :meth:`lseg.LSeg.score` in numpy.
        """
        d, hh, ww = pixels.shape
        logits = (text.astype(np.float32) @ pixels.reshape(d, hh * ww)).reshape(-1, hh, ww) * self.logit_scale
        block = self.meta.get("spatial_block")
        if block:
            for i in range(block["depth"]):
                logits = _spatial_block(logits, block, activate=i < block["depth"] - 1)
        logits = resize_bilinear(logits, (2 * hh, 2 * ww))
        return np.ascontiguousarray(logits[:, : size[0], : size[1]])

    def segment(self, image: Any, labels: str | Sequence[str]) -> OnnxSegmentation:
        """Segment an image (or an :class:`OnnxImageEmbedding`) with a label set."""
        label_list = parse_labels(labels)
        emb = image if isinstance(image, OnnxImageEmbedding) else self.embed_image(image)
        logits = self.score(emb.pixels, self.embed_text(label_list), emb.input_size)
        return OnnxSegmentation(
            labels=label_list, label_map=argmax_resized(logits, emb.image_size), logits=logits,
            image_size=emb.image_size,
        )


def _spatial_block(x: np.ndarray, block: dict[str, Any], activate: bool) -> np.ndarray:
    """The shared 3x3 conv over each class map (+ the per-pixel class max for the bottleneck variant)."""
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


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of an align_corners=True bilinear resize along one axis."""
    pos = np.linspace(0, n_in - 1, n_out) if n_out > 1 else np.zeros(1)
    pos = pos.astype(np.float32)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) -> (K, size[0], size[1]) bilinear, align_corners=True (as ``F.interpolate``)."""
    if x.shape[1:] == tuple(size):
        return x
    ylo, yhi, ty = _axis_weights(x.shape[1], size[0])
    xlo, xhi, tx = _axis_weights(x.shape[2], size[1])
    rows = x[:, ylo] * (1 - ty)[None, :, None] + x[:, yhi] * ty[None, :, None]
    return rows[:, :, xlo] * (1 - tx) + rows[:, :, xhi] * tx


def argmax_resized(logits: np.ndarray, size: tuple[int, int], max_elems: int = 1 << 25) -> np.ndarray:
    """argmax over K of (K, h, w) logits bilinearly resized to ``size``: (H, W) int32, in row strips
    so memory stays about ``max_elems`` floats however large the image."""
    k, h, w = logits.shape
    big_h, big_w = size
    if (h, w) == (big_h, big_w):
        return logits.argmax(axis=0).astype(np.int32)
    ylo, yhi, ty = _axis_weights(h, big_h)
    xlo, xhi, tx = _axis_weights(w, big_w)
    out = np.empty((big_h, big_w), np.int32)
    step = max(1, max_elems // max(1, k * big_w))
    for r0 in range(0, big_h, step):
        sl = slice(r0, r0 + step)
        t = ty[sl][None, :, None]
        rows = logits[:, ylo[sl]] * (1 - t) + logits[:, yhi[sl]] * t
        full = rows[:, :, xlo] * (1 - tx) + rows[:, :, xhi] * tx
        out[sl] = full.argmax(axis=0)
    return out
