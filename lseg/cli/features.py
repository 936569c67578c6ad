"""``lseg features`` (dense pixel embeddings: .npy files or a feature store), ``lseg query`` and
``lseg store`` (what a feature store holds, its scene PCA, other layouts): writers of the batch
engine (:mod:`lseg.jobs.engine`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lseg.cli import common
from lseg.errors import LSegError
from lseg.features.options import (
    FeaturesOptions,
    QueryOptions,
    StoreExportOptions,
    StoreInfoOptions,
    StoreOptions,
    StoreReduceOptions,
    parse_resolution,
    parse_shard,
)
from lseg.inference.options import PredictorOptions, refuse_geometry
from lseg.options import add_options, option, options_from_args

if TYPE_CHECKING:
    from lseg.jobs.engine import Report

__all__ = ["FeaturesInputs", "register"]


@dataclass(frozen=True)
class FeaturesInputs:
    """What ``lseg features`` reads.

    Attributes:
        inputs: image / video files or folders.
    """

    inputs: tuple[str, ...] = option(positional=True, nargs="+")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features", help="export dense pixel embeddings for images and videos",
        description="One (D, h, w) .npy per image or sampled video frame (<video>/<frame:06d>.npy) and a "
        "features.json manifest, or one feature store (--format store); finished outputs are skipped on "
        "re-runs. Shard with torchrun -m lseg.cli (--nproc_per_node=N: input i goes to rank i % N) and/or "
        "--shard k/M across machines.",
    )
    add_options(p, FeaturesInputs)
    add_options(p, FeaturesOptions)
    add_options(p.add_argument_group("feature store (--format store; lseg.features.store)"), StoreOptions)
    common.add_model_args(p, pretrained_default=True)
    add_options(p, PredictorOptions, skip=("templates",))  # image features: no text
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser(
        "query", help="label maps / similarity heatmaps from a feature store (no image encoder)",
        description="Scores every stored frame against the labels with the store's model's text encoder: "
        "OUT/<key>_labels.png and its record <key>_labels.json, optionally heatmaps and per-label "
        "probabilities. A query with other labels redoes the frames and removes the old labels' files.",
    )
    add_options(p, QueryOptions)
    common.add_model_args(p, required=False)
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("store", help="feature store tools: info, reduce, export to other layouts")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    add_options(ssub.add_parser("info", help="what a store holds and how it was made"), StoreInfoOptions)
    reduce_help = "fit a K-d scene PCA over all frames and store the reduced maps"
    add_options(ssub.add_parser("reduce", help=reduce_help), StoreReduceOptions)
    export_help = "write per-image files in the OpenScene or Feature 3DGS layout"
    add_options(ssub.add_parser("export", help=export_help), StoreExportOptions)
    p.set_defaults(func=_cmd_store)


def _cmd_features(args: argparse.Namespace) -> int:
    from lseg.features.export import combine_shards, export_features, torchrun_rank

    inputs = options_from_args(FeaturesInputs, args).inputs
    opts: FeaturesOptions = options_from_args(FeaturesOptions, args)
    store: StoreOptions = options_from_args(StoreOptions, args)
    source = common.model_source_from_args(args)
    popts: PredictorOptions = options_from_args(PredictorOptions, args)
    # options of the other format: refused before anything is read or built
    if store.format == "store" and (opts.dtype != "float16" or opts.pca):
        raise LSegError("--format store writes float16 maps; --dtype float32 and --pca are for --format npy")
    if store.preset != "ours":
        refuse_geometry(popts, f"--preset {store.preset}")
    rank, world = torchrun_rank()
    part, parts = combine_shards(parse_shard(opts.shard) if opts.shard else None, (rank, world))
    if store.engine == "ray" and parts > 1:
        raise LSegError("--engine ray spreads the work itself: no --shard or torchrun")
    if source.device is None and world > 1:  # torchrun on a multi-GPU machine: one GPU per process
        import torch

        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
            source = dataclasses.replace(source, device=f"cuda:{local}")
    what = "features" if parts == 1 else f"features (part {part + 1}/{parts})"
    precision = common.resolved_precision(source, popts)
    run = {"overwrite": opts.overwrite, "progress": not opts.quiet, "shard": (part, parts),
           "write_manifest": rank == 0}
    if store.format == "store":
        return common.finish_batch(what, lambda: _features_store(args, inputs, opts, store, source, popts, precision,
                                                                 run))
    recipe = {"size": popts.size, "crop_size": popts.crop_size, "stride": popts.window_stride,
              "precision": precision}
    return common.finish_batch(what, lambda: export_features(
        lambda: common.make_predictor(args, source, popts), inputs, opts.out, model_id=source.identity(),
        recipe=recipe, dtype=opts.dtype, pca=opts.pca, resolution=opts.resolution or "half", fps=opts.fps,
        every_n=opts.every_n, **run))


def _features_store(args: argparse.Namespace, inputs: tuple[str, ...], opts: FeaturesOptions,
                    store: StoreOptions, source: common.ModelSource, popts: PredictorOptions,
                    precision: str, run: dict[str, Any]) -> Report:
    """``lseg features --format store``: the self-describing store (lseg.features.store)."""
    from lseg.features.presets import FeatureExtractor, describe, get_preset
    from lseg.features.store import StoreSettings, export_store
    from lseg.pretrained.released import portable

    preset = get_preset(store.preset)
    if store.scales or store.flip is not None:
        scales = store.scales or preset.scales
        flip = preset.flip if store.flip is None else store.flip
        preset = dataclasses.replace(preset, name=f"{preset.name}-custom", scales=scales, flip=flip)
    resolution = parse_resolution(opts.resolution) if opts.resolution else None
    settings = StoreSettings(fps=opts.fps, every_n=opts.every_n, frames_per_shard=store.frames_per_shard,
                             batch_size=popts.batch_size)

    model, checkpoint = {**source.identity(), "precision": precision}, portable(source.checkpoint)  # query: any cwd

    def extractor() -> FeatureExtractor:
        return FeatureExtractor(common.make_predictor(args, source, popts), preset, resolution)

    description = describe(preset, resolution, (popts.size, popts.crop_size, popts.window_stride))
    if store.engine == "ray":
        from lseg.features.ray_export import export_store_ray

        return export_store_ray(
            extractor, inputs, opts.out, num_workers=store.workers, num_gpus_per_worker=store.gpus_per_worker,
            settings=settings, checkpoint=checkpoint, overwrite=opts.overwrite, reduce=store.reduce, model=model,
            address=store.ray_address, description=description, progress=not opts.quiet)
    return export_store(extractor, inputs, opts.out, settings=settings, checkpoint=checkpoint, reduce=store.reduce,
                        description=description, model=model, **run)


def _cmd_query(args: argparse.Namespace) -> int:
    from lseg.features.query import QueryWriter, parse_frames
    from lseg.features.reader import FeatureStore
    from lseg.jobs.engine import run_job
    from lseg.labels import parse_labels

    opts: QueryOptions = options_from_args(QueryOptions, args)
    store = FeatureStore(opts.store)  # refused before the model loads
    labels = parse_labels(opts.labels)
    frames = parse_frames(opts.frames, store) if opts.frames else None
    source = common.model_source_from_args(args)
    made_with = store.manifest.get("model") or {}
    if source.random_weights and source.random_weights != made_with.get("name"):
        raise LSegError(f"{opts.store} was made with {made_with.get('name')!r}, not --random-weights "
                        f"{source.random_weights}: give the store's model (or none: the store's own)")
    if not source.given():
        checkpoint = store.manifest.get("checkpoint")
        if not checkpoint:
            name = made_with.get("name", "NAME")
            raise LSegError(f"{opts.store} records no checkpoint: give the --checkpoint of its weights (e.g. demo "
                            f"for a store older than lseg's naming of the default), or --random-weights {name} "
                            "if it was made with random weights")
        source = dataclasses.replace(source, checkpoint=checkpoint)

    def text():  # type: ignore[no-untyped-def]
        from lseg.features.store import weights_sha256
        from lseg.inference.predictor import LSegPredictor

        model = common.load_source_model(source)
        # the store hashed the weights as they ran: cast the same way before comparing
        model.set_precision(store.manifest.get("precision", "fp32"))
        if not source.random_weights and weights_sha256(model) != store.manifest["weights_sha256"]:
            raise LSegError(
                f"{source.checkpoint} is not the model that made {opts.store} (weights hash differs)")
        predictor = LSegPredictor(model, templates=list(opts.templates) or None, inplace=True, fast=False)
        return predictor.embed_text(labels), float(model.logit_scale)

    writer = QueryWriter(store, labels, opts.out, frames=frames, reduced=opts.reduced, heatmaps=opts.heatmaps,
                         scores=opts.scores, model={"weights_sha256": store.manifest["weights_sha256"]},
                         templates=opts.templates, text=text)
    return common.finish_batch(f"query (into {opts.out})",
                               lambda: run_job(writer, overwrite=opts.overwrite, progress=not opts.quiet))


def _cmd_store(args: argparse.Namespace) -> int:
    from lseg.features.derived import export_layout, reduce_store
    from lseg.features.reader import FeatureStore

    if args.store_command == "reduce":
        r: StoreReduceOptions = options_from_args(StoreReduceOptions, args)
        code = common.finish_batch(f"store reduce (k={r.k})",
                                   lambda: reduce_store(r.store, r.k, overwrite=r.overwrite, progress=not r.quiet))
        red = FeatureStore(r.store).reduction
        if red is not None and code == 0:
            print(json.dumps(red.summary(), indent=2))
        return code
    if args.store_command == "export":
        e: StoreExportOptions = options_from_args(StoreExportOptions, args)
        return common.finish_batch(f"store export (into {e.out})", lambda: export_layout(
            e.store, e.layout, e.out, reduced=e.reduced, overwrite=e.overwrite, progress=not e.quiet))
    store = FeatureStore(options_from_args(StoreInfoOptions, args).store)
    m = store.manifest
    info = {"frames": len(store), "failed": len(store.index["failed"]), "extractor": m["extractor"],
            "model": m["model"]["name"], "precision": m.get("precision", "fp32"),
            "weights_sha256": m["weights_sha256"], "checkpoint": m["checkpoint"],
            "video_sampling": m["video_sampling"], "reduction": store.index.get("reduction")}
    print(json.dumps(info, indent=2), flush=True)
    return 0
