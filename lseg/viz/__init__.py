"""Visualisation with numpy and Pillow: palettes, label map files, overlays with legends, heatmaps, grids
and feature maps as RGB. Images may be anything :func:`lseg.io.load_image` accepts; label maps and
probabilities numpy arrays or torch tensors."""

from lseg.viz.colors import MAX_COLORS, TAB10, VIRIDIS_ANCHORS, colormap, hex_colors, palette, voc_palette
from lseg.viz.drawing import grid, heatmaps, legend_font_size, legend_limits, overlay
from lseg.viz.labelmaps import heatmap_path, read_label_names, save_label_map, save_scores
from lseg.viz.pca import pca_rgb

__all__ = [
    "MAX_COLORS", "TAB10", "VIRIDIS_ANCHORS", "colormap", "grid", "heatmap_path",
    "heatmaps", "hex_colors", "legend_font_size", "legend_limits", "overlay", "palette", "pca_rgb",
    "read_label_names", "save_label_map", "save_scores", "voc_palette",
]
