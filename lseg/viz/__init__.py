"""Visualisation: label-map colours, overlays with legends, probability heatmaps, feature PCA.

One module per job: :mod:`lseg.viz.colors` (palettes, viridis), :mod:`lseg.viz.labelmaps` (colouring,
saving and reading label maps, score files, heatmap names), :mod:`lseg.viz.drawing` (overlays with legends, heatmaps, grids),
:mod:`lseg.viz.pca` (feature maps as RGB).

Everything here is numpy + Pillow (matplotlib is not imported; its DejaVu font file is used by
:mod:`lseg.viz.fonts`, with the Noto fonts of the ``fonts`` and ``cjk`` extras). Colours for class
``i`` come from :func:`palette`: colours that all show over photos (no black, white or grey);
:func:`voc_palette` is the reference code's VOC palette, whose class 0 is black.

Image arguments accept anything :func:`lseg.io.load_image` accepts (``HxWx3 uint8`` arrays,
PIL images, float arrays in ``[0, 1]``, CHW tensors, paths, ...); label maps and probabilities
accept numpy arrays or torch tensors (moved to CPU).
"""

from lseg.viz.colors import MAX_COLORS, TAB10, VIRIDIS_ANCHORS, colormap, hex_colors, palette, voc_palette
from lseg.viz.drawing import grid, heatmaps, legend_font_size, legend_limits, overlay
from lseg.viz.labelmaps import (
    colorize,
    colorize_rgb,
    heatmap_path,
    read_label_names,
    save_label_map,
    save_scores,
)
from lseg.viz.pca import pca_rgb

__all__ = [
    "MAX_COLORS",
    "TAB10",
    "VIRIDIS_ANCHORS",
    "colorize",
    "colorize_rgb",
    "colormap",
    "grid",
    "heatmap_path",
    "heatmaps",
    "hex_colors",
    "legend_font_size",
    "legend_limits",
    "overlay",
    "palette",
    "pca_rgb",
    "read_label_names",
    "save_label_map",
    "save_scores",
    "voc_palette",
]
