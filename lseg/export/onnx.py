"""ONNX export of LSeg as two graphs (docs/deployment.md): ``image_encoder.onnx`` (normalised image
(1, 3, H, W) -> pixels (1, D, H/2, W/2); callers pad bottom/right with ``pad_value`` and crop to ``ceil(h/2),
ceil(w/2)``), ``text_encoder.onnx`` (CLIP token ids (K, T) -> (K, D), pooled at the largest id, the end
token), both L2-normalised, and ``lseg_onnx.json`` (metadata). Uses ``torch.onnx.export(dynamo=True)``:
TorchScript cannot trace the position-embedding resize."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lseg.errors import LSegError
from lseg.export.onnx_runtime import FORMAT_VERSION, IMAGE_ENCODER, METADATA, TEXT_ENCODER, session
from lseg.geometry import SIZE_MULTIPLE, half_size, pad_to_multiple, pad_value, padded_size
from lseg.io import atomic_files, atomic_write, write_error

if TYPE_CHECKING:  # imported inside the functions: importing this module stays cheap
    import torch

    from lseg.models.lseg import LSeg

DEFAULT_OPSET = 18


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        directory: the output folder.
        image_encoder, text_encoder, metadata: paths of the two graphs and of ``lseg_onnx.json``.
        exporter: ``"dynamo"``.
        dynamic_size: whether the image graph takes any ``H, W`` (else only ``input_size``).
        input_size: (H, W) of the example input.
        max_abs_diff: onnxruntime vs eager PyTorch per check; empty if not verified.
    """

    directory: Path
    image_encoder: Path
    text_encoder: Path
    metadata: Path
    exporter: str
    dynamic_size: bool
    input_size: tuple[int, int]
    max_abs_diff: dict[str, float] = field(default_factory=dict)


def export_onnx(model: LSeg, out_dir: str | os.PathLike[str], *, size: int | tuple[int, int] = 480,
                dynamic: bool = True, opset: int = DEFAULT_OPSET, verify: bool = True,
                atol: float = 1e-4) -> OnnxExport:
    """Export ``model`` (on CPU in eval mode; its mode and device are restored) into ``out_dir``.

    Args:
        size: example input size, ``S`` or ``(H, W)`` (traced at the next multiples of 32); with
            ``dynamic=False`` the only size the image graph accepts (:class:`OnnxPredictor` letterboxes).
        dynamic: ``H, W`` of the image graph are any multiples of 32.
        verify: compare both graphs under onnxruntime with eager PyTorch on random inputs (two more image
            sizes when dynamic, one odd); :class:`LSegError` beyond ``atol``.
    """
    import torch
    from torch import nn

    class Graph(nn.Module):
        """``fn(module, input)`` as a module to export."""

        def __init__(self, module: nn.Module, fn: Any) -> None:
            super().__init__()
            self.module, self.fn = module, fn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fn(self.module, x)

    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(hw) < 1:
        raise LSegError(f"export size must be positive, got {hw}")
    if model.precision != "fp32":  # int8: oneDNN kernels; bf16/fp16: an invalid graph for onnxruntime's CPU
        raise LSegError(f"a {model.precision} model does not export to ONNX (the graphs are fp32): export it "
                        f"before set_precision({model.precision!r}), or after set_precision('fp32')")
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        # written last: a failed or interrupted export leaves a folder OnnxPredictor refuses, not new graphs
        # beside the old metadata
        (out / METADATA).unlink(missing_ok=True)
    except OSError as e:  # e.g. a file where a folder of the path should be
        raise write_error(out, e) from None
    was_training, device = model.training, model.device
    model.eval().cpu()
    try:
        # H, W symbolic multiples of 32: encode_image's padding is a no-op when traced
        image_graph = Graph(model, lambda m, x: m.encode_image(x)).eval()
        # at the caller's T: the per-length grouping of encode_tokens is data-dependent
        text_graph = Graph(model.text_encoder,
                           lambda e, t: e.encode_groups(t, [(None, t.shape[1])], torch.float32)).eval()
        graph_hw = padded_size(*hw) if dynamic else hw
        example_image = torch.randn(1, 3, *graph_hw, generator=torch.Generator().manual_seed(0))
        tokens = model.text_encoder.tokenize(["dog", "grass", "a photo of the sky"])
        example_tokens = tokens[:, : int(tokens.argmax(-1).max()) + 1]
        Dim = torch.export.Dim
        image_dims = {2: SIZE_MULTIPLE * Dim("height_32", min=1), 3: SIZE_MULTIPLE * Dim("width_32", min=1)}
        text_dims = {0: Dim("labels", min=1), 1: Dim("tokens", min=2)}
        with torch.no_grad():
            _export_graph(image_graph, example_image, out / IMAGE_ENCODER, "image", "pixels",
                          image_dims if dynamic else None, opset)
            _export_graph(text_graph, example_tokens, out / TEXT_ENCODER, "tokens", "embeddings",
                          text_dims, opset)
        diffs = _verify(model, out, hw, dynamic, (example_tokens, tokens)) if verify else {}
        bad = {k: v for k, v in diffs.items() if not v <= atol}
        if bad:
            raise LSegError(f"exported graphs differ from PyTorch by more than {atol}: {bad}")
        meta = _metadata(model, opset, dynamic, hw, diffs)
        atomic_write(out / METADATA, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    finally:
        model.to(device).train(was_training)
    return OnnxExport(directory=out, image_encoder=out / IMAGE_ENCODER, text_encoder=out / TEXT_ENCODER,
                      metadata=out / METADATA, exporter="dynamo", dynamic_size=dynamic, input_size=hw,
                      max_abs_diff=diffs)


def _export_graph(module: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str,
                  output_name: str, dynamic_shapes: dict[int, Any] | None, opset: int) -> None:
    """Export one graph to ``path`` (plus ``path.data`` for weights stored outside it), atomically."""
    import torch

    with atomic_files(path) as tmp:
        try:
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset, verbose=False,
                input_names=[input_name], output_names=[output_name],
                dynamic_shapes=(dynamic_shapes,) if dynamic_shapes else None,
            )
        except Exception as e:  # torch.export and onnxscript raise many types
            raise LSegError(f"ONNX export of {path.name} failed: {str(e).splitlines()[0]}") from e
        assert program is not None
        # Weights are inlined unless the graph nears protobuf's 2 GB limit (ViT-L is 1.2 GB).
        size = sum(p.numel() * p.element_size() for p in module.parameters())
        program.save(str(tmp / path.name), external_data=size > 1_800_000_000)
        path.with_name(path.name + ".data").unlink(missing_ok=True)  # a stale one from a larger export


