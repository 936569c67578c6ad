"""Dataset readers, class strings and joint image + mask transforms (layouts: ``docs/datasets.md``).
Semantic readers return ``{"image": uint8 (3, H, W), "mask": int64 (H, W), "path": str}``, unlabelled
pixels ``dataset.ignore_index`` (255; 65535 for PASCAL-Context-459, ADE-847); few-shot ones episodes."""

from lseg.data.base import IGNORE_INDEX, SampleRecord, SegmentationDataset, read_image, read_mask_array
from lseg.data.datasets import (
    ADE20K,
    ADE20K847,
    COCOSTUFF_RAW_TO_TRAIN_ID,
    COCOStuff,
    FolderDataset,
    PascalContext59,
    PascalContext459,
    PascalVOC,
)
from lseg.data.fewshot import (
    FSS1000,
    COCO20i,
    Episode,
    FewShotDataset,
    Pascal5i,
    coco20i_fold_classes,
    convert_coco20i_splits,
    pascal5i_fold_classes,
)
from lseg.data.label_sets import (
    FEWSHOT_PASCAL_CLASSES,
    VOC_CLASSES,
    ade20k_847_labels,
    ade20k_labels,
    clean_fewshot_name,
    coco_stuff_labels,
    fewshot_labels,
    load_label_file,
    pascal_context_labels,
    voc_labels,
)
from lseg.data.transforms import JointCompose, fewshot_transform, train_transform, val_transform

__all__ = [
    "ADE20K", "ADE20K847", "COCOSTUFF_RAW_TO_TRAIN_ID", "FEWSHOT_PASCAL_CLASSES", "FSS1000", "IGNORE_INDEX",
    "VOC_CLASSES", "COCO20i", "COCOStuff", "Episode", "FewShotDataset", "FolderDataset", "JointCompose",
    "Pascal5i", "PascalContext59", "PascalContext459", "PascalVOC", "SampleRecord", "SegmentationDataset",
    "ade20k_847_labels", "ade20k_labels", "clean_fewshot_name", "coco20i_fold_classes", "coco_stuff_labels",
    "convert_coco20i_splits", "fewshot_labels", "fewshot_transform", "load_label_file",
    "pascal5i_fold_classes", "pascal_context_labels", "read_image", "read_mask_array", "train_transform",
    "val_transform", "voc_labels",
]
