"""Training LSeg (``lseg train``): a typed config, named recipes and a Lightning Fabric loop (imported
on first use of :func:`train`, so building the command line stays cheap).

>>> from lseg.train import get_recipe, train                                   # doctest: +SKIP
>>> cfg = get_recipe("folder_finetune").replace(data_root="my_data", init_checkpoint="lseg-vitl16/")
>>> result = train(cfg)                                                          # doctest: +SKIP
"""

from typing import Any

from lseg.train.config import TrainConfig
from lseg.train.recipes import RECIPES, get_recipe, list_recipes, load_config

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "get_recipe", "list_recipes", "load_config", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult"):
        from lseg.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'lseg.train' has no attribute {name!r}")
