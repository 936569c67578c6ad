"""Scene-level PCA over all pixels of all frames, one projection for every view (a per-frame PCA
is not consistent across views: LangSplatV2#6), that decodes back to the text space
(docs/features-3d.md, "Reduction")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lseg.errors import LSegError

#: Pixels per accumulation step (bounds the float64 working copy: 8192 x 512 x 8 = 32 MB).
STRIP_PIXELS = 8192


@dataclass
class PCAFit:
    """Streaming PCA statistics over D-dimensional vectors (count, sum, sum of outer products, in
    float64, a strip at a time); fits merge (e.g. of shards)."""

    dim: int
    count: int = 0
    total: torch.Tensor = field(init=False)
    outer: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.total = torch.zeros(self.dim, dtype=torch.float64)
        self.outer = torch.zeros(self.dim, self.dim, dtype=torch.float64)

    def update(self, x: torch.Tensor | np.ndarray) -> PCAFit:
        """Add vectors ``x`` (N, D)."""
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise LSegError(f"expected (N, {self.dim}) vectors, got {tuple(x.shape)}")
        for i in range(0, x.shape[0], STRIP_PIXELS):
            s = x[i : i + STRIP_PIXELS].to(torch.float64)
            self.total += s.sum(0)
            self.outer += s.T @ s
            self.count += s.shape[0]
        return self

    def update_map(self, fmap: torch.Tensor | np.ndarray) -> PCAFit:
        """Add every pixel of a (D, H, W) feature map (strip by strip, no full float64 copy)."""
        return self.update(torch.as_tensor(fmap).flatten(1).T)

    def merge(self, other: PCAFit) -> PCAFit:
        """Add another fit's statistics."""
        self.total += other.total
        self.outer += other.outer
        self.count += other.count
        return self

    def result(self, k: int) -> Reduction:
        """The top-``k`` principal subspace of everything added so far."""
        if not 1 <= k <= self.dim:
            raise LSegError(f"reduce to k dimensions with 1 <= k <= {self.dim}, got {k}")
        if self.count < 2:
            raise LSegError("a reduction needs at least 2 pixels")
        mean = self.total / self.count
        cov = self.outer / self.count - torch.outer(mean, mean)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
        comps = evecs[:, :k].T.contiguous()  # (k, D)
        # sign: largest-magnitude loading positive (as scikit-learn's svd_flip)
        signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
        comps *= torch.where(signs == 0, torch.ones_like(signs), signs)
        mean_sq_norm = float(torch.trace(self.outer) / self.count)
        return Reduction(comps.float(), mean.float(), evals, self.count, mean_sq_norm)


@dataclass
class Reduction:
    """A fitted projection ``encode(x) = C (x - mean)``, ``decode(z) = C^T z + mean``: ``components`` C
    (k, D) float32 orthonormal rows, each with its largest loading positive; ``eigenvalues`` (D,)
    float64 of all principal axes, descending; ``count`` pixels fitted, of mean squared length
    ``mean_sq_norm``."""

    components: torch.Tensor
    mean: torch.Tensor
    eigenvalues: torch.Tensor
    count: int
    mean_sq_norm: float

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    @property
    def explained_variance_ratio(self) -> float:
        total = float(self.eigenvalues.sum())
        return float(self.eigenvalues[: self.k].sum()) / total if total > 0 else 1.0

    @property
    def mse(self) -> float:
        """Mean ``|decode(encode(x)) - x|^2`` over the fitted pixels: the discarded eigenvalues' sum."""
        return float(self.eigenvalues[self.k :].sum())

    @property
    def relative_error(self) -> float:
        """``sqrt(mse / mean |x|^2)``: RMS reconstruction error relative to the RMS vector length."""
        return float(np.sqrt(self.mse / self.mean_sq_norm)) if self.mean_sq_norm > 0 else 0.0

    def _on(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projection on ``t``'s device (a GPU's maps are encoded and decoded there)."""
        return self.components.to(t.device), self.mean.to(t.device)

    def encode(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(D, H, W) map or (N, D) vectors -> (k, H, W) / (N, k) float32, on x's device."""
        x = torch.as_tensor(x).float()
        components, mean = self._on(x)
        if x.ndim == 3:
            d, h, w = x.shape
            return (components @ (x.reshape(d, -1) - mean[:, None])).reshape(self.k, h, w)
        return (x - mean) @ components.T

    def decode(self, z: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(k, H, W) map or (N, k) vectors -> (D, H, W) / (N, D) float32 in the text space, on z's device."""
        z = torch.as_tensor(z).float()
        components, mean = self._on(z)
        if z.ndim == 3:
            k, h, w = z.shape
            return (components.T @ z.reshape(k, -1) + mean[:, None]).reshape(self.dim, h, w)
        return z @ components + mean

    def summary(self) -> dict[str, Any]:
        return {"k": self.k, "dim": self.dim, "fitted_pixels": self.count,
                "explained_variance_ratio": round(self.explained_variance_ratio, 6), "mse": self.mse,
                "relative_error": round(self.relative_error, 6)}

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        tensors = {"components": self.components.contiguous(), "mean": self.mean.contiguous(),
                   "eigenvalues": self.eigenvalues.contiguous()}
        meta = {"count": str(self.count), "mean_sq_norm": repr(self.mean_sq_norm)}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> Reduction:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in ("components", "mean", "eigenvalues")}
        return cls(t["components"], t["mean"], t["eigenvalues"], int(meta["count"]), float(meta["mean_sq_norm"]))


def fit_reduction(maps: Iterable[torch.Tensor | np.ndarray], k: int) -> Reduction:
    """Fit a :class:`Reduction` to (D, H, W) maps in one streaming pass."""
    fit: PCAFit | None = None
    for m in maps:
        if fit is None:
            fit = PCAFit(int(m.shape[0]))
        fit.update_map(m)
    if fit is None:
        raise LSegError("no feature maps to fit a reduction to")
    return fit.result(k)
