"""``lseg train``: every :class:`~lseg.train.config.TrainConfig` field is a flag.

Precedence: field defaults < ``--config`` (recipe name or YAML/JSON file) < explicit flags
(``--batch-size 4``) < ``--set key=value`` (repeatable; ``--set dataset_kwargs.aug=true``).

Examples::

    lseg train --config ade20k_vitl16_paper --data-root /data/ade --devices 8
    lseg train --config folder_finetune --init-checkpoint lseg-vitl16/ --data-root my_data
    lseg train --config run.yaml --set base_lr=0.002 --resume never
    lseg train --config ade20k_vitl16_paper --print-config > my_run.yaml
    lseg train --recipe pascal5i_fold0_zs --data-root /data/Datasets_HSN \
        --set dataset_kwargs.splits_dir=/data/hsnet_splits/pascal
"""

from __future__ import annotations

import argparse
import sys
import typing
from typing import Any

from lseg.cli import plain_doc
from lseg.errors import ConfigError
from lseg.train.config import TrainConfig, field_types, list_recipes, load_config, parse_value

__all__ = ["register"]

#: Short names for the most used fields.
_ALIASES = {"lr": "base_lr", "checkpoint": "init_checkpoint", "accumulate": "accumulate_grad_batches",
            "out": "out_dir", "device": "accelerator"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if args and type(None) in args:
        return "|".join(_type_name(a) for a in args if a is not type(None)) + "|null"
    if origin is tuple:
        return ",".join(_type_name(a) for a in args)
    if origin is dict:
        return "YAML mapping"
    return getattr(tp, "__name__", str(tp))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune LSeg (Lightning Fabric; single GPU, multi-GPU DDP, CPU)",
        description=plain_doc(__doc__),
    )
    p.add_argument(
        "--config", "--recipe", help=f"recipe ({', '.join(list_recipes())}) or YAML/JSON config file"
    )
    p.add_argument(
        "--resume", default="auto",
        help="auto: continue from OUT_DIR/checkpoints/last.ckpt if present; never; or a checkpoint path",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any field (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--list-recipes", action="store_true", help="list the built-in recipes and exit")
    fields = p.add_argument_group("config fields (see lseg.train.TrainConfig)")
    defaults = TrainConfig().to_dict()
    for name, tp in field_types().items():
        flags = ["--" + name.replace("_", "-")]
        flags += ["--" + a for a, target in _ALIASES.items() if target == name]
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if tp is bool else {}
        fields.add_argument(
            *flags, dest=f"field_{name}", default=argparse.SUPPRESS, metavar=name.upper() if tp is not bool else "BOOL",
            help=f"{_type_name(tp)} (default {defaults[name]!r})", **extra,
        )
    p.set_defaults(func=_cmd_train)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key.startswith("field_"):
            out[key[len("field_"):]] = parse_value(value) if isinstance(value, str) else value
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    import yaml

    if args.list_recipes:
        from lseg.train.config import RECIPES

        for name in list_recipes():
            doc = (RECIPES[name].__doc__ or "").strip().splitlines()[0]
            print(f"{name:<22} {doc}")
        return 0
    cfg = load_config(args.config, _overrides(args))
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    from lseg.train.loop import train

    result = train(cfg, resume=args.resume)
    if result.rank == 0:
        state = "finished" if result.finished else "stopped"
        loss = "n/a" if result.last_loss is None else f"{result.last_loss:.4f}"
        print(
            f"train: {state} at step {result.step}/{result.total_steps} (last loss {loss}); "
            f"checkpoint {result.checkpoint}" + (f"; model {result.model_dir}" if result.model_dir else ""),
            file=sys.stderr,
        )
    return 0
