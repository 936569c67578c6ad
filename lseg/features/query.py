"""Text queries over a feature store, without running the image encoder again.

For each frame: ``sim[k] = <f, t_k>`` (cosine similarity; stored maps are unit vectors, reduced ones
are decoded to the text space and re-normalised), ``label_map = argmax_k sim[k]`` (ties: lowest k),
and ``probs = softmax(logit_scale * sim)``: LSeg's head without its x2 upsampling, at the store's
resolution. Models with a spatial block (``arch_option`` 1/2) refine their logits with
convolutions; a query scores the plain similarity (logged once).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from lseg.errors import LSegError
from lseg.features.store import FeatureStore
from lseg.io import atomic_write

_logger = logging.getLogger(__name__)


def iter_similarities(
    store: FeatureStore, text: torch.Tensor, frames: Sequence[int | str] | None = None, *, reduced: bool = False
) -> Iterator[tuple[dict, torch.Tensor]]:
    """``(frame record, (K, H, W) float32 cosine similarities)`` per frame.

    Args:
        store: the store.
        text: (K, D) L2-normalised text embeddings (:meth:`lseg.LSegPredictor.embed_text`).
        frames: frame ids or keys (default: all).
        reduced: score the reduced maps, decoded (:meth:`FeatureStore.read_decoded`).
    """
    text = text.float().cpu()
    for frame in frames if frames is not None else range(len(store)):
        info = store.frames[store.frame_id(frame)]
        f = store.read_decoded(info["id"]) if reduced else torch.from_numpy(store.read(info["id"])).float()
        if f.shape[0] != text.shape[1]:
            raise LSegError(f"the store's features are {f.shape[0]}-d but the text embeddings {text.shape[1]}-d")
        yield info, torch.einsum("dhw,kd->khw", f, text)


def query_store(
    store: FeatureStore | str | os.PathLike[str],
    text: torch.Tensor,
    labels: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    logit_scale: float,
    frames: Sequence[int | str] | None = None,
    reduced: bool = False,
    heatmaps: bool = False,
    scores: bool = False,
) -> list[Path]:
    """Write ``OUT/<key>_labels.png`` per frame (:func:`lseg.viz.save_label_map`: palette PNG, 16-bit
    above 256 labels, the label names in its ``lseg:labels`` chunk), and with
    ``heatmaps`` one ``OUT/<key>_heat_<i>_<label>.png`` per label (viridis probability), with
    ``scores`` ``OUT/<key>_scores.npz`` (``probs`` float16 (K, H, W), ``labels``). Returns the label maps."""
    from lseg.viz import heatmap_path, save_label_map, save_scores
    from lseg.viz import heatmaps as make_heatmaps

    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    if len(labels) != text.shape[0]:
        raise LSegError(f"{len(labels)} labels but {text.shape[0]} text embeddings")
    if store.manifest["model"].get("arch_option") in (1, 2):
        _logger.warning("the store's model has a spatial block; the query scores the plain similarity")
    out = Path(out_dir)
    written = []
    for info, sim in iter_similarities(store, text, frames, reduced=reduced):
        base = out / info["key"]
        label_map = sim.argmax(0).numpy()
        target = base.with_name(base.name + "_labels.png")
        save_label_map(target, label_map, labels)  # with the label names, as `lseg segment` writes them
        written.append(target)
        if heatmaps or scores:
            probs = torch.softmax(sim * logit_scale, dim=0).numpy()
        if scores:
            save_scores(base.with_name(base.name + "_scores.npz"), probs, labels)
        if heatmaps:
            for i, (label, pic) in enumerate(make_heatmaps(probs, labels).items()):
                atomic_write(heatmap_path(base, i, label), lambda p, im=pic: im.save(p, format="PNG"))
    return written
