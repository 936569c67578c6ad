"""ADE20K-Full (ADE-847) reader against a tiny dataset in the detectron2 layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lseg.data import ADE20K847, ade20k_847_labels
from lseg.data.registry import build_dataset, canonical_name, ignore_index_of
from lseg.errors import DatasetError


def _write(root, files):
    root = root / "ADE20K_2021_17_01"
    stored = {
        "validation": [files.mask_with([0, 255, 300, 846, 65535], dtype=np.uint16)],
        "training": [
            files.mask_with([1, 2, 65535], dtype=np.uint16),
            files.mask_with([845, 3], dtype=np.uint16),
        ],
    }
    for sub, masks in stored.items():
        for i, mask in enumerate(masks):
            stem = f"ADE_{sub}_{i:08d}"
            files.rgb(root / "images_detectron2" / sub / f"{stem}.jpg", seed=i, fmt="JPEG")
            files.mask(root / "annotations_detectron2" / sub / f"{stem}.tif", mask)
    return root, stored


def test_ade20k_847_labels():
    labels = ade20k_847_labels()
    assert len(labels) == 847 and len(set(labels)) == 847
    assert labels[0] == "wall" and labels[1] == "building, edifice"
    assert labels[-1] == "adding machine, totalizer, totaliser"


def test_ade847_reader(tmp_path, files):
    root, stored = _write(tmp_path, files)
    for ds_root in (tmp_path, root):  # the release folder or its parent
        ds = ADE20K847(ds_root)
        assert len(ds) == 1 and ds.ignore_index == 65535 and ds.num_classes == 847
        sample = ds[0]
        assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 8, 12)
        # ids > 255 survive; 255 is a real class; only 65535 is ignored
        assert torch.equal(sample["mask"], torch.as_tensor(stored["validation"][0].astype(np.int64)))
    train = ADE20K847(root, split="train")
    assert len(train) == 2
    assert torch.equal(train[1]["mask"], torch.as_tensor(stored["training"][1].astype(np.int64)))
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(847)))
    assert ADE20K847(root, labels_file=labels).labels[846] == "c846"
    labels.write_text("a\nb\n")
    with pytest.raises(DatasetError, match="847"):
        ADE20K847(root, labels_file=labels)
    with pytest.raises(DatasetError, match="split"):
        ADE20K847(root, split="test")  # type: ignore[arg-type]


def test_ade847_missing_layout(tmp_path):
    with pytest.raises(DatasetError, match="images_detectron2"):
        ADE20K847(tmp_path)


def test_build_dataset_ade847(tmp_path, files):
    _write(tmp_path, files)
    assert canonical_name("ade-847") == "ade847"
    ds = build_dataset("ade847", tmp_path)
    assert isinstance(ds, ADE20K847) and ignore_index_of(ds) == 65535 and len(ds) == 1
    assert ds.labels == ade20k_847_labels()
    with pytest.raises(DatasetError, match="label style"):
        build_dataset("ade847", tmp_path, label_style="full")
