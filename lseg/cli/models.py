"""The model-file commands: ``lseg convert`` (official .ckpt -> lseg folder), ``lseg info`` (a
checkpoint's configuration) and ``lseg weights`` (the released weights by name)."""

from __future__ import annotations

import argparse
import json

from lseg.cli.common import add_arch_args, spatial_block_from_args
from lseg.errors import LSegError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the commands of this module to the ``lseg`` parser."""
    p = sub.add_parser("convert", help="convert an official lang-seg .ckpt to an lseg folder")
    p.add_argument("checkpoint", help="official .ckpt (or any readable checkpoint)")
    p.add_argument("out", help="output folder (model.safetensors + config.json)")
    add_arch_args(p)
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "weights", help="the released LSeg weights by name: list, download, path",
        description="Released weights are downloaded once (Google Drive, or $LSEG_WEIGHTS_MIRROR), checked, "
        "converted to an lseg folder and cached in $LSEG_HOME (default ~/.cache/lseg); every --checkpoint "
        "accepts their names. LSEG_OFFLINE=1 (or HF_HUB_OFFLINE=1) uses the cache only.",
    )
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    wsub.add_parser("list", help="names, networks, the paper's numbers, and what is cached")
    w = wsub.add_parser("download", help="download, verify and convert (already cached: verify)")
    w.add_argument("names", nargs="+", metavar="NAME", help="released weights names, or all")
    w.add_argument("--force", action="store_true", help="discard the cached files and download again")
    w = wsub.add_parser("path", help="print the cached lseg folder of NAME (for scripts)")
    w.add_argument("name", metavar="NAME", help="released weights name")
    p.set_defaults(func=_cmd_weights)

    p = sub.add_parser("info", help="print a checkpoint's configuration")
    p.add_argument("checkpoint", help="lseg folder, .safetensors, official .ckpt or released weights name")
    add_arch_args(p)
    p.set_defaults(func=_cmd_info)


def _cmd_convert(args: argparse.Namespace) -> int:
    from lseg.checkpoints import save_pretrained
    from lseg.loading import load_model

    model = load_model(args.checkpoint, spatial_block=spatial_block_from_args(args))
    out = save_pretrained(model, args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"converted {args.checkpoint} -> {out} ({model.config.name}, {n / 1e6:.1f} M parameters)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from lseg.checkpoints import (
        CONFIG_NAME,
        count_parameters,
        infer_config,
        read_checkpoint,
        read_config,
        safetensors_shapes,
    )
    from lseg.weights import resolve

    p = resolve(args.checkpoint)
    info: dict = {}
    if p.is_dir() or (p.parent / CONFIG_NAME).is_file() and p.suffix == ".safetensors":
        config = read_config(p if p.is_dir() else p.parent)
        shapes = safetensors_shapes(p)  # header only: also catches a truncated weights file
        info["format"] = "lseg"
    else:
        ckpt = read_checkpoint(p)
        config = infer_config(ckpt.state_dict, spatial_block=spatial_block_from_args(args))
        shapes = {k: tuple(v.shape) for k, v in ckpt.state_dict.items()}
        info["format"] = ckpt.format
        if ckpt.metadata:
            info["lightning" if ckpt.format == "lightning" else "metadata"] = ckpt.metadata
    info["config"] = config.to_dict()
    info["tensors"] = len(shapes)
    info["parameters"] = count_parameters(shapes)  # as the reference counts: BatchNorm statistics excluded
    print(json.dumps(info, indent=2, default=str))
    return 0


# ---------------------------------------------------------------------------- weights

def _cmd_weights(args: argparse.Namespace) -> int:
    from lseg import weights

    if args.weights_command == "list":
        rows = [("name", "network", "result in the paper", "file", "cached")]
        for w in weights.WEIGHTS.values():
            d = weights.weights_dir(w.name)
            state = "converted" if weights.cached_folder(w.name) else "downloaded" if (d / w.filename).is_file() else "-"
            rows.append((w.name, w.network, w.paper, w.filename, state))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(n) for c, n in zip(r, widths)).rstrip())
        print(f"cache: {weights.cache_dir() / 'weights'}" + (" (offline mode)" if weights.is_offline() else ""))
        return 0
    if args.weights_command == "download":
        names = list(weights.WEIGHTS) if args.names == ["all"] else args.names
        for name in names:
            weights.get_weights(name)  # every name is checked before the first download starts
        for name in names:
            print(weights.download(name, force=args.force, check_all=True))
        return 0
    folder = weights.cached_folder(args.name)
    if folder is None:
        entry = weights.get_weights(args.name)
        raise LSegError(
            f"{args.name!r} is not in the cache: run `lseg weights download {args.name}`, or put {entry.filename} "
            f"(from {entry.url}) at {weights.weights_dir(args.name) / entry.filename}"
        )
    print(folder)
    return 0

