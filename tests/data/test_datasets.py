"""Each reader against a tiny dataset written in its real on-disk layout.

ADE20K-Full (ADE-847) reader against a tiny dataset in the detectron2 layout.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lseg.data import (
    ADE20K,
    ADE20K847,
    COCOSTUFF_RAW_TO_TRAIN_ID,
    COCOStuff,
    FolderDataset,
    PascalContext59,
    PascalContext459,
    PascalVOC,
    ade20k_847_labels,
    ade20k_labels,
    read_image,
    val_transform,
)
from lseg.data.base import read_split_file
from lseg.data.registry import build_dataset, canonical_name, ignore_index_of
from lseg.errors import DatasetError


def _check_sample(sample, image_pixels, expected_mask):
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, *expected_mask.shape)
    assert sample["mask"].dtype == torch.int64
    if image_pixels is not None:  # PNG images are lossless: pixels must round-trip exactly (RGB order)
        assert torch.equal(sample["image"], torch.from_numpy(image_pixels).permute(2, 0, 1))
    assert torch.equal(sample["mask"], torch.as_tensor(expected_mask, dtype=torch.int64))


def test_ade20k(tmp_path, files):
    root = tmp_path / "ADEChallengeData2016"
    stored = files.mask_with([0, 1, 2, 150])
    for split, names in (
        ("training", ["ADE_train_00000002", "ADE_train_00000001"]),
        ("validation", ["ADE_val_00000001"]),
    ):
        for i, name in enumerate(names):
            files.rgb(root / "images" / split / f"{name}.jpg", seed=i, fmt="JPEG")
            files.mask(root / "annotations" / split / f"{name}.png", stored)
    ds = ADE20K(tmp_path, split="train")  # parent folder accepted
    assert len(ds) == 2 and ds.num_classes == 150 and ds.ignore_index == 255
    assert ds.labels == ade20k_labels("full") and ds.labels[64] == "coffee table"
    assert [r.image.name for r in ds.records] == ["ADE_train_00000001.jpg", "ADE_train_00000002.jpg"]
    expected = np.array([255, 0, 1, 149])[np.arange(12) % 4][None].repeat(8, 0)  # 0 -> ignore, v -> v - 1
    s = ds[0]
    _check_sample(s, None, expected)
    assert s["path"].endswith("ADE_train_00000001.jpg")
    assert len(ADE20K(root, split="val", label_style="reference")) == 1
    assert ADE20K(root, split="val", label_style="reference").labels[64] == "coffee"

    (root / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    with pytest.raises(DatasetError, match="ADE_val_00000001.png"):
        ADE20K(root, split="val")
    with pytest.raises(DatasetError, match="images/training|images"):
        ADE20K(tmp_path / "missing")


def _voc(tmp_path, files):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    stored = files.mask_with([0, 1, 20, 255])
    pix = {}
    for i, name in enumerate(["2007_000032", "2007_000033", "2007_000039", "2008_000001"]):
        # JPEGImages hold PNG bytes under .jpg here so the pixel check is exact (PIL sniffs the format)
        pix[name] = files.rgb(voc / "JPEGImages" / f"{name}.jpg", seed=i, fmt="PNG")
        files.mask(voc / "SegmentationClass" / f"{name}.png", stored, palette=True)
        files.mask(voc / "SegmentationClassAug" / f"{name}.png", files.mask_with([0, 15, 255]))
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_000032\n2007_000039\n")
    (sets / "val.txt").write_text("2007_000033\n")
    return voc, stored, pix


def test_pascal_voc_palette_masks_read_as_indices(tmp_path, files):
    voc, stored, pix = _voc(tmp_path, files)
    ds = PascalVOC(tmp_path, split="train")
    assert len(ds) == 2 and ds.num_classes == 21 and ds.labels[0] == "background"
    assert (
        ds.labels[11] == "dining table"
        and PascalVOC(voc, "val", label_style="reference").labels[11] == "diningtable"
    )
    assert Image.open(ds.records[0].mask).mode == "P"
    _check_sample(ds[0], pix["2007_000032"], stored)  # 255 boundary stays 255 (ignored)
    assert len(PascalVOC(voc, split="val")) == 1


def test_pascal_voc_aug(tmp_path, files):
    voc, _, _ = _voc(tmp_path, files)
    # No train_aug list: every SegmentationClassAug mask except the val ids.
    ds = PascalVOC(voc, split="train", aug=True)
    assert [r.image.stem for r in ds.records] == ["2007_000032", "2007_000039", "2008_000001"]
    assert set(ds[0]["mask"].unique().tolist()) == {0, 15, 255}
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("2008_000001\n")
    ds = PascalVOC(voc, split="train", aug=True)
    assert [r.image.stem for r in ds.records] == ["2008_000001"]
    assert "SegmentationClassAug" in str(ds.records[0].mask)
    # DeepLab's list format: image and mask paths per line
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text(
        "/JPEGImages/2007_000039.jpg /SegmentationClassAug/2007_000039.png\n")
    assert [r.image.stem for r in PascalVOC(voc, split="train", aug=True).records] == ["2007_000039"]
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n2099_000000\n")
    with pytest.raises(DatasetError, match="2099_000000"):
        PascalVOC(voc, split="val")


def test_pascal_context59_mmseg_layout(tmp_path, files):
    root = tmp_path / "VOCdevkit" / "VOC2010"
    files.rgb(root / "JPEGImages" / "2008_000002.jpg", fmt="JPEG")
    files.mask(root / "SegmentationClassContext" / "2008_000002.png", files.mask_with([0, 1, 30, 59]))
    (root / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (root / "ImageSets" / "SegmentationContext" / "val.txt").write_text("2008_000002\n")
    ds = PascalContext59(tmp_path / "VOCdevkit")
    assert len(ds) == 1 and ds.num_classes == 59 and ds.labels[0] == "aeroplane"
    _check_sample(ds[0], None, files.mask_with([255, 0, 29, 58]))  # reduce_zero_label


def test_pascal_context59_detectron2_layout(tmp_path, files):
    root = tmp_path / "VOC2010"
    files.rgb(root / "JPEGImages" / "2008_000002.jpg", fmt="JPEG")
    files.mask(
        root / "annotations_detectron2" / "pc59_val" / "2008_000002.png", files.mask_with([0, 58, 255])
    )
    ds = PascalContext59(root)
    _check_sample(ds[0], None, files.mask_with([0, 58, 255]))
    with pytest.raises(DatasetError, match="pc59_train"):
        PascalContext59(root, split="train")


def test_pascal_context459_uint16(tmp_path, files):
    root = tmp_path / "VOCdevkit" / "VOC2010"
    stored = files.mask_with([0, 255, 300, 458, 65535], dtype=np.uint16)
    files.rgb(root / "JPEGImages" / "2008_000002.jpg", fmt="JPEG")
    files.mask(root / "annotations_detectron2" / "pc459_val" / "2008_000002.tif", stored)
    ds = PascalContext459(tmp_path)
    assert ds.ignore_index == 65535 and ds.num_classes == 459
    # 255 is a real class here; only 65535 is ignored
    _check_sample(ds[0], None, stored.astype(np.int64))
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(459)))
    assert PascalContext459(root, labels_file=labels).labels[3] == "c3"
    labels.write_text("a\nb\n")
    with pytest.raises(DatasetError, match="PASCAL-Context-459 needs 459 labels"):
        PascalContext459(root, labels_file=labels)


def test_coco_stuff_train_ids(tmp_path, files):
    root = tmp_path / "coco_stuff164k"
    files.rgb(root / "images" / "val2017" / "000000000139.jpg", fmt="JPEG")
    stored = files.mask_with([0, 11, 170, 255])
    # mmseg layout: converted and raw maps side by side
    files.mask(root / "annotations" / "val2017" / "000000000139_labelTrainIds.png", stored)
    files.mask(root / "annotations" / "val2017" / "000000000139.png", files.mask_with([181]))
    ds = COCOStuff(root, split="val")
    assert len(ds) == 1 and ds.num_classes == 171 and ds.labels[-1] == "wood"
    _check_sample(ds[0], None, stored)
    raw = COCOStuff(root, split="val", mask_format="raw")
    assert torch.equal(raw[0]["mask"], torch.full((8, 12), 170))


def test_coco_stuff_raw_stuffthingmaps(tmp_path, files):
    root = tmp_path / "coco"
    files.rgb(root / "images" / "train2017" / "000000000009.jpg", fmt="JPEG")
    files.mask(
        root / "stuffthingmaps_trainval2017" / "train2017" / "000000000009.png",
        files.mask_with([0, 11, 12, 90, 91, 181, 255]),
    )
    ds = COCOStuff(root, split="train")
    # 182 -> 171: unused thing ids (11, 90) become ignore; ids above shift down
    _check_sample(ds[0], None, files.mask_with([0, 255, 11, 255, 80, 170, 255]))
    assert len(COCOSTUFF_RAW_TO_TRAIN_ID) == 171 and sorted(COCOSTUFF_RAW_TO_TRAIN_ID.values()) == list(
        range(171)
    )
    assert COCOSTUFF_RAW_TO_TRAIN_ID[66] == 60 and COCOSTUFF_RAW_TO_TRAIN_ID[83] == 73


def _folder(tmp_path, files):
    root = tmp_path / "mydata"
    (root).mkdir()
    (root / "labels.txt").write_text("road\nsky\ntree\n")
    pix = {
        "a": files.rgb(root / "images" / "a.png", seed=1),
        "b": files.rgb(root / "images" / "b.png", seed=2),
    }
    files.rgb(root / "images" / "c.jpg", seed=3, fmt="JPEG")  # no mask -> skipped without a split list
    files.mask(root / "masks" / "a.png", files.mask_with([0, 1, 2, 255]))
    files.mask(root / "masks" / "b.png", files.mask_with([2, 2, 1]), palette=True)
    return root, pix


def test_folder_dataset(tmp_path, files):
    root, pix = _folder(tmp_path, files)
    ds = FolderDataset(root)
    assert ds.labels == ["road", "sky", "tree"] and len(ds) == 2
    _check_sample(ds[0], pix["a"], files.mask_with([0, 1, 2, 255]))
    _check_sample(ds[1], pix["b"], files.mask_with([2, 2, 1]))
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("b\n")
    assert [r.image.name for r in FolderDataset(root, split="val").records] == ["b.png"]
    (root / "splits" / "train.txt").write_text("a\nc\n")
    with pytest.raises(DatasetError, match="c.png"):
        FolderDataset(root, split="train")
    with pytest.raises(DatasetError, match="splits/test.txt"):
        FolderDataset(root, split="test")


def test_folder_dataset_refuses_two_images_for_one_mask(tmp_path, files):
    """a.jpg beside a.png: which one masks/a.png labels is ambiguous (it was listed twice, as a.jpg)."""
    root, _ = _folder(tmp_path, files)
    files.rgb(root / "images" / "a.jpg", fmt="JPEG")
    for split in (None, "val"):
        (root / "splits").mkdir(exist_ok=True)
        (root / "splits" / "val.txt").write_text("b\na\n")
        with pytest.raises(DatasetError, match=r"^images .*a.jpg and .*a.png share the mask .*a.png; keep one$"):
            FolderDataset(root, split=split)
    (root / "images" / "a.jpg").rename(root / "images" / "a-1.jpg")  # a different stem: no mask, not used
    assert [r.image.name for r in FolderDataset(root).records] == ["a.png", "b.png"]


def test_folder_dataset_reads_the_image_it_listed_whatever_its_suffix_case(tmp_path, files):
    """c.Jpg is listed as an image (its suffix in any case): it is found, not "missing image ... c.jpg"."""
    root, _ = _folder(tmp_path, files)
    (root / "images" / "c.jpg").rename(root / "images" / "c.Jpg")
    files.mask(root / "masks" / "c.png", files.mask_with([1]))
    assert [r.image.name for r in FolderDataset(root).records] == ["a.png", "b.png", "c.Jpg"]


def test_folder_dataset_without_any_mask_names_its_folders(tmp_path, files):
    """Masks saved as .PNG (or in another folder): the error names both folders (before: "FolderDataset:
    no samples found")."""
    root, _ = _folder(tmp_path, files)
    for name in ("a", "b"):
        (root / "masks" / f"{name}.png").rename(root / "masks" / f"{name}.PNG")
    with pytest.raises(DatasetError, match=rf"^no image in {root / 'images'} has a mask {root / 'masks'}/<stem>.png"):
        FolderDataset(root)


def test_folder_dataset_rejects_bad_masks(tmp_path, files):
    root, _ = _folder(tmp_path, files)
    files.mask(root / "masks" / "a.png", files.mask_with([0, 3, 7]))
    ds = FolderDataset(root)
    with pytest.raises(DatasetError, match=r"\[3, 7\].*3 classes"):
        ds[0]
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(root / "masks" / "a.png")  # RGB mask
    with pytest.raises(DatasetError, match="colour image"):
        ds[0]
    files.mask(root / "masks" / "a.png", files.mask_with([0], h=4))  # wrong size
    with pytest.raises(DatasetError, match=r"mask .* is \(4, 12\)"):
        ds[0]
    (root / "labels.txt").unlink()
    with pytest.raises(DatasetError, match="labels.txt"):
        FolderDataset(root)


def test_transform_applied_to_both(tmp_path, files):
    root, _ = _folder(tmp_path, files)
    ds = FolderDataset(root, transform=val_transform(crop_size=6))
    s = ds[0]
    assert s["image"].shape == (3, 6, 6) and s["mask"].shape == (6, 6) and s["mask"].dtype == torch.int64
    assert set(s["mask"].unique().tolist()) <= {0, 1, 2, 255}


def test_read_split_file_reads_utf8_only(tmp_path):
    p = tmp_path / "val.txt"
    p.write_bytes("\ufeffa\nb\n".encode())
    assert read_split_file(p) == ["a", "b"]
    p.write_bytes(b"gr\xe4s\n")
    with pytest.raises(DatasetError, match=r"^split list .*val.txt is not UTF-8 text"):
        read_split_file(p)


def test_read_image_errors(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="bad.jpg"):
        read_image(bad)


def test_read_image_converts_as_load_image_without_exif(tmp_path):
    """16-bit gray is scaled by >> 8 and alpha composited onto white, as lseg.io.load_image does; the
    EXIF orientation is still not applied (the masks are stored unrotated)."""
    from lseg.io import load_image

    gray16 = tmp_path / "g16.png"
    Image.fromarray(np.tile(np.linspace(0, 65535, 256), (4, 1)).astype(np.uint16)).save(gray16)
    assert Image.open(gray16).mode == "I;16"
    assert torch.equal(read_image(gray16), torch.from_numpy(load_image(gray16)).permute(2, 0, 1))
    assert read_image(gray16).float().mean() == 127.5
    clear = tmp_path / "clear.png"
    Image.fromarray(np.zeros((2, 3, 4), np.uint8), "RGBA").save(clear)
    assert (read_image(clear) == 255).all()
    rotated = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees on display
    Image.fromarray(np.zeros((4, 8, 3), np.uint8)).save(rotated, exif=exif)
    assert read_image(rotated).shape == (3, 4, 8) and load_image(rotated).shape == (8, 4, 3)


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
    with pytest.raises(DatasetError, match="ADE-847 needs 847 labels"):
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
