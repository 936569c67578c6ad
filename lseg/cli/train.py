"""``lseg train``: every :class:`~lseg.train.config.TrainConfig` field is a flag.

Precedence: field defaults < ``--config`` (recipe name or YAML/JSON file) < explicit flags
(``--batch-size 4``) < ``--set key=value`` (repeatable; ``--set dataset_kwargs.aug=true``).

Examples::

    lseg train --config ade20k_vitl16_paper --data-root /data/ade --devices 8
    lseg train --config folder_finetune --init-checkpoint lseg-vitl16/ --data-root my_data
    lseg train --config run.yaml --set base_lr=0.002 --resume never
    lseg train --config ade20k_vitl16_paper --print-config > my_run.yaml
    lseg train --recipe pascal5i_fold0_zs --data-root /data/Datasets_HSN \\
        --set dataset_kwargs.splits_dir=/data/hsnet_splits/pascal
"""

from __future__ import annotations

import argparse
import sys

from lseg.cli.parser import plain_doc
from lseg.errors import ConfigError
from lseg.options import OptionError, add_override_options, overrides_from_args, parse_value
from lseg.train.config import TrainConfig
from lseg.train.recipes import RECIPES, list_recipes, load_config

__all__ = ["register"]

#: Short names for the most used fields.
_ALIASES = {"lr": "base_lr", "checkpoint": "init_checkpoint", "accumulate": "accumulate_grad_batches",
            "out": "out_dir", "device": "accelerator"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train or fine-tune LSeg (Lightning Fabric; single GPU, multi-GPU DDP, CPU)",
        description=plain_doc(__doc__))
    recipes = ", ".join(list_recipes())
    p.add_argument("--config", "--recipe", help=f"recipe ({recipes}) or YAML/JSON config file")
    p.add_argument("--resume", default="auto", help="auto: continue from OUT_DIR/checkpoints/last.ckpt if "
                   "present; never; or a checkpoint path")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any field (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--list-recipes", action="store_true", help="list the built-in recipes and exit")
    fields = p.add_argument_group("config fields (see lseg.train.TrainConfig)")
    add_override_options(fields, TrainConfig, aliases=_ALIASES)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    import yaml

    if args.list_recipes:
        for name in list_recipes():
            doc = (RECIPES[name].__doc__ or "").strip().splitlines()[0]
            print(f"{name:<22} {doc}")
        return 0
    # the fields the command line sets, and the option that set each (for error messages)
    overrides = overrides_from_args(args)
    given = {name: "--" + name.replace("_", "-") for name in overrides}
    for item in args.set or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = parse_value(value)
        given[key.strip().split(".")[0].replace("-", "_")] = f"--set {key.strip()}"
    try:
        cfg = load_config(args.config, overrides)
        if args.print_config:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        from lseg.train.loop import train

        result = train(cfg, resume=args.resume)
    except OptionError as e:  # a bad field: named as the command line gave it (else: from --config)
        raise ConfigError(e.named(given)) from None
    if result.rank == 0:
        already = result.finished and result.resumed_from is not None and result.last_loss is None
        print(finished_message(finished=result.finished, step=result.step, total=result.total_steps,
                               loss=result.last_loss, already=already, out=str(result.out_dir),
                               model=str(result.model_dir) if result.model_dir else None,
                               checkpoint=str(result.checkpoint)), file=sys.stderr)
    return 0


def finished_message(*, finished: bool, step: int, total: int, loss: float | None, already: bool,
                     out: str = "OUT", model: str | None = None, checkpoint: str = "") -> str:
    """What ``lseg train`` says at its end; a run found complete (nothing trained now) says so, and
    how to train again."""
    if already:
        return (f"train: the run in {out} is complete ({step}/{total} steps; model {model}): nothing to "
                "train. To train again, give another --out-dir, or --resume never to start over in this one")
    state = "finished" if finished else "stopped"
    shown = "n/a" if loss is None else f"{loss:.4f}"
    return (f"train: {state} at step {step}/{total} (last loss {shown}); checkpoint {checkpoint}"
            + (f"; model {model}" if model else ""))
