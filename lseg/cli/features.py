"""``lseg features`` (dense pixel embeddings: .npy files or a feature store), ``lseg query`` and
``lseg store`` (what a feature store holds, its scene PCA, other layouts)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Literal

from lseg.cli import common
from lseg.cli.common import RANDOM_WEIGHTS_SEED, add_model_args, add_predictor_args, finish_batch
from lseg.errors import LSegError
from lseg.options import Flag, add_config_args, config_from_args

__all__ = [
    "FEATURES_FLAGS",
    "FEATURES_INPUT_FLAGS",
    "QUERY_FLAGS",
    "STORE_EXPORT_FLAGS",
    "STORE_FLAGS",
    "STORE_INFO_FLAGS",
    "STORE_REDUCE_FLAGS",
    "FeaturesInputs",
    "FeaturesOptions",
    "QueryOptions",
    "StoreExportOptions",
    "StoreInfoOptions",
    "StoreOptions",
    "StoreReduceOptions",
    "register",
]


@dataclasses.dataclass(frozen=True)
class FeaturesOptions:
    """What ``lseg features`` writes, from which frames.

    Attributes:
        out: the output folder.
        dtype: the stored dtype (``--format npy``).
        resolution: ``half``, ``input``, ``original`` or ``HxW`` (:func:`lseg.features.parse_resolution`);
            ``None``: the network's output (the preset's own with ``--format store``).
        pca: also write a 3-component PCA picture per image (``--format npy``).
        fps, every_n: videos: sample at most ``fps`` frames/s, or every n-th frame.
        shard: ``k/M``: only the inputs ``i`` with ``i % M == k``.
        overwrite: redo every input, even those already done.
        quiet: no progress bar.
    """

    out: str
    dtype: Literal["float16", "float32"] = "float16"
    resolution: str | None = None
    pca: bool = False
    fps: float | None = None
    every_n: int | None = None
    shard: str | None = None
    overwrite: bool = False
    quiet: bool = False


@dataclasses.dataclass(frozen=True)
class FeaturesInputs:
    """What ``lseg features`` reads: image / video files or folders (kept apart from
    :class:`FeaturesOptions`, the settings)."""

    inputs: tuple[str, ...]


#: The command-line side of :class:`FeaturesInputs`.
FEATURES_INPUT_FLAGS = {"inputs": Flag("image / video files or folders", positional=True, nargs="+")}


#: The command-line side of :class:`FeaturesOptions`.
FEATURES_FLAGS = {
    "out": Flag("output folder", aliases=("-o",), required=True),
    "dtype": Flag("stored dtype"),
    "resolution": Flag("half: the network's output (default; with --format store: the preset's own); input: "
                       "the working size; original: the image's size; HxW: that size (upsampled bilinearly and "
                       "re-normalised)", metavar="half|input|original|HxW"),
    "pca": Flag("also write <stem>_pca.png (3 principal components)"),
    "fps": Flag("videos: sample at most this many frames/s", exclusive="frames"),
    "every_n": Flag("videos: every n-th frame", exclusive="frames"),
    "shard": Flag("do only inputs i with i %% M == k (split a collection across machines)", metavar="k/M"),
    "overwrite": Flag("redo every input, even those already done"),
    "quiet": Flag("no progress bar", aliases=("-q",)),
}


@dataclasses.dataclass(frozen=True)
class StoreOptions:
    """How ``lseg features --format store`` extracts and stores (:mod:`lseg.features.store`).

    Attributes:
        format: ``npy`` (one file per image/frame) or ``store``.
        preset: the preprocessing recipe (:mod:`lseg.features.presets`).
        scales, flip: evaluator presets: other scales, with or without the mirrored image.
        reduce: also fit a K-d scene PCA and store the reduced maps.
        frames_per_shard: frames per shard file (and images per unit of work).
        engine: ``local``, or ``ray`` (Ray Data actors).
        workers, gpus_per_worker, ray_address: ``--engine ray``: actors, GPUs per actor, cluster.
    """

    format: Literal["npy", "store"] = "npy"
    preset: Literal["ours", "reference", "reference-ss", "openscene", "vlmaps"] = "ours"
    scales: tuple[float, ...] | None = None
    flip: bool | None = None
    reduce: int | None = None
    frames_per_shard: int = 16
    engine: Literal["local", "ray"] = "local"
    workers: int = 2
    gpus_per_worker: float = 0.0
    ray_address: str | None = None


#: The command-line side of :class:`StoreOptions`.
STORE_FLAGS = {
    "format": Flag("npy: one .npy per image/frame (default); store: one self-describing store "
                   "(fp16 safetensors shards + index.json) that `lseg query` reads"),
    "preset": Flag("preprocessing recipe (lseg.features.presets): ours (default), the reference evaluator "
                   "(6 scales + flip, or -ss: single scale + flip), OpenScene's or VLMaps' extractor"),
    "scales": Flag("evaluator presets: comma-separated scales (e.g. 0.75,1,1.25,1.75)"),
    "flip": Flag("evaluator presets: add the mirrored image's map"),
    "reduce": Flag("also fit a K-d scene PCA over all frames (streaming) and store the reduced maps", metavar="K"),
    "frames_per_shard": Flag("frames per shard file (and images per unit)"),
    "engine": Flag("ray: spread the units over Ray Data actors (pip install 'lseg[scale]')"),
    "workers": Flag("--engine ray: actors (one model each)"),
    "gpus_per_worker": Flag("--engine ray: GPUs per actor"),
    "ray_address": Flag("--engine ray: cluster address (default: a local one)"),
}


def _query_labels(value: str | list[str]) -> tuple[str, ...]:
    """The positional labels (``validate_args`` has parsed them into a list already)."""
    from lseg.labels import parse_labels

    return tuple(parse_labels(value))


@dataclasses.dataclass(frozen=True)
class QueryOptions:
    """``lseg query`` (the model: :class:`~lseg.cli.common.ModelSource`, by default the store's).

    Attributes:
        store: a store written by ``lseg features --format store``.
        labels: the labels, parsed (:func:`lseg.labels.parse_labels`).
        out: the output folder.
        frames: ``a:b`` (frame ids) or a comma-separated list of ids / keys; ``None``: all.
        reduced: score the reduced maps (decoded to the text space).
        heatmaps, scores: also write probability heatmaps / per-label probabilities.
        templates: prompt templates with one ``{}``; empty: the raw label.
    """

    store: str
    labels: tuple[str, ...]
    out: str
    frames: str | None = None
    reduced: bool = False
    heatmaps: bool = False
    scores: bool = False
    templates: tuple[str, ...] = ()


#: The command-line side of :class:`QueryOptions`.
QUERY_FLAGS = {
    "store": Flag("a store written by `lseg features --format store`", positional=True),
    "labels": Flag('comma-separated labels, e.g. "chair, table, other"', positional=True, convert=_query_labels),
    "out": Flag("output folder", aliases=("-o",), required=True),
    "frames": Flag("a:b (frame ids) or a comma-separated list of ids / keys"),
    "reduced": Flag("score the reduced maps (decoded to the text space)"),
    "heatmaps": Flag("also write one probability heatmap per label"),
    "scores": Flag("also write per-label probabilities (.npz, fp16)"),
    "templates": Flag("prompt template with {} (repeatable)", name="template", repeat=True,
                      convert=lambda v: tuple(v or ())),
}


@dataclasses.dataclass(frozen=True)
class StoreInfoOptions:
    """``lseg store info``: the store to describe."""

    store: str


@dataclasses.dataclass(frozen=True)
class StoreReduceOptions:
    """``lseg store reduce``.

    Attributes:
        store: the feature store.
        k: the reduced dimension (scene PCA components).
        overwrite: replace a reduction of another K.
        quiet: no progress bar.
    """

    store: str
    k: int
    overwrite: bool = False
    quiet: bool = False


@dataclasses.dataclass(frozen=True)
class StoreExportOptions:
    """``lseg store export``.

    Attributes:
        store: the feature store.
        layout: the per-image layout written.
        out: the output folder.
        reduced: the reduced maps instead of the full ones.
        overwrite: replace files already there.
    """

    store: str
    layout: Literal["openscene", "feature3dgs"]
    out: str
    reduced: bool = False
    overwrite: bool = False


#: The command-line side of the ``lseg store`` actions (their help texts are as they were: some none).
STORE_INFO_FLAGS = {"store": Flag("", positional=True)}
STORE_REDUCE_FLAGS = {
    "store": Flag("", positional=True),
    "k": Flag("", positional=True),
    "overwrite": Flag("replace a reduction of another K"),
    "quiet": Flag("", aliases=("-q",)),
}
STORE_EXPORT_FLAGS = {
    "store": Flag("", positional=True),
    "layout": Flag("", required=True),
    "out": Flag("", aliases=("-o",), required=True),
    "reduced": Flag("the reduced maps instead of the full ones"),
    "overwrite": Flag(""),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the commands of this module to the ``lseg`` parser."""
    p = sub.add_parser(
        "features", help="export dense pixel embeddings for images and videos",
        description="One (D, h, w) .npy per image or sampled video frame (<video>/<frame:06d>.npy) and a "
        "features.json manifest; finished outputs are skipped on re-runs. Shard with torchrun -m lseg.cli "
        "(--nproc_per_node=N: input i goes to rank i % N) and/or --shard k/M across machines.",
    )
    add_config_args(p, FeaturesInputs, FEATURES_INPUT_FLAGS)
    add_config_args(p, FeaturesOptions, FEATURES_FLAGS)
    g = p.add_argument_group("feature store (--format store; lseg.features.store)")
    add_config_args(g, StoreOptions, STORE_FLAGS)
    add_model_args(p, pretrained_default=True)
    add_predictor_args(p)
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser(
        "query", help="label maps / similarity heatmaps from a feature store (no image encoder)",
        description="Scores every stored frame against the labels with the store's model's text encoder: "
        "OUT/<key>_labels.png, and optionally heatmaps and per-label probabilities.",
    )
    add_config_args(p, QueryOptions, QUERY_FLAGS)
    add_model_args(p, required=False)
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("store", help="feature store tools: info, reduce, export to other layouts")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    q = ssub.add_parser("info", help="what a store holds and how it was made")
    add_config_args(q, StoreInfoOptions, STORE_INFO_FLAGS)
    q = ssub.add_parser("reduce", help="fit a K-d scene PCA over all frames and store the reduced maps")
    add_config_args(q, StoreReduceOptions, STORE_REDUCE_FLAGS)
    q = ssub.add_parser("export", help="write per-image files in the OpenScene or Feature 3DGS layout")
    add_config_args(q, StoreExportOptions, STORE_EXPORT_FLAGS)
    p.set_defaults(func=_cmd_store)


def _cmd_features(args: argparse.Namespace) -> int:
    from lseg.features import combine_shards, export_features, parse_resolution, parse_shard, torchrun_rank
    from lseg.jobs.records import model_identity

    opts: FeaturesOptions = config_from_args(FeaturesOptions, args, FEATURES_FLAGS)
    store: StoreOptions = config_from_args(StoreOptions, args, STORE_FLAGS)
    resolution = parse_resolution(opts.resolution) if opts.resolution else None  # fail before loading the model
    # options of the other format: refused before anything is created
    if store.format == "store" and (opts.dtype != "float16" or opts.pca):
        raise LSegError("--format store writes float16 maps; --dtype float32 and --pca are for --format npy")
    if store.format != "store" and (store.preset != "ours" or store.reduce or store.engine != "local"
                                    or store.scales or store.flip is not None):
        raise LSegError("--preset, --scales, --flip, --reduce and --engine need --format store")
    rank, world = torchrun_rank()
    part, parts = combine_shards(parse_shard(opts.shard) if opts.shard else None, (rank, world))
    if args.device is None and world > 1:  # torchrun on a multi-GPU machine: one GPU per process
        import torch

        if torch.cuda.is_available():
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    from lseg.io import check_writable, remove_stale_temp_files
    from lseg.jobs.claims import remove_stale_claims

    remove_stale_temp_files(opts.out)  # hidden temp files of a killed earlier run
    remove_stale_claims(opts.out)  # and its claims
    check_writable(opts.out)  # a read-only or forbidden folder: one error before the model loads
    if store.format == "store":
        return _features_store(args, opts, store, resolution, (part, parts), rank)
    predictor = common.make_predictor(args)
    inputs = list(config_from_args(FeaturesInputs, args, FEATURES_INPUT_FLAGS).inputs)
    report = export_features(
        predictor, inputs, opts.out, dtype=opts.dtype, overwrite=opts.overwrite, progress=not opts.quiet,
        resolution=resolution or "half", pca=opts.pca, fps=opts.fps, every_n=opts.every_n, shard=(part, parts),
        write_manifest=rank == 0, model_id=model_identity(args.checkpoint, args.random_weights, RANDOM_WEIGHTS_SEED),
    )
    return finish_batch(report, "features" if parts == 1 else f"features (part {part + 1}/{parts})")


def _features_store(args: argparse.Namespace, opts: FeaturesOptions, store: StoreOptions, resolution, shard: tuple[int, int], rank: int) -> int:  # type: ignore[no-untyped-def]
    """``lseg features --format store``: the self-describing store (lseg.features.store)."""
    from lseg.features.presets import FeatureExtractor, get_preset
    from lseg.features.store import StoreSettings, export_store

    preset = get_preset(store.preset)
    if store.scales or store.flip is not None:
        if preset.engine != "evaluator":
            raise LSegError(f"--scales and --flip apply to the evaluator presets, not {preset.name!r}")
        scales = store.scales or preset.scales
        flip = preset.flip if store.flip is None else store.flip
        preset = dataclasses.replace(preset, name=f"{preset.name}-custom", scales=scales, flip=flip)
    settings = StoreSettings(fps=opts.fps, every_n=opts.every_n, frames_per_shard=store.frames_per_shard,
                             batch_size=args.batch_size)
    extractor = FeatureExtractor(common.make_predictor(args), preset, resolution)
    checkpoint = getattr(args, "checkpoint", None)
    inputs = list(config_from_args(FeaturesInputs, args, FEATURES_INPUT_FLAGS).inputs)
    if store.engine == "ray":
        from lseg.features.ray_export import export_store_ray

        if shard[1] > 1:
            raise LSegError("--engine ray spreads the work itself: no --shard or torchrun")
        if store.ray_address:
            import ray

            ray.init(address=store.ray_address)
        report = export_store_ray(extractor, inputs, opts.out, num_workers=store.workers,
                                  num_gpus_per_worker=store.gpus_per_worker, settings=settings,
                                  checkpoint=checkpoint, overwrite=opts.overwrite, reduce=store.reduce)
    else:
        report = export_store(extractor, inputs, opts.out, settings=settings, checkpoint=checkpoint,
                              overwrite=opts.overwrite, progress=not opts.quiet, shard=shard,
                              write_manifest=rank == 0, reduce=store.reduce)
    return finish_batch(report, "features" if shard[1] == 1 else f"features (part {shard[0] + 1}/{shard[1]})")


# ---------------------------------------------------------------------------- query / store

def _cmd_query(args: argparse.Namespace) -> int:
    from lseg.features.query import query_store
    from lseg.features.store import FeatureStore, weights_sha256

    opts: QueryOptions = config_from_args(QueryOptions, args, QUERY_FLAGS)
    store = FeatureStore(opts.store)  # fail before loading the model
    labels = list(opts.labels)
    source = common.model_source_from_args(args)
    if not source.checkpoint and not source.random_weights:
        source = dataclasses.replace(source, checkpoint=store.manifest.get("checkpoint"))
        if not source.checkpoint:
            name = (store.manifest.get("model") or {}).get("name", "NAME")
            raise LSegError(f"{opts.store} records no checkpoint (made with --random-weights {name}): give "
                            f"--random-weights {name} (the same seeded network) or the --checkpoint of the weights")
    model = common.load_source_model(source)
    # the store hashed the weights as they ran: cast the same way before comparing
    model.set_precision(store.manifest.get("precision", "fp32"))
    if not source.random_weights and weights_sha256(model) != store.manifest["weights_sha256"]:
        raise LSegError(f"{source.checkpoint} is not the model that made {opts.store} (weights hash differs)")
    from lseg.inference.predictor import LSegPredictor

    text = LSegPredictor(model, templates=list(opts.templates) or None).embed_text(labels)
    frames = _parse_frames(opts.frames, len(store)) if opts.frames else None
    written = query_store(store, text, labels, opts.out, logit_scale=float(model.logit_scale), frames=frames,
                          reduced=opts.reduced, heatmaps=opts.heatmaps, scores=opts.scores)
    print(f"query: {len(written)} frames -> {opts.out}", file=sys.stderr)
    return 0


def _parse_frames(text: str, n: int) -> list[int | str]:
    """``a:b`` (ids a..b-1) or a comma-separated list of ids and keys."""
    if ":" in text and "," not in text:
        a, _, b = text.partition(":")
        try:
            return list(range(n))[slice(int(a) if a else None, int(b) if b else None)]
        except ValueError:
            raise LSegError(f"--frames must be a:b or a comma-separated list, got {text!r}") from None
    return [int(t) if t.strip().isdigit() else t.strip() for t in text.split(",") if t.strip()]


def _cmd_store(args: argparse.Namespace) -> int:
    from lseg.features.store import FeatureStore, export_layout, reduce_store

    if args.store_command == "reduce":
        r: StoreReduceOptions = config_from_args(StoreReduceOptions, args, STORE_REDUCE_FLAGS)
        red = reduce_store(r.store, r.k, overwrite=r.overwrite, progress=not r.quiet)
        print(json.dumps(red.summary(), indent=2))
    elif args.store_command == "export":
        e: StoreExportOptions = config_from_args(StoreExportOptions, args, STORE_EXPORT_FLAGS)
        written = export_layout(e.store, e.layout, e.out, reduced=e.reduced, overwrite=e.overwrite)
        print(f"store export: {len(written)} files -> {e.out}", file=sys.stderr)
    else:
        store = FeatureStore(config_from_args(StoreInfoOptions, args, STORE_INFO_FLAGS).store)
        m = store.manifest
        info = {"frames": len(store), "failed": len(store.index["failed"]), "extractor": m["extractor"],
                "model": m["model"]["name"], "precision": m.get("precision", "fp32"),
                "weights_sha256": m["weights_sha256"], "checkpoint": m["checkpoint"],
                "video_sampling": m["video_sampling"], "reduction": store.index.get("reduction")}
        print(json.dumps(info, indent=2))
    return 0

