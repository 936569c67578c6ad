"""Few-shot episode readers (PASCAL-5i, COCO-20i, FSS-1000) on tiny generated layouts."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lseg.data import FSS1000, COCO20i, Pascal5i, convert_coco20i_splits, fewshot_labels, fewshot_transform
from lseg.data.label_sets import fss_split_categories, read_package_file
from lseg.errors import DatasetError


def _pascal_root(tmp_path, files, names):
    voc = tmp_path / "Datasets_HSN" / "VOC2012"
    for name in names:
        files.rgb(voc / "JPEGImages" / f"{name}.jpg", h=4, w=6, fmt="JPEG")
        # every mask: background, classes 1 and 2, and boundary
        files.mask(voc / "SegmentationClassAug" / f"{name}.png", files.mask_with([0, 1, 2, 255], h=4, w=6))
    return voc


def test_pascal5i_shipped_fold_cycles_to_1000(tmp_path, files):
    lines = read_package_file("pascal5i_val_fold0.txt").splitlines()
    names = sorted({line.split("__")[0] for line in lines})
    _pascal_root(tmp_path, files, names)
    ds = Pascal5i(tmp_path / "Datasets_HSN", fold=0)
    assert len(ds) == 1000 and ds.class_ids == [0, 1, 2, 3, 4]
    n = len(lines)  # 346
    for k in (0, 1, 345, 346, 999):
        name, cls = lines[k % n].split("__")
        ep = ds.episodes[k]
        assert ep.image.stem == name and ep.class_id == int(cls) - 1
    # entries before 1000 - 2n are used 3 times, the rest twice: the reference's re-weighting
    counts = np.bincount([k % n for k in range(1000)])
    assert counts.max() == 3 and counts.min() == 2
    assert len(Pascal5i(tmp_path / "Datasets_HSN", fold=0, num_episodes=None)) == n
    item = ds[0]  # 2007_000033__01 -> class 0 (aeroplane): stored value 1 is foreground
    assert item["class_id"] == 0 and item["class_name"] == "aeroplane"
    assert torch.equal(
        item["mask"], torch.as_tensor(files.mask_with([0, 1, 0, 255], h=4, w=6), dtype=torch.int64)
    )
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 4, 6)


def test_pascal5i_user_splits_and_errors(tmp_path, files):
    voc = _pascal_root(tmp_path, files, ["2007_000001", "2007_000002"])
    splits = tmp_path / "splits"
    (splits / "val").mkdir(parents=True)
    (splits / "val" / "fold0.txt").write_text("2007_000001__02\n2007_000002__01\n")
    ds = Pascal5i(
        voc, fold=0, splits_dir=splits, num_episodes=5, label_style="clean", transform=fewshot_transform(8)
    )
    assert [e.image.stem for e in ds.episodes] == ["2007_000001", "2007_000002"] * 2 + ["2007_000001"]
    item = ds[0]  # class 1 (bicycle) -> stored value 2
    assert (
        item["class_name"] == "bicycle" and item["mask"].shape == (8, 8) and item["image"].shape == (3, 8, 8)
    )
    assert set(item["mask"].unique().tolist()) == {0, 1, 255}
    with pytest.raises(DatasetError, match="trn/fold"):
        Pascal5i(voc, fold=1, split="trn")
    (splits / "trn").mkdir()
    for f in (1, 2, 3):
        (splits / "trn" / f"fold{f}.txt").write_text("2007_000001__07\n")
    trn = Pascal5i(voc, fold=0, split="trn", splits_dir=splits)
    assert len(trn) == 3 and trn.class_ids == list(range(5, 20))
    with pytest.raises(DatasetError, match="JPEGImages"):
        Pascal5i(tmp_path / "nowhere", fold=0)


def _coco_root(tmp_path, files):
    root = tmp_path / "COCO2014"
    # value c + 1 in HSNet's masks; fold 0 classes are {0, 4, 8, ...}
    contents = {
        "000000000001": [0, 1, 5],
        "000000000002": [0, 5, 9],
        "000000000003": [1, 9, 2],
        "000000000004": [0, 2],
    }
    for i, (stem, vals) in enumerate(contents.items()):
        files.rgb(root / "val2014" / f"COCO_val2014_{stem}.jpg", h=4, w=6, seed=i, fmt="JPEG")
        files.mask(
            root / "annotations" / "val2014" / f"COCO_val2014_{stem}.png", files.mask_with(vals, h=4, w=6)
        )
    return root


def _reference_stream(class_ids, classwise, n, seed=0):
    # What the reference does: fix_randseed(0), then per episode np.random.choice(...) twice.
    np.random.seed(seed)
    out = []
    for _ in range(n):
        c = np.random.choice(class_ids, 1, replace=False)[0]
        out.append((int(c), str(np.random.choice(classwise[c], 1, replace=False)[0])))
    return out


def test_coco20i_json_splits_replay_reference_sampler(tmp_path, files):
    root = _coco_root(tmp_path, files)
    fold0 = [4 * k for k in range(20)]
    classwise = {c: [f"val2014/COCO_val2014_00000000000{1 + (c // 4) % 3}.jpg"] for c in fold0}
    classwise[0] = ["val2014/COCO_val2014_000000000001.jpg", "val2014/COCO_val2014_000000000003.jpg"]
    classwise[8] = ["val2014/COCO_val2014_000000000002.jpg", "val2014/COCO_val2014_000000000003.jpg"]
    (tmp_path / "splits" / "val").mkdir(parents=True)
    (tmp_path / "splits" / "val" / "fold0.json").write_text(
        json.dumps({str(k): v for k, v in classwise.items()})
    )
    ds = COCO20i(tmp_path, fold=0, splits_dir=tmp_path / "splits", num_episodes=50, seed=0)
    expected = _reference_stream(fold0, classwise, 50)
    assert [(e.class_id, f"val2014/{e.image.name}") for e in ds.episodes] == expected
    again = COCO20i(root, fold=0, splits_dir=tmp_path / "splits", num_episodes=50, seed=0)
    assert again.episodes == ds.episodes
    assert (
        COCO20i(root, fold=0, splits_dir=tmp_path / "splits", num_episodes=50, seed=1).episodes != ds.episodes
    )
    k = next(i for i, e in enumerate(ds.episodes) if e.class_id == 0 and e.image.name.endswith("01.jpg"))
    item = ds[k]  # class 0 = stored value 1 in the first image's mask [0, 1, 5]
    assert item["class_name"] == "person" and torch.equal(item["mask"][0], torch.tensor([0, 1, 0, 0, 1, 0]))


def test_coco20i_derived_lists(tmp_path, files):
    root = _coco_root(tmp_path, files)
    with pytest.raises(DatasetError, match="no image lists class 12"):
        COCO20i(root, fold=0, num_episodes=30)  # the tiny set only has fold-0 classes 0, 4, 8
    # Put every fold-1 class {1, 5, ..., 77} (stored as c + 1) into image 4; class 1 is also in image 3.
    files.mask(
        root / "annotations" / "val2014" / "COCO_val2014_000000000004.png",
        files.mask_with([4 * k + 2 for k in range(20)] + [0], h=4, w=21),
    )
    files.rgb(root / "val2014" / "COCO_val2014_000000000004.jpg", h=4, w=21, fmt="JPEG")
    ds = COCO20i(root, fold=1, num_episodes=40, label_style="clean")
    assert ds.class_ids == [4 * k + 1 for k in range(20)]
    im3, im4 = "val2014/COCO_val2014_000000000003.jpg", "val2014/COCO_val2014_000000000004.jpg"
    classwise = {c: [im4] for c in ds.class_ids}
    classwise[1] = [im3, im4]
    assert [(e.class_id, f"val2014/{e.image.name}") for e in ds.episodes] == _reference_stream(
        ds.class_ids, classwise, 40
    )
    for i in range(3):
        item = ds[i]
        assert item["mask"].sum() > 0 and set(item["mask"].unique().tolist()) <= {0, 1}
        assert item["class_name"] == fewshot_labels("coco", "clean")[item["class_id"]]


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_convert_coco20i_splits_is_data_only(tmp_path, capsys):
    src = tmp_path / "pkl"
    (src / "val").mkdir(parents=True)
    data = {c: [f"val2014/COCO_val2014_{c:012d}.jpg", "val2014/x.jpg"] for c in range(0, 80, 4)}
    with open(src / "val" / "fold0.pkl", "wb") as f:
        pickle.dump(data, f, protocol=4)
    with open(src / "val" / "fold1.pkl", "wb") as f:
        pickle.dump(data, f, protocol=2)
    written = convert_coco20i_splits(src, tmp_path / "json")
    assert [p.name for p in written] == ["fold0.json", "fold1.json"]
    loaded = json.loads((tmp_path / "json" / "val" / "fold0.json").read_text())
    assert {int(k): v for k, v in loaded.items()} == data

    with open(src / "val" / "fold2.pkl", "wb") as f:
        pickle.dump({0: [_Evil()]}, f)
    with pytest.raises(DatasetError, match="refusing to load global"):
        convert_coco20i_splits(src, tmp_path / "json2")
    assert "pwned" not in capsys.readouterr().out
    with pytest.raises(DatasetError, match="no COCO-20i split pickles"):
        convert_coco20i_splits(tmp_path / "empty", tmp_path / "json3")


def test_fss1000_test_split(tmp_path, files):
    root = tmp_path / "Datasets_HSN" / "FSS-1000"
    cats = fss_split_categories("test")
    for cat in cats:
        files.rgb(root / cat / "1.jpg", h=4, w=4, fmt="JPEG")
        files.mask(root / cat / "1.png", np.full((4, 4), 255, np.uint8))
    first = min(cats)  # "abe's_flyingfish"
    for n in (2, 10):
        files.rgb(root / first / f"{n}.jpg", h=4, w=4, fmt="JPEG")
        # FSS masks are 3-channel images; values around 128 test the threshold
        rgb = np.zeros((4, 4, 3), np.uint8)
        rgb[:, :2] = 127
        rgb[:, 2:] = 128
        Image.fromarray(rgb).save(root / first / f"{n}.png")
    ds = FSS1000(tmp_path / "Datasets_HSN", split="test")
    assert len(ds) == 240 + 2 and ds.class_ids == list(range(760, 1000))
    # sorted(glob) order within a category: 1, 10, 2
    assert [e.image.name for e in ds.episodes[:3]] == ["1.jpg", "10.jpg", "2.jpg"]
    assert {e.class_id for e in ds.episodes[:3]} == {760}
    item = ds[1]
    assert item["class_name"] == "abe's_flyingfish"
    assert torch.equal(item["mask"], torch.tensor([[0, 0, 1, 1]] * 4))
    assert torch.equal(ds[0]["mask"], torch.ones(4, 4, dtype=torch.int64))
    last = ds.episodes[-1]
    assert last.class_id == 999 and ds.labels[999] == max(cats) == "wooden_spoon"

    shutil.rmtree(root / "tower_pisa")
    with pytest.raises(DatasetError, match="tower_pisa"):
        FSS1000(root, split="test")


def test_supports_same_class_never_the_query_and_seeded(tmp_path):
    """Zero-shot training items (issue 15): a query plus a support of its class, as HSNet draws them."""
    from lseg.train.toy import make_toy_fewshot

    root = make_toy_fewshot(tmp_path / "hsn", "pascal5i", per_class=3, size=32)
    splits = root / "splits" / "pascal"
    ds = Pascal5i(root, fold=0, split="trn", splits_dir=splits, num_support=1, transform=fewshot_transform(16))
    assert len(ds) == 15 * 3 and ds.class_ids == list(range(5, 20))
    seen = set()
    for i in range(len(ds)):
        torch.manual_seed(i)
        item = ds[i]
        assert len(item["support_images"]) == len(item["support_masks"]) == 1
        assert item["support_images"][0].shape == (3, 16, 16) and item["support_masks"][0].shape == (16, 16)
        support = item["support_paths"][0]
        assert support != item["path"]
        # the support shows the same class: its (binary) mask has foreground
        assert (item["support_masks"][0] == 1).any()
        names = {line.split("__")[0] for line in (splits / "trn" / f"fold{item['class_id'] // 5}.txt").read_text().split()
                 if int(line.split("__")[1]) - 1 == item["class_id"]}
        assert Path(support).stem in names
        seen.add(support)
        torch.manual_seed(i)
        assert ds[i]["support_paths"] == [support]  # a function of torch's RNG: reproducible
    assert len(seen) > 15  # and it varies
    # the val lists come from splits_dir when it has them, else from the shipped lists
    assert Pascal5i(root, fold=0, splits_dir=splits, num_episodes=None).episodes[0].image.stem.startswith("2008_")
    (splits / "val" / "fold0.txt").unlink()
    with pytest.raises(DatasetError, match="JPEGImages|image"):  # shipped list: real VOC names, absent here
        Pascal5i(root, fold=0, splits_dir=splits)
    with pytest.raises(DatasetError, match="besides"):
        lone = tmp_path / "lone"
        (lone / "trn").mkdir(parents=True)
        for f in (1, 2, 3):  # one image per class: no other image to draw a support from
            first = (splits / "trn" / f"fold{f}.txt").read_text().split()[0]
            (lone / "trn" / f"fold{f}.txt").write_text(first + "\n")
        Pascal5i(root, fold=0, split="trn", splits_dir=lone, num_support=1)[0]


@pytest.mark.slow  # the toy FSS-1000 layout: 1,000 categories, 4,000 files
def test_coco20i_trn_draws_each_item_and_fss_supports(tmp_path):
    from lseg.train.toy import make_toy_fewshot

    coco = make_toy_fewshot(tmp_path / "coco", "coco20i", per_class=2, size=16)
    trn = COCO20i(coco, fold=0, split="trn", num_support=1)
    assert len(trn) == 60 * 2 and 0 not in trn.class_ids  # HSNet's trn length: (class, image) pairs
    torch.manual_seed(0)
    draws = [(trn[0]["class_id"], trn[0]["path"]) for _ in range(20)]
    assert len(set(draws)) > 5  # the index is ignored: every item draws its class and query
    torch.manual_seed(0)
    assert [(trn[7]["class_id"], trn[7]["path"]) for _ in range(20)] == draws
    item = trn[3]
    assert item["support_paths"][0] != item["path"] and (item["mask"] == 1).any()
    val = COCO20i(coco, fold=0, num_episodes=10)
    assert [val[i]["path"] for i in range(3)] == [val[i]["path"] for i in range(3)]  # val: fixed episodes

    fss = make_toy_fewshot(tmp_path / "fss", "fss1000", per_class=2, size=16)
    ds = FSS1000(fss, split="trn", num_support=1)
    torch.manual_seed(0)
    item = ds[0]
    assert Path(item["support_paths"][0]).parent == Path(item["path"]).parent
    assert Path(item["support_paths"][0]).name != Path(item["path"]).name
