"""Array inputs of the viz functions: numpy arrays or torch tensors, label maps, and label names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lseg.labels import parse_labels


def _label_names(labels: str | Sequence[str]) -> list[str]:
    """The label names: a string parsed as the rest of the API does (``'dog, cat'`` is two labels, not
    one per character), a sequence taken as it is."""
    return parse_labels(labels) if isinstance(labels, str) else [str(label) for label in labels]


def _to_numpy(x: Any) -> np.ndarray:
    """numpy array from an array-like or a torch tensor (detached, on CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu()
        if hasattr(x, "is_floating_point") and x.is_floating_point():
            x = x.float()  # numpy has no bfloat16
        return x.numpy()
    return np.asarray(x)


def _label_map(label_map: Any, name: str = "label_map") -> np.ndarray:
    """An ``HxW`` integer label map (``1xHxW`` accepted) as an integer array (bool: int64), checked."""
    arr = _to_numpy(label_map)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be an HxW array of class ids, got shape {tuple(arr.shape)}")
    if arr.dtype != np.bool_ and arr.dtype.kind not in "ui":
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}; use argmax over "
                         "classes first")
    return arr if arr.dtype.kind in "ui" else arr.astype(np.int64)
