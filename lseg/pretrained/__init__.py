"""Where a model comes from: the released weights by name (:mod:`.released`), checkpoint file
formats (:mod:`.checkpoints`), the Hugging Face Hub (:mod:`.hub`) and the one way to get a model,
:func:`load_model` / :func:`create_model` (:mod:`.load`). The model classes import nothing from here."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"load_model": "load", "create_model": "load", "save_pretrained": "hub", "push_to_hub": "hub",
            "list_pretrained": "released"}
__all__ = ['create_model', 'list_pretrained', 'load_model', 'push_to_hub', 'save_pretrained']


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lseg.pretrained' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lseg.pretrained.{_EXPORTS[name]}"), name)
