"""A synthetic dataset in the ``folder`` layout, for smoke tests and for trying the pipeline on a CPU.

>>> from lseg.train.toy import make_toy_dataset
>>> root = make_toy_dataset("toy", num_images=8, size=64)          # doctest: +SKIP
>>> # lseg train --random-weights ... --dataset folder --data-root toy ...

Each image is a textured background (class 0) with a few rectangles and ellipses of the other
classes, each class a distinct colour with per-pixel noise, so a small model can learn it quickly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["TOY_COLOURS", "make_toy_dataset"]

#: Mean RGB colour of each toy class (background first).
TOY_COLOURS: tuple[tuple[int, int, int], ...] = (
    (60, 150, 60),  # 0: grass-like background
    (200, 40, 40),  # 1
    (40, 60, 210),  # 2
    (230, 210, 60),  # 3
    (150, 60, 200),  # 4
)


def make_toy_dataset(
    root: str | Path,
    num_images: int = 8,
    size: int | tuple[int, int] = 64,
    labels: Sequence[str] = ("grass", "red square", "blue ball"),
    seed: int = 0,
    noise: float = 12.0,
    ignore_border: bool = False,
) -> Path:
    """Write ``root/{labels.txt, images/*.png, masks/*.png}`` (the :class:`lseg.data.FolderDataset` layout).

    Args:
        root: output folder (created).
        num_images: how many image / mask pairs.
        size: image side, or ``(height, width)``.
        labels: class strings, background first (at most ``len(TOY_COLOURS)``).
        seed: makes the images reproducible.
        noise: standard deviation of the per-pixel colour noise.
        ignore_border: mark a 1-pixel ring around every shape as ignore (255), like VOC boundaries.

    Returns:
        ``root`` as a ``Path``.
    """
    if not 2 <= len(labels) <= len(TOY_COLOURS):
        raise ValueError(f"need 2..{len(TOY_COLOURS)} labels, got {len(labels)}")
    h, w = (size, size) if isinstance(size, int) else size
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(num_images):
        mask = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(2, 5))):
            cls = int(rng.integers(1, len(labels)))
            ch, cw = int(rng.integers(h // 5, h // 2)), int(rng.integers(w // 5, w // 2))
            cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
            if rng.random() < 0.5:
                shape = (abs(yy - cy) <= ch // 2) & (abs(xx - cx) <= cw // 2)
            else:
                shape = ((yy - cy) / (ch / 2)) ** 2 + ((xx - cx) / (cw / 2)) ** 2 <= 1.0
            mask[shape] = cls
        colours = np.asarray(TOY_COLOURS[: len(labels)], np.float32)
        image = colours[mask] + rng.normal(0.0, noise, (h, w, 3)).astype(np.float32)
        image[mask == 0] += 25.0 * np.sin(xx[mask == 0, None] / 3.0)  # a stripe texture on the background
        if ignore_border:
            edge = np.zeros_like(mask, bool)
            edge[1:, :] |= mask[1:, :] != mask[:-1, :]
            edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
            mask[edge] = 255
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"toy_{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"toy_{i:04d}.png")
    return root
