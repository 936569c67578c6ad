"""The model-file commands: ``lseg convert`` (official .ckpt -> lseg folder), ``lseg info`` (a
checkpoint's configuration) and ``lseg weights`` (the released weights by name)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

from lseg.cli.common import ArchOptions
from lseg.errors import LSegError
from lseg.io.checks import output_folder
from lseg.options import CheckedOptions, add_options, option, options_from_args

__all__ = ["ConvertOptions", "DownloadOptions", "InfoOptions", "PathOptions", "register"]


@dataclass(frozen=True)
class ConvertOptions(CheckedOptions):
    """``lseg convert``.

    Attributes:
        checkpoint: official .ckpt (or any readable checkpoint).
        out: output folder (model.safetensors + config.json).
        arch: the spatial block of an official checkpoint.
    """

    checkpoint: str = option(positional=True)
    out: str = option(positional=True, check=output_folder)
    arch: ArchOptions = field(default_factory=ArchOptions)


@dataclass(frozen=True)
class InfoOptions(CheckedOptions):
    """``lseg info``.

    Attributes:
        checkpoint: lseg folder, .safetensors, official .ckpt or released weights name.
        arch: the spatial block of an official checkpoint.
    """

    checkpoint: str = option(positional=True)
    arch: ArchOptions = field(default_factory=ArchOptions)


@dataclass(frozen=True)
class DownloadOptions(CheckedOptions):
    """``lseg weights download``.

    Attributes:
        names: released weights names, or all.
        force: discard the cached files and download again.
    """

    names: tuple[str, ...] = option(positional=True, nargs="+", metavar="NAME")
    force: bool = False


@dataclass(frozen=True)
class PathOptions(CheckedOptions):
    """``lseg weights path``.

    Attributes:
        name: released weights name.
    """

    name: str = option(positional=True, metavar="NAME")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an official lang-seg .ckpt to an lseg folder")
    add_options(p, ConvertOptions)
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
    add_options(w, DownloadOptions)
    w = wsub.add_parser("path", help="print the cached lseg folder of NAME (for scripts)")
    add_options(w, PathOptions)
    p.set_defaults(func=_cmd_weights)

    p = sub.add_parser("info", help="print a checkpoint's configuration")
    add_options(p, InfoOptions)
    p.set_defaults(func=_cmd_info)


def _cmd_convert(args: argparse.Namespace) -> int:
    opts: ConvertOptions = options_from_args(ConvertOptions, args)
    from lseg.pretrained.checkpoints import save_pretrained
    from lseg.pretrained.load import load_model

    model = load_model(opts.checkpoint, spatial_block=opts.arch.spatial_block())
    out = save_pretrained(model, opts.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"converted {opts.checkpoint} -> {out} ({model.config.name}, {n / 1e6:.1f} M parameters)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    opts: InfoOptions = options_from_args(InfoOptions, args)
    import torch

    from lseg.errors import CheckpointError
    from lseg.models.lseg import LSeg
    from lseg.pretrained import checkpoints as ck
    from lseg.pretrained.files import CheckpointFile, read_checkpoint, safetensors_shapes
    from lseg.pretrained.released import resolve

    p = resolve(opts.checkpoint)
    config = ck.read_config(p) if p.is_dir() else None  # first: a folder without config.json says so
    if config or p.suffix == ".safetensors":  # the header only: no tensor is read
        meta = {k: torch.empty(s, device="meta") for k, s in safetensors_shapes(p).items()}
        ckpt = CheckpointFile(meta, "safetensors", {})
    else:
        ckpt = read_checkpoint(p)
    config = config or ck.config_beside(p, ckpt)  # the file is read once
    info: dict = {"format": "lseg" if config and ckpt.format == "safetensors" else ckpt.format}
    if ckpt.metadata:
        info["lightning" if ckpt.format == "lightning" else "metadata"] = ckpt.metadata
    config = config or ck.infer_config(ckpt.state_dict, spatial_block=opts.arch.spatial_block())
    info["config"] = config.to_dict()
    info["tensors"] = len(ckpt.state_dict)
    # as the reference counts: BatchNorm statistics excluded
    info["parameters"] = ck.count_parameters({k: v.shape for k, v in ckpt.state_dict.items()})
    with torch.device("meta"):  # the network the config describes, without allocating it
        own = LSeg(config).state_dict()
    problems = ck.fit_problems(own, {k: v.shape for k, v in ck.to_lseg_keys(ckpt.state_dict).items()})
    info["weights_fit"] = not problems
    print(json.dumps(info, indent=2, default=str))
    if problems:  # after the report, which shows what the file holds
        raise CheckpointError(f"{opts.checkpoint}: checkpoint does not fit {config.name}: "
                              + "; ".join(problems))
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from lseg.pretrained import released as weights

    if args.weights_command == "list":
        rows = [("name", "network", "result in the paper", "file", "cached")]
        for w in weights.WEIGHTS.values():
            downloaded = (weights.weights_dir(w.name) / w.filename).is_file()
            state = "converted" if weights.cached_folder(w.name) else "downloaded" if downloaded else "-"
            rows.append((w.name, w.network, w.paper, w.filename, state))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(n) for c, n in zip(r, widths)).rstrip())
        offline = " (offline mode)" if weights.is_offline() else ""
        print(f"cache: {weights.cache_dir() / 'weights'}{offline}")
        return 0
    if args.weights_command == "download":
        download: DownloadOptions = options_from_args(DownloadOptions, args)
        names = list(weights.WEIGHTS) if download.names == ("all",) else list(download.names)
        for name in names:
            weights.get_weights(name)  # every name is checked before the first download starts
        for name in names:
            print(weights.download(name, force=download.force, check_all=True))
        return 0
    name = options_from_args(PathOptions, args).name
    folder = weights.cached_folder(name)
    if folder is None:
        entry = weights.get_weights(name)
        if (weights.weights_dir(name) / entry.filename).is_file():  # placed by hand, or a download never converted
            raise LSegError(f"{name!r} is downloaded but not converted yet: run `lseg weights download {name}` "
                            "(offline too) to check and convert it")
        raise LSegError(
            f"{name!r} is not in the cache: run `lseg weights download {name}`, or put {entry.filename} "
            f"(from {entry.url}) at {weights.weights_dir(name) / entry.filename}"
        )
    print(folder)
    return 0

