"""Parity against the official lang-seg code itself (not a port): max |diff| and argmax agreement.

The oracle is the real ``isl-org/lang-seg`` network code run with the timm it pins (0.4.12) and
OpenAI's CLIP package. Neither is part of this repository: they live in two folders outside it,
which this script puts first on ``sys.path`` of a child process (timm 0.4.12 cannot share a process
with the venv's timm 1.x). Set them up once::

    # the official code (any checkout of isl-org/lang-seg; only modules/models/*.py are imported)
    git clone https://github.com/isl-org/lang-seg /work/oracle/lang-seg
    # timm 0.4.12 into its own folder (no dependencies: torch/torchvision come from the venv)
    pip install --no-deps --target /work/oracle/timm0412 timm==0.4.12
    # OpenAI's CLIP (imported as ``clip`` by the official code) must be importable: ``pip install openai-clip``

and run, from the repository root::

    export LSEG_OFFICIAL_SRC=/work/oracle/lang-seg LSEG_TIMM0412=/work/oracle/timm0412
    python scripts/official_parity.py                      # every family, 480x480, all three modes
    python scripts/official_parity.py demo fss_rn101       # some families
    python scripts/official_parity.py --tiny               # tiny widths (seconds; what the test runs)
    python scripts/official_parity.py vitb32_a1 --layers   # also each intermediate: the first divergence
    # --official-src/--timm0412 instead of the variables; --size, --batch, --threads, --modes, --seed

Per family, the child process builds the official network (``LSegNet``, ``LSegNetZS`` or
``LSegRNNetZS``) from its seed, with ``clip.load`` answered by OpenAI's ``clip.model.CLIP`` in fp16
(what ``clip.load(device="cuda")`` returns; there are no downloads, the weights are random) and
``timm.create_model``/``torchvision``'s ``resnet101`` asked for no pretrained weights. BatchNorm
statistics and affine parameters, LayerNorm parameters and every bias outside CLIP are then
randomised (seeded), so that no op can hide behind a zero or a one. It saves its state dict with the
Lightning ``net.`` prefix (the layout of the released checkpoints), the input and its logits (and,
with ``--layers``, the intermediates) under a temporary folder. This process loads that state dict
into lseg through its own key map (:func:`lseg.pretrained.checkpoints.load_weights`), runs the same input in
each numerics mode and prints the comparison. Both processes use the same ``--threads``.

Families (the released checkpoints' networks): ``demo`` (ViT-L/16 ``LSegNet``, the demo/ADE20K
model), ``fss_l16`` (ViT-L/16 ``LSegNetZS``), ``fss_rn101`` (ResNet-101 ``LSegRNNetZS``), and
``vitb32_a0``/``vitb32_a1``/``vitb32_a2`` (ViT-B/32 ``LSegNet`` with arch_option 0, 1 and 2,
block_depth 2). Exit status 0 when every ``reference`` run is bit-identical (max |diff| 0.0).

Full size at 480x480 on 2 CPU threads, three modes: 60-90 s per ViT-L/16 family, 25-50 s for the
others (~5 minutes for all six), a few GB of memory; the temporary files (up to ~2 GB for ViT-L/16)
are deleted at once. ``--tiny`` keeps the depths, hooks and the official code's shape logic but
shrinks the widths (ViT 96-d with two 48-wide heads, CLIP text 32-d, decoder 16-d): seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ENV_SRC, ENV_TIMM = "LSEG_OFFICIAL_SRC", "LSEG_TIMM0412"

# name: how the official code builds it, and the lseg registry name
FAMILIES: dict[str, dict] = {
    "demo": {"net": "LSegNet", "backbone": "clip_vitl16_384", "arch_option": 0, "lseg": "lseg_vitl16_384"},
    "fss_l16": {"net": "LSegNetZS", "backbone": "clip_vitl16_384", "arch_option": 0, "lseg": "lseg_vitl16_384"},
    "fss_rn101": {"net": "LSegRNNetZS", "backbone": "clip_resnet101", "arch_option": 0, "lseg": "lseg_rn101_zs"},
    "vitb32_a0": {"net": "LSegNet", "backbone": "clip_vitb32_384", "arch_option": 0, "lseg": "lseg_vitb32_384"},
    "vitb32_a1": {"net": "LSegNet", "backbone": "clip_vitb32_384", "arch_option": 1, "block_depth": 2,
                  "activation": "lrelu", "lseg": "lseg_vitb32_384"},
    "vitb32_a2": {"net": "LSegNet", "backbone": "clip_vitb32_384", "arch_option": 2, "block_depth": 2,
                  "activation": "tanh", "lseg": "lseg_vitb32_384"},
}
LABELS = ["other", "dog", "grass", "sky", "a photo of a traffic light"]  # LSegNet label set
ZS_CLASSES = ["aeroplane", "dog", "pottedplant"]  # zero-shot: ['others', class] per sample

# --tiny: the same official code with narrower layers (set through the official builders' arguments)
# head width 48: the scale 48**-0.5 is not a power of two, so scaling q before the product (timm 1.x)
# and the scores after it (timm 0.4.12) round differently: the tiny run sees that op order
TINY_VIT = {"embed_dim": 96, "num_heads": 2}
TINY_REASSEMBLE = {"clip_vitl16_384": [8, 16, 32, 32], "clip_vitb32_384": [8, 16, 24, 32]}
TINY_FEATURES = 16
TINY_TEXT = {"width": 32, "layers": 2, "heads": 2}  # embed_dim stays 512 (the official head1 is 512 wide)
TINY_RESNET = {"layers": (1, 1, 1, 1), "width_per_group": 8}
CLIP_VITB32 = {"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768,
               "vision_patch_size": 32, "context_length": 77, "vocab_size": 49408, "transformer_width": 512,
               "transformer_heads": 8, "transformer_layers": 12}


def _zs_classes(batch: int) -> list[int]:
    """The zero-shot class index of each sample (``class_info`` of the official forward)."""
    return [i % len(ZS_CLASSES) for i in range(batch)]


def oracle_paths(src: str | None = None, timm0412: str | None = None) -> tuple[Path, Path] | str:
    """The two oracle folders (arguments, else ``$LSEG_OFFICIAL_SRC``/``$LSEG_TIMM0412``), or why not."""
    src = src or os.environ.get(ENV_SRC)
    timm0412 = timm0412 or os.environ.get(ENV_TIMM)
    if not src or not timm0412:
        return f"set {ENV_SRC} (a lang-seg checkout) and {ENV_TIMM} (pip install --target DIR timm==0.4.12)"
    s, t = Path(src), Path(timm0412)
    if not (s / "modules" / "models" / "lseg_net.py").is_file():
        return f"{s} has no modules/models/lseg_net.py (not a lang-seg checkout)"
    if not (t / "timm" / "version.py").is_file() or "0.4.12" not in (t / "timm" / "version.py").read_text():
        return f"{t} holds no timm 0.4.12"
    return s, t


# =============================================================================== child: the official code
def _child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    sys.path[:0] = [spec["timm0412"], spec["src"]]
    torch.set_num_threads(spec["threads"])
    warnings.simplefilter("ignore")
    import clip
    import timm
    import torchvision.models
    from clip.model import CLIP, convert_weights
    from torch import nn

    assert timm.__version__ == "0.4.12", timm.__file__
    fam, tiny = FAMILIES[spec["family"]], spec["tiny"]

    clip_dims = dict(CLIP_VITB32)
    if tiny:
        clip_dims.update(vision_layers=1, vision_width=64, image_resolution=32,
                         transformer_width=TINY_TEXT["width"], transformer_layers=TINY_TEXT["layers"],
                         transformer_heads=TINY_TEXT["heads"])

    def clip_load(name, device="cuda", jit=False):  # clip.load(device="cuda") keeps the fp16 weights
        assert name == "ViT-B/32", name
        model = CLIP(**clip_dims)
        convert_weights(model)
        return model.eval(), None

    clip.load = clip_load
    create_model = timm.create_model

    def create_no_download(name, pretrained=False, **kw):
        if not tiny:
            return create_model(name, pretrained=False, **kw)
        from timm.models.vision_transformer import _create_vision_transformer

        patch, depth = {"vit_large_patch16_384": (16, 24), "vit_base_patch32_384": (32, 12)}[name]
        return _create_vision_transformer(name, pretrained=False, patch_size=patch, depth=depth, **TINY_VIT, **kw)

    timm.create_model = create_no_download
    resnet101 = torchvision.models.resnet101

    def resnet_no_download(pretrained=False, **kw):
        if tiny:
            from torchvision.models.resnet import Bottleneck, ResNet
            return ResNet(Bottleneck, list(TINY_RESNET["layers"]), width_per_group=TINY_RESNET["width_per_group"])
        return resnet101(weights=None)

    torchvision.models.resnet101 = resnet_no_download
    zs = fam["net"] != "LSegNet"
    vit_mod = __import__("modules.models.lseg_vit" + ("_zs" if zs else ""), fromlist=["x"])
    blocks_mod = __import__("modules.models.lseg_blocks" + ("_zs" if zs else ""), fromlist=["x"])
    if tiny:  # narrower reassemble/scratch: override the official builders' width arguments only
        widths = TINY_REASSEMBLE.get(fam["backbone"])
        for fn_name in ("_make_vit_b16_backbone", "_make_vit_b32_backbone"):
            fn = getattr(vit_mod, fn_name, None)
            if fn is not None:
                def narrow(model, *a, _fn=fn, **kw):
                    kw.update(features=widths, vit_features=model.embed_dim)
                    return _fn(model, *a, **kw)
                setattr(vit_mod, fn_name, narrow)
        make_scratch = blocks_mod._make_scratch
        blocks_mod._make_scratch = lambda in_shape, out_shape, **kw: make_scratch(widths or in_shape, out_shape, **kw)

    torch.manual_seed(spec["seed"])
    kwargs = {"backbone": fam["backbone"], "features": TINY_FEATURES if tiny else 256, "arch_option": fam["arch_option"],
              "block_depth": fam.get("block_depth", 0), "activation": fam.get("activation", "lrelu")}
    if fam["net"] == "LSegNet":
        from modules.models.lseg_net import LSegNet
        net = LSegNet(labels=LABELS, **kwargs)
    else:
        from modules.models import lseg_net_zs
        net = getattr(lseg_net_zs, fam["net"])(ZS_CLASSES, use_pretrained=False, **kwargs)
    net.eval()
    g = torch.Generator().manual_seed(spec["seed"] + 1)
    with torch.no_grad():  # no op may hide behind a zero bias or a unit scale
        for name, m in net.named_modules():
            if name.startswith("clip_pretrained"):
                continue
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=g) * 0.1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.02)

    acts: dict[str, torch.Tensor] = {}
    if spec["layers"]:
        def keep(key, pre=False):
            if pre:
                return lambda mod, inp: acts.__setitem__(key, inp[0].detach().clone())
            return lambda mod, inp, out: acts.__setitem__(key, out.detach().clone())

        p, s = net.pretrained, net.scratch
        if hasattr(p, "model"):
            p.model.pos_drop.register_forward_hook(keep("embed"))
            for i, blk in enumerate(p.model.blocks):
                blk.norm1.register_forward_hook(keep(f"block{i}.norm1"))
                blk.attn.register_forward_hook(keep(f"block{i}.attn"))
                blk.mlp.fc1.register_forward_hook(keep(f"block{i}.fc1"))
                blk.mlp.act.register_forward_hook(keep(f"block{i}.act"))
                blk.register_forward_hook(keep(f"block{i}"))
            for n in range(1, 5):
                pp = getattr(p, f"act_postprocess{n}")
                pp[0].register_forward_hook(keep(f"readout{n}"))
                pp[3].register_forward_hook(keep(f"project{n}"))
                pp[-1].register_forward_hook(keep(f"reassemble{n}"))
        else:
            for n in range(1, 5):
                getattr(p, f"layer{n}").register_forward_hook(keep(f"trunk{n}"))
        for n in range(1, 5):
            getattr(s, f"layer{n}_rn").register_forward_hook(keep(f"layer{n}_rn"))
            getattr(s, f"refinenet{n}").register_forward_hook(keep(f"refinenet{n}"))
        s.head1.register_forward_hook(keep("head1"))
        s.output_conv.register_forward_pre_hook(keep("logits_half", pre=True))

    x = torch.randn(spec["batch"], 3, *spec["size"], generator=torch.Generator().manual_seed(7))
    times = []
    with torch.no_grad():
        for _ in range(1 + spec.get("repeats", 0)):  # the first call warms up when repeats are asked
            t = time.perf_counter()
            logits = net(x, LABELS) if fam["net"] == "LSegNet" else net(x, _zs_classes(spec["batch"]))
            times.append(time.perf_counter() - t)
    out = Path(spec["out"])
    torch.save({"x": x, "logits": logits, "acts": acts, "forward_s": times[0], "times": times[1:]},
               out / "official.pt")
    if not spec.get("repeats"):
        torch.save({"net." + k: v for k, v in net.state_dict().items()}, out / "state_dict.pt")


# =============================================================================== parent: lseg
def lseg_config(family: str, tiny: bool):
    """The lseg config whose state dict the official family's (tiny or full) network fills."""
    import lseg
    from lseg.models.config import ResNetConfig, TextEncoderConfig

    fam = FAMILIES[family]
    cfg = lseg.get_config(fam["lseg"]).replace(
        arch_option=fam["arch_option"], block_depth=fam.get("block_depth", 0), activation=fam.get("activation", "lrelu"),
    )
    if not tiny:
        return cfg
    b = cfg.backbone
    if isinstance(b, ResNetConfig):
        backbone = b.__class__(layers=TINY_RESNET["layers"], width_per_group=TINY_RESNET["width_per_group"])
    else:
        backbone = b.__class__(
            timm_name=b.timm_name, hooks=b.hooks, reassemble_channels=tuple(TINY_REASSEMBLE[fam["backbone"]]),
            img_size=b.img_size, **TINY_VIT,
        )
    return cfg.replace(backbone=backbone, features=TINY_FEATURES, text=TextEncoderConfig(**TINY_TEXT))


