#!/usr/bin/env python
"""Make the pictures of docs/gallery.md by running the ``lseg`` commands on one image.

With no options it uses a generated photo-like scene and a tiny random-weight model, so it runs
anywhere in seconds -- and the pictures show the *format* of the outputs, not a segmentation (random
weights give noise). With a converted official checkpoint and a real photo it makes real pictures::

    lseg convert demo_e200.ckpt lseg-demo/
    python scripts/make_gallery.py --checkpoint lseg-demo/ --image street.jpg --labels "road, car, sky, other"

Outputs (PNG, in --out): input, overlay (with legend), label map, per-label heatmaps (one grid) and
the PCA picture of the dense features. Each command is printed before it runs.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def scene(h: int = 192, w: int = 256, seed: int = 0) -> np.ndarray:
    """A photo-like scene: sky gradient, sun, hills with mild grass texture (compresses well)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 110 + 60 * yy / h, 160 + 50 * yy / h, 235 - 20 * yy / h
    img[(yy - 0.2 * h) ** 2 + (xx - 0.75 * w) ** 2 < (0.1 * h) ** 2] = (250, 230, 120)
    grass = yy > 0.55 * h + 0.08 * h * np.sin(xx / w * 6.0)
    stripes = 12 * np.sin(xx / 3.0 + 2 * np.sin(yy / 7.0)) + rng.normal(0, 3, size=(h, w))
    img[grass] = np.stack([45 + stripes, 125 + 1.5 * stripes, 40 + stripes], -1)[grass]
    return np.clip(img, 0, 255).astype(np.uint8)


def run(argv: list[str]) -> None:
    from lseg.cli import main

    print("$ lseg " + shlex.join(argv), flush=True)
    code = main(argv)
    if code:
        sys.exit(f"lseg {argv[0]} failed with exit code {code}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "gallery"), help="output folder (default docs/gallery)")
    p.add_argument("--checkpoint", default=None, help="a real model (lseg folder / .ckpt); default: random weights")
    p.add_argument("--random-weights", default="lseg_tiny_test_p32", help="model used without --checkpoint")
    p.add_argument("--image", default=None, help="your photo (default: a generated scene)")
    p.add_argument("--labels", default="sky, grass, sun, other")
    p.add_argument("--size", type=int, default=256, help="working resolution (long side)")
    args = p.parse_args()

    import torch

    from lseg.labels import parse_labels
    from lseg.viz import grid

    torch.manual_seed(0)  # the same random weights every time

    model = ["--checkpoint", args.checkpoint] if args.checkpoint else ["--random-weights", args.random_weights]
    common = [*model, "--size", str(args.size), "--quiet"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = parse_labels(args.labels)
    with tempfile.TemporaryDirectory(prefix="lseg-gallery-") as tmp:
        work = Path(tmp)
        image = work / "scene.png"
        if args.image:
            Image.open(args.image).convert("RGB").save(image)
        else:
            Image.fromarray(scene()).save(image)
        run(["segment", str(image), "--labels", args.labels, "--out", str(work / "seg"), "--heatmaps", *common])
        run(["features", str(image), "--out", str(work / "feat"), "--pca", *common])
        shutil.copy(image, out / "input.png")
        shutil.copy(work / "seg" / "scene_overlay.png", out / "overlay.png")
        shutil.copy(work / "seg" / "scene_labels.png", out / "labels.png")
        heat = sorted((work / "seg").glob("scene_heat_*.png"))
        assert len(heat) == len(labels), heat
        grid([Image.open(h) for h in heat], ncols=len(heat)).save(out / "heatmaps.png", optimize=True)
        Image.open(work / "feat" / "scene_pca.png").save(out / "pca.png", optimize=True)
    total = sum(f.stat().st_size for f in out.glob("*.png"))
    print(f"wrote {len(list(out.glob('*.png')))} PNGs to {out} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