def _verify(model: LSeg, out: Path, hw: tuple[int, int], dynamic: bool,
            tokens: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Max abs difference between onnxruntime and eager PyTorch per input (``tokens``: cut, full)."""
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
        ref_text = model.text_encoder.encode_tokens(tokens[0]).numpy()
    for t in tokens:
        got = text_session.run(None, {"tokens": t.numpy()})[0]
        diffs[f"text {t.shape[0]}x{t.shape[1]}"] = _maxdiff(got, ref_text)
    return diffs


def _maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _metadata(model: LSeg, opset: int, dynamic: bool, hw: tuple[int, int], diffs: dict[str, float]) -> dict:
    cfg = model.config
    block = None
    if model.spatial_block is not None:
        conv = model.spatial_block.conv
        block = {"weight": conv.weight.detach().float().reshape(3, 3).tolist(),
                 "bias": float(conv.bias.detach().float().item()),
                 "bottleneck": bool(model.spatial_block.bottleneck), "activation": cfg.activation,
                 "depth": cfg.block_depth}
    black = [float(v) for v in pad_value(cfg.mean, cfg.std)]  # one number where all channels agree
    return {
        "format": "lseg-onnx", "version": FORMAT_VERSION, "image_encoder": IMAGE_ENCODER,
        "text_encoder": TEXT_ENCODER, "exporter": "dynamo", "opset": opset, "dynamic_size": dynamic,
        "input_size": list(hw), "mean": list(cfg.mean), "std": list(cfg.std),
        "size_multiple": SIZE_MULTIPLE if dynamic else None,
        "pad_value": black[0] if len(set(black)) == 1 else black,
        "logit_scale": float(model.logit_scale), "embed_dim": cfg.embed_dim,
        "context_length": cfg.text.context_length, "spatial_block": block, "max_abs_diff": diffs,
        "model": cfg.to_dict(),
    }