def _hw(size: int | str | tuple[int, int]) -> tuple[int, int]:
    """480 -> (480, 480); "480x640" -> (480, 640) (height x width)."""
    if isinstance(size, tuple):
        return size
    h, _, w = str(size).partition("x")
    return int(h), int(w or h)


def run_official(family: str, *, src: Path, timm0412: Path, tiny: bool = False, size: int | str = 480, batch: int = 1,
                 threads: int = 2, seed: int = 0, layers: bool = False, workdir: Path | None = None,
                 repeats: int = 0) -> Path:
    """Run the official network of ``family`` in a child process; returns the folder of its files
    (with ``repeats``: timed forwards after a warm-up, in ``official.pt``'s ``times``; no state dict)."""
    out = Path(tempfile.mkdtemp(prefix=f"official-{family}-", dir=workdir))
    spec = {"family": family, "tiny": tiny, "size": _hw(size), "batch": batch, "threads": threads, "seed": seed,
            "layers": layers, "src": str(src), "timm0412": str(timm0412), "out": str(out), "repeats": repeats}
    (out / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # lseg and the venv's timm stay out
    res = subprocess.run([sys.executable, __file__, "--child", str(out / "spec.json")], env=env,
                         capture_output=True, text=True, check=False)
    if res.returncode:
        shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError(f"official {family} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return out


def _lseg_hooks(model, acts: dict[str, torch.Tensor]) -> list:
    def keep(key):
        return lambda mod, inp, out: acts.__setitem__(key, out.detach().clone())

    from lseg.models.backbone import ViTBackbone

    hs, bb, dec = [], model.backbone, model.decoder
    if isinstance(bb, ViTBackbone):
        hs.append(bb.vit.pos_drop.register_forward_hook(keep("embed")))
        for i, blk in enumerate(bb.vit.blocks):
            hs += [blk.norm1.register_forward_hook(keep(f"block{i}.norm1")),
                   blk.attn.register_forward_hook(keep(f"block{i}.attn")),
                   blk.mlp.fc1.register_forward_hook(keep(f"block{i}.fc1")),
                   blk.mlp.act.register_forward_hook(keep(f"block{i}.act")),
                   blk.register_forward_hook(keep(f"block{i}"))]
        for n, r in enumerate(dec.reassemble, 1):
            hs += [r.readout.register_forward_hook(keep(f"readout{n}")),
                   r.project.register_forward_hook(keep(f"project{n}")),
                   r.register_forward_hook(keep(f"reassemble{n}"))]
    else:
        for n, layer in enumerate((bb.resnet.layer1, bb.resnet.layer2, bb.resnet.layer3, bb.resnet.layer4), 1):
            hs.append(layer.register_forward_hook(keep(f"trunk{n}")))
    for n in range(1, 5):
        hs += [dec.layer_rn[n - 1].register_forward_hook(keep(f"layer{n}_rn")),
               dec.fusion[n - 1].register_forward_hook(keep(f"refinenet{n}"))]
    hs.append(model.pixel_proj.register_forward_hook(keep("head1")))
    return hs


def compare(family: str, *, src: Path, timm0412: Path, tiny: bool = False, size: int | str = 480, batch: int = 1,
            threads: int = 2, seed: int = 0, modes: tuple[str, ...] = ("reference", "plain", "fast"),
            layers: bool = False, workdir: Path | None = None) -> dict[str, dict]:
    """Official vs lseg logits of ``family`` in each numerics mode: ``{mode: {max_abs, mean_abs,
    argmax_agree, identical, first_divergence}}`` (``first_divergence`` with ``layers`` only)."""
    import lseg
    from lseg.pretrained.checkpoints import load_weights

    out = run_official(family, src=src, timm0412=timm0412, tiny=tiny, size=size, batch=batch, threads=threads,
                       seed=seed, layers=layers, workdir=workdir)
    try:
        official = torch.load(out / "official.pt")
        model = lseg.LSeg(lseg_config(family, tiny))
        load_weights(model, torch.load(out / "state_dict.pt", mmap=True))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    model.eval()
    x, expected = official["x"], official["logits"]
    zs = FAMILIES[family]["net"] != "LSegNet"
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # as the child: CPU kernels may split (and round) by thread count
    try:
        return {mode: _run_mode(model, mode, x, expected, zs=zs, size=_hw(size), layers=layers,
                                official_acts=official["acts"]) for mode in modes}
    finally:
        torch.set_num_threads(previous_threads)


def _run_mode(model, mode: str, x: torch.Tensor, expected: torch.Tensor, *, zs: bool, size: tuple[int, int],
              layers: bool, official_acts: dict[str, torch.Tensor]) -> dict:
    model.set_numerics(mode)
    acts: dict[str, torch.Tensor] = {}
    hooks = _lseg_hooks(model, acts) if layers else []
    with torch.no_grad():
        if zs:
            text = torch.stack([model.encode_text(["others", ZS_CLASSES[i]]) for i in _zs_classes(len(x))])
            got = model.score(model.encode_image(x), text, size=size)
        else:
            got = model(x, LABELS)
    for h in hooks:
        h.remove()
    d = (got - expected).abs()
    r = {"max_abs": d.max().item(), "mean_abs": d.mean().item(), "identical": torch.equal(got, expected),
         "argmax_agree": (got.argmax(1) == expected.argmax(1)).float().mean().item()}
    if layers:
        r["layers"] = []
        for key, ref in official_acts.items():
            if key in acts and acts[key].shape == ref.shape:
                r["layers"].append((key, (acts[key] - ref).abs().max().item()))
        r["first_divergence"] = next((k for k, v in r["layers"] if v != 0.0), None)
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("families", nargs="*", help=f"some of {', '.join(FAMILIES)} (default: all)")
    ap.add_argument("--official-src", help=f"lang-seg checkout (default ${ENV_SRC})")
    ap.add_argument("--timm0412", help=f"folder holding timm 0.4.12 (default ${ENV_TIMM})")
    ap.add_argument("--tiny", action="store_true", help="narrow layers (seconds instead of minutes)")
    ap.add_argument("--size", default="480", help="input side, or HxW (multiples of 32)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="reference,plain,fast")
    ap.add_argument("--layers", action="store_true", help="compare every intermediate, print the first divergence")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    paths = oracle_paths(args.official_src, args.timm0412)
    if isinstance(paths, str):
        print(paths, file=sys.stderr)
        return 2
    ok = True
    print(f"{'family':10} {'mode':9} {'max |diff|':>11} {'mean |diff|':>11} {'argmax agree':>12}  identical")
    for fam in args.families or list(FAMILIES):
        t = time.time()
        res = compare(fam, src=paths[0], timm0412=paths[1], tiny=args.tiny, size=args.size, batch=args.batch,
                      threads=args.threads, seed=args.seed, modes=tuple(args.modes.split(",")), layers=args.layers)
        for mode, r in res.items():
            print(f"{fam:10} {mode:9} {r['max_abs']:11.3g} {r['mean_abs']:11.3g} {r['argmax_agree']:12.5%}  "
                  f"{r['identical']}")
            if args.layers:
                print(f"    first divergence: {r['first_divergence']}")
                for key, v in r["layers"]:
                    if v != 0.0:
                        print(f"      {key:20} {v:.3g}")
            if mode == "reference":
                ok &= r["identical"]
        print(f"    ({time.time() - t:.0f} s)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
