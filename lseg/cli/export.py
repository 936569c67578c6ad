"""``lseg export onnx``: write ``image_encoder.onnx`` + ``text_encoder.onnx`` (+ ``lseg_onnx.json``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass

from lseg.cli import common
from lseg.io.checks import output_folder
from lseg.options import CheckedOptions, OptionError, add_options, option, options_from_args

__all__ = ["OnnxExportOptions", "register"]


def _one_or_two(size: tuple[int, ...]) -> tuple[int, ...]:
    if len(size) not in (1, 2):
        raise OptionError(f"`size` takes one or two numbers (S or H W), got {len(size)}")
    return size


@dataclass(frozen=True)
class OnnxExportOptions(CheckedOptions):
    """What ``lseg export onnx`` writes (:func:`lseg.export.onnx.export_onnx`).

    Attributes:
        out: output folder.
        size: example input size, S or H W (with ``fixed_size`` the only size accepted).
        fixed_size: export the image graph for exactly ``size`` (default: any H, W).
        opset: the ONNX opset.
        verify: compare onnxruntime with PyTorch after the export, within ``atol``.
        atol: verification tolerance.
    """

    out: str = option(short="-o", required=True, check=output_folder)
    size: tuple[int, ...] = option((480,), nargs="+", metavar="N", min=1, check=_one_or_two)
    fixed_size: bool = False
    opset: int = option(18, min=1)
    verify: bool = option(True, flag="no-verify",
                          help="skip the onnxruntime vs PyTorch comparison after export")
    atol: float = option(1e-4, gt=0)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export the model for deployment (ONNX)")
    sub = p.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    o = sub.add_parser(
        "onnx", help="two ONNX graphs: image -> pixel embeddings, tokens -> text embeddings",
        description="Export image_encoder.onnx (dynamic H, W) and text_encoder.onnx (dynamic labels and "
        "tokens); the scoring runs in numpy (lseg.export.onnx_runtime.OnnxPredictor). Needs "
        "lseg[export].",
    )
    add_options(o, OnnxExportOptions)
    common.add_model_args(o, skip=("device",))  # the export runs on the CPU
    o.set_defaults(func=_cmd_export_onnx)


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    opts: OnnxExportOptions = options_from_args(OnnxExportOptions, args)
    size = (opts.size[0], opts.size[-1])
    # exported on CPU; the graphs run on any onnxruntime provider
    source = dataclasses.replace(common.model_source_from_args(args), device="cpu")
    from lseg.export.onnx import export_onnx

    result = export_onnx(common.load_source_model(source), opts.out, size=size, dynamic=not opts.fixed_size,
                         opset=opts.opset, verify=opts.verify, atol=opts.atol)
    shape = "any HxW" if result.dynamic_size else f"{size[0]}x{size[1]} only"
    print(f"exported {result.image_encoder.name} ({shape}) and {result.text_encoder.name} to "
          f"{result.directory} (torch.onnx dynamo exporter, opset {opts.opset})")
    if result.max_abs_diff:
        worst = max(result.max_abs_diff.values())
        print(f"verified against PyTorch with onnxruntime: max abs diff {worst:.2e}", file=sys.stderr)
    return 0
