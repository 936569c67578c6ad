"""``lseg export onnx``: write ``image_encoder.onnx`` + ``text_encoder.onnx`` (+ ``lseg_onnx.json``)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` command group (``export onnx``) to the ``lseg`` parser."""
    from lseg.cli.common import add_model_args

    p = subparsers.add_parser("export", help="export the model for deployment (ONNX)")
    sub = p.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    o = sub.add_parser(
        "onnx", help="two ONNX graphs: image -> pixel embeddings, tokens -> text embeddings",
        description="Export image_encoder.onnx (dynamic H, W) and text_encoder.onnx (dynamic labels and "
        "tokens); the scoring runs in numpy (lseg.export.onnx.OnnxPredictor). Needs lseg[export].",
    )
    o.add_argument("--out", "-o", required=True, help="output folder")
    o.add_argument("--size", type=int, nargs="+", default=[480], metavar="N",
                   help="example input size S or H W (with --fixed-size the only size accepted)")
    o.add_argument("--fixed-size", action="store_true",
                   help="export the image graph for exactly --size (default: any H, W)")
    o.add_argument("--opset", type=int, default=18)
    o.add_argument("--no-verify", action="store_true",
                   help="skip the onnxruntime vs PyTorch comparison after export")
    o.add_argument("--atol", type=float, default=1e-4, help="verification tolerance")
    add_model_args(o)
    o.set_defaults(func=_cmd_export_onnx)


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from lseg.cli.common import load_model_from_args
    from lseg.errors import LSegError
    from lseg.export.onnx import export_onnx

    if len(args.size) not in (1, 2):
        raise LSegError(f"--size takes one or two numbers (S or H W), got {len(args.size)}")
    size = (args.size[0], args.size[0]) if len(args.size) == 1 else (args.size[0], args.size[1])
    args.device = "cpu"  # exported on CPU; the graphs run on any onnxruntime provider
    model = load_model_from_args(args)
    result = export_onnx(
        model, args.out, size=size, dynamic=not args.fixed_size, opset=args.opset,
        verify=not args.no_verify, atol=args.atol,
    )
    shape = "any HxW" if result.dynamic_size else f"{size[0]}x{size[1]} only"
    print(f"exported {result.image_encoder.name} ({shape}) and {result.text_encoder.name} to {result.directory} "
          f"(torch.onnx dynamo exporter, opset {args.opset})")
    if result.max_abs_diff:
        worst = max(result.max_abs_diff.values())
        print(f"verified against PyTorch with onnxruntime: max abs diff {worst:.2e}", file=sys.stderr)
    return 0
