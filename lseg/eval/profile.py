"""Where the time of one forward goes (``lseg bench --profile``): each submodule's own time (children
subtracted; wall clock around each call, synchronised on a GPU), summed by component (:data:`COMPONENTS`),
averaged over the timed forwards after a warm-up, for one precision in a fresh process."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

#: Component names in the order they are printed.
COMPONENTS = (
    "ViT matmuls (qkv, proj, MLP)", "ViT attention core", "ViT LayerNorms", "ViT other (GELU, residuals, readout)",
    "ViT patch embedding", "decoder reassemble", "decoder 3x3 convs (layer_rn)", "decoder fusion blocks",
    "decoder other", "head (1x1 conv) and spatial block", "text encoder",
    "outside modules (fused head, similarity, upsampling)",
)


def component(name: str, module: nn.Module) -> str:
    """The component a submodule's own time counts to (by its qualified name and type)."""
    from torch import nn

    from lseg.models.precision import Int8Linear

    if name.startswith("text_encoder"):
        return "text encoder"
    if name.startswith("backbone"):
        if isinstance(module, (nn.Linear, nn.Conv1d, Int8Linear)) and "patch_embed" not in name:
            return "ViT matmuls (qkv, proj, MLP)"
        if isinstance(module, nn.LayerNorm):
            return "ViT LayerNorms"
        if type(module).__name__.endswith("Attention"):
            return "ViT attention core"
        if "patch_embed" in name:
            return "ViT patch embedding"
        return "ViT other (GELU, residuals, readout)"
    for prefix, what in (("decoder.reassemble", "decoder reassemble"), ("decoder.layer_rn", "decoder 3x3 convs (layer_rn)"),
                         ("decoder.fusion", "decoder fusion blocks"), ("decoder", "decoder other"),
                         (("pixel_proj", "spatial_block"), "head (1x1 conv) and spatial block")):
        if name.startswith(prefix):
            return what
    return "outside modules (fused head, similarity, upsampling)"


def profile_forward(model: Any, images: Any, labels: list[str], repeats: int = 3) -> dict[str, float]:
    """Seconds per forward of ``model(images, labels)`` by component (module docstring)."""
    import torch

    cuda = images.device.type == "cuda"
    totals: dict[str, float] = defaultdict(float)
    stack: list[list[Any]] = []  # [component, start, children's time]

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def pre(what: str) -> Any:
        def hook(_module: Any, _inputs: Any) -> None:
            sync()
            stack.append([what, time.perf_counter(), 0.0])
        return hook

    def post(_module: Any, _inputs: Any, _output: Any) -> None:
        sync()
        what, start, children = stack.pop()
        spent = time.perf_counter() - start
        totals[what] += spent - children
        if stack:
            stack[-1][2] += spent

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(pre(component(name, module))))
        handles.append(module.register_forward_hook(post))
    try:
        with torch.inference_mode():
            model(model.normalize(images), labels)  # warm-up
            totals.clear()
            for _ in range(repeats):
                model(model.normalize(images), labels)
    finally:
        for h in handles:
            h.remove()
    return {k: totals.get(k, 0.0) / repeats for k in COMPONENTS}


def run(model_name: str, checkpoint: str | None, precision: str, size: int, device: str, repeats: int,
        threads: int) -> dict[str, float]:
    """One precision's profile in this process (``lseg bench --profile`` runs each in a fresh one)."""
    import numpy as np
    import torch

    from lseg.eval.benchmark import LABELS, _build, _photo

    torch.set_num_threads(threads)
    model = _build(model_name, checkpoint, device, precision)
    image = torch.from_numpy(np.stack([_photo(size, 0)])).permute(0, 3, 1, 2).to(device)
    out = profile_forward(model, image, LABELS, repeats)
    out["precision"] = model.precision if precision != "reference" else "reference"  # type: ignore[assignment]
    return out


def format_profile(profiles: dict[str, dict[str, float]]) -> str:
    """One table: a row per component, ms and share per precision."""
    names = list(profiles)
    header = f"{'component':<54}" + "".join(f"{n + ' ms':>14}{'share':>8}" for n in names)
    lines = [header]
    totals = {n: sum(v for k, v in profiles[n].items() if k in COMPONENTS) for n in names}
    for comp in (*COMPONENTS, "total"):
        row = f"{comp:<54}"
        for n in names:
            v = totals[n] if comp == "total" else profiles[n][comp]
            row += f"{v * 1000:>14.1f}{v / totals[n]:>8.1%}" if totals[n] else f"{'-':>14}{'-':>8}"
        lines.append(row)
    return "\n".join(lines)


if __name__ == "__main__":  # one precision, in a fresh process
    from lseg.eval.benchmark import child_main

    child_main(run)
