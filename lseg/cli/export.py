"""``lseg export onnx``: write ``image_encoder.onnx`` + ``text_encoder.onnx`` (+ ``lseg_onnx.json``)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from lseg.options import Flag, add_config_args, config_from_args

__all__ = ["ONNX_FLAGS", "OnnxExportOptions", "register"]


@dataclass(frozen=True)
class OnnxExportOptions:
    """What ``lseg export onnx`` writes (:func:`lseg.export.onnx.export_onnx`).

    Attributes:
        out: the output folder.
        size: example input size, ``(S,)`` or ``(H, W)`` (with ``fixed_size`` the only size accepted).
        fixed_size: export the image graph for exactly ``size`` (default: any H, W).
        opset: the ONNX opset.
        verify: compare onnxruntime with PyTorch after the export, within ``atol``.
    """

    out: str
    size: tuple[int, ...] = (480,)
    fixed_size: bool = False
    opset: int = 18
    verify: bool = True
    atol: float = 1e-4


#: The command-line side of :class:`OnnxExportOptions`.
ONNX_FLAGS = {
    "out": Flag("output folder", aliases=("-o",), required=True),
    "size": Flag("example input size S or H W (with --fixed-size the only size accepted)", nargs="+", metavar="N"),
    "fixed_size": Flag("export the image graph for exactly --size (default: any H, W)"),
    "opset": Flag(""),
    "verify": Flag("skip the onnxruntime vs PyTorch comparison after export", name="no-verify"),
    "atol": Flag("verification tolerance"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` command group (``export onnx``) to the ``lseg`` parser."""
    from lseg.cli.common import add_model_args

    p = subparsers.add_parser("export", help="export the model for deployment (ONNX)")
    sub = p.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    o = sub.add_parser(
        "onnx", help="two ONNX graphs: image -> pixel embeddings, tokens -> text embeddings",
        description="Export image_encoder.onnx (dynamic H, W) and text_encoder.onnx (dynamic labels and "
        "tokens); the scoring runs in numpy (lseg.export.onnx_runtime.OnnxPredictor). Needs lseg[export].",
    )
    add_config_args(o, OnnxExportOptions, ONNX_FLAGS)
    add_model_args(o)
    o.set_defaults(func=_cmd_export_onnx)


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from lseg.cli.common import load_model_from_args
    from lseg.errors import LSegError
    from lseg.export.onnx import export_onnx

    opts: OnnxExportOptions = config_from_args(OnnxExportOptions, args, ONNX_FLAGS)
    if len(opts.size) not in (1, 2):
        raise LSegError(f"--size takes one or two numbers (S or H W), got {len(opts.size)}")
    size = (opts.size[0], opts.size[0]) if len(opts.size) == 1 else (opts.size[0], opts.size[1])
    args.device = "cpu"  # exported on CPU; the graphs run on any onnxruntime provider
    model = load_model_from_args(args)
    result = export_onnx(
        model, opts.out, size=size, dynamic=not opts.fixed_size, opset=opts.opset,
        verify=opts.verify, atol=opts.atol,
    )
    shape = "any HxW" if result.dynamic_size else f"{size[0]}x{size[1]} only"
    print(f"exported {result.image_encoder.name} ({shape}) and {result.text_encoder.name} to {result.directory} "
          f"(torch.onnx dynamo exporter, opset {opts.opset})")
    if result.max_abs_diff:
        worst = max(result.max_abs_diff.values())
        print(f"verified against PyTorch with onnxruntime: max abs diff {worst:.2e}", file=sys.stderr)
    return 0
