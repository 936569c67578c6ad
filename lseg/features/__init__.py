"""Dense pixel features for 3D and robotics pipelines.

* :mod:`~lseg.features.export`: the ``npy`` layout (one array per image / video frame), sharding helpers;
* :mod:`~lseg.features.presets`: reference-exact preprocessing presets (reference evaluator, OpenScene,
  VLMaps, ours) and output resolution;
* :mod:`~lseg.features.store`: one self-describing store per run (fp16 safetensors shards + JSON
  index), readable frame by frame; exporters to the OpenScene / Feature 3DGS layouts;
* :mod:`~lseg.features.reduce`: scene-level PCA fitted in one streaming pass, with ``decode()``;
* :mod:`~lseg.features.query`: label maps / similarity maps from a store without the image encoder;
* :mod:`~lseg.features.ray_export`: the store export on Ray Data (optional ``lseg[scale]``);
* :mod:`~lseg.features.options`: the commands' settings.

Every writer here runs on the batch engine (:mod:`lseg.jobs.engine`).
"""

from lseg.features.export import (
    DTYPES,
    FRAMES_INDEX,
    MANIFEST,
    combine_shards,
    export_features,
    iter_resized_embeddings,
    resize_embeddings,
    torchrun_rank,
)
from lseg.features.options import parse_resolution, parse_shard
from lseg.features.presets import PRESETS, FeatureExtractor, Preset, get_preset
from lseg.features.query import query_store
from lseg.features.reduce import PCAFit, Reduction, fit_reduction
from lseg.features.store import FeatureStore, export_layout, export_store, reduce_store
from lseg.jobs.engine import Report

__all__ = [
    "DTYPES",
    "FRAMES_INDEX",
    "MANIFEST",
    "PRESETS",
    "FeatureExtractor",
    "FeatureStore",
    "PCAFit",
    "Preset",
    "Reduction",
    "Report",
    "combine_shards",
    "export_features",
    "export_layout",
    "export_store",
    "fit_reduction",
    "get_preset",
    "iter_resized_embeddings",
    "parse_resolution",
    "parse_shard",
    "query_store",
    "reduce_store",
    "resize_embeddings",
    "torchrun_rank",
]
