"""ONNX export of LSeg as two graphs (the segment-anything split); the runtime is :mod:`lseg.export.onnx_runtime`.

LSeg factors into an expensive image half and a cheap text half, so it is exported as two graphs::

    image_encoder.onnx   image  (1, 3, H, W) float32, normalised  -> pixels     (1, D, H/2, W/2)
    text_encoder.onnx    tokens (K, T) int64 CLIP token ids       -> embeddings (K, D)
    lseg_onnx.json       metadata: normalisation, padding, logit scale, spatial block, verification

Both outputs are L2-normalised. ``H, W`` are dynamic **multiples of 32**: pad an image of any size
at the bottom/right with ``pad_value`` (the normalised value of black: one number, or one per
channel for a normalisation other than 0.5/0.5) and crop the output to ``ceil(h/2), ceil(w/2)``
(:func:`lseg.geometry.pad_to_multiple`; exactly what :meth:`lseg.LSeg.encode_image` does
inside, so the results are the same). ``K`` and ``T`` are dynamic; the batch is 1 (a dynamic batch
does not survive ``torch.export``'s size-1 specialisation). With ``dynamic=False`` the image graph
takes exactly the export size instead. The scoring ``logits = scale * E_pix . E_txt`` (+ the
optional spatial regularisation block), the x2 bilinear upsampling and the argmax run in numpy
(:class:`lseg.export.onnx_runtime.OnnxPredictor`, which needs no torch), so label sets change
without re-exporting and without running the text graph more than once per label.

``T`` may be the full 77-token context or the token matrix cut after the longest label's end token
(faster; CLIP's causal mask makes the result identical). The graph pools at the end-of-text token,
found as the argmax of the ids (it has the largest id in CLIP's vocabulary), as CLIP does.

Exported with ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export`` based exporter, opset 18,
needs ``onnxscript``). The legacy TorchScript exporter (``dynamo=False``) is not used: it cannot trace
the position-embedding resize (``round()`` of a traced shape), even at a fixed size.

>>> from lseg.export.onnx import export_onnx                          # doctest: +SKIP
>>> from lseg.export.onnx_runtime import OnnxPredictor                # doctest: +SKIP
>>> export_onnx(lseg.load_model("lseg-demo/"), "lseg-onnx/")         # doctest: +SKIP
>>> OnnxPredictor("lseg-onnx/").segment("dog.jpg", "dog, grass, other").label_map   # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lseg.errors import LSegError
from lseg.export.onnx_runtime import FORMAT_VERSION, IMAGE_ENCODER, METADATA, TEXT_ENCODER, session
from lseg.geometry import SIZE_MULTIPLE, half_size, pad_to_multiple, pad_value, padded_size
from lseg.io import atomic_files, atomic_write

if TYPE_CHECKING:  # imported inside the functions: importing this module stays cheap
    import torch

    from lseg.models.lseg import LSeg

_logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18


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
        graph_hw = padded_size(*hw) if dynamic else hw
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

    image_session = session(out / IMAGE_ENCODER)
    text_session = session(out / TEXT_ENCODER)
    sizes = [hw]
    if dynamic:  # other sizes: odd, not a multiple of 32, another aspect ratio; and multiples of 32
        sizes.append((max(2, hw[0] // 2 + 17), max(2, hw[1] * 3 // 4 + 5)))
        sizes.append((SIZE_MULTIPLE * max(1, round(hw[0] / 64)), SIZE_MULTIPLE * max(1, round(hw[1] / 48))))
    diffs: dict[str, float] = {}
    gen = torch.Generator().manual_seed(1)
    black = pad_value(model.config.mean, model.config.std)
    for h, w in sizes:
        x = torch.randn(1, 3, h, w, generator=gen)
        with torch.no_grad():
            ref = model.encode_image(x).numpy()
        feed = pad_to_multiple(x.numpy(), black) if dynamic else x.numpy()
        hh, ww = half_size(h, w)
        got = image_session.run(None, {"image": feed})[0][..., :hh, :ww]
        diffs[f"image {h}x{w}"] = _maxdiff(got, ref)
    with torch.no_grad():
        ref_text = model.text_encoder.encode_tokens(tokens).numpy()
    full = model.text_encoder.tokenize(["dog", "grass", "a photo of the sky"])
    for t in (tokens, full):
        got = text_session.run(None, {"tokens": t.numpy()})[0]
        diffs[f"text {t.shape[0]}x{t.shape[1]}"] = _maxdiff(got, ref_text)
    return diffs


def _pad_value(model: LSeg) -> float | list[float]:
    """The metadata's ``pad_value``: one number where all channels agree (-1 for 0.5/0.5), else one per channel."""
    black = [float(v) for v in pad_value(model.config.mean, model.config.std)]
    return black[0] if len(set(black)) == 1 else black


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
