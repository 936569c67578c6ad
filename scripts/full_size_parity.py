"""Full-size reference parity, measured on demand (too slow and large for CI: ~2 minutes, ~5 GB).

Builds the reference port (``tests/refimpl``: OpenAI's CLIP code, torchvision's ResNet-101) at full
size with random weights, loads the same weights into lseg, and compares ``reference_numerics=True``
logits at 480x480 for the ViT-L/16 ``LSegNet`` and the ResNet-101 ``LSegRNNetZS``::

    python scripts/full_size_parity.py            # both
    python scripts/full_size_parity.py vit        # one

``scripts/official_parity.py`` compares against the official lang-seg code itself instead (every
released family, all numerics modes); this one needs nothing outside the repository.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from refimpl.lseg_reference import RefLSegNet, RefLSegRNNetZS

import lseg
from lseg.pretrained.checkpoints import load_weights


def main(kinds: list[str]) -> int:
    ok = True
    for kind in kinds:
        torch.manual_seed(0)
        t = time.time()
        ref = (RefLSegNet("clip_vitl16_384") if kind == "vit" else RefLSegRNNetZS()).eval()
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():  # non-trivial BatchNorm statistics
            for m in ref.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                    m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        ours = lseg.LSeg(lseg.get_config("lseg_vitl16_384" if kind == "vit" else "lseg_rn101_zs"))
        load_weights(ours, ref.state_dict())
        ours.eval().reference_numerics = True
        x = torch.randn(1, 3, 480, 480, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            if kind == "vit":
                labels = ["other", "dog", "grass", "sky", "a photo of a traffic light"]
                expected, got = ref(x, labels), ours(x, labels)
            else:
                expected = ref.forward_zs(x, ["aeroplane"])
                text = ours.encode_text(["others", "aeroplane"])[None]
                got = ours.score(ours.encode_image(x), text, size=(480, 480))
        d = (expected - got).abs()
        agree = (expected.argmax(1) == got.argmax(1)).float().mean().item()
        print(f"{kind}: max |diff| {d.max().item():.3g}, mean {d.mean().item():.3g}, bit-identical "
              f"{torch.equal(expected, got)}, argmax agreement {agree:.4%} ({time.time() - t:.0f} s)")
        ok &= d.max().item() <= 1e-3
        del ref, ours
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["vit", "rn"]))
