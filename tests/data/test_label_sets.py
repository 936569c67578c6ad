from __future__ import annotations

import collections
import re

import pytest

from lseg.data import (
    ade20k_labels,
    clean_fewshot_name,
    coco20i_fold_classes,
    coco_stuff_labels,
    fewshot_labels,
    load_label_file,
    pascal5i_fold_classes,
    pascal_context_labels,
    voc_labels,
)
from lseg.data.label_sets import fss_split_categories, read_package_file
from lseg.errors import DatasetError, LabelError


def test_ade20k_full_names_are_proper_multiword_names():
    full = ade20k_labels("full")
    assert len(full) == 150 and len(set(full)) == 150
    assert full[:3] == ["wall", "building", "sky"] and full[-1] == "flag"
    # index i = annotation value i + 1 (objectInfo150 Idx)
    assert full[64] == "coffee table"
    assert full[73] == "kitchen island"
    assert full[109] == "swimming pool"
    assert full[136] == "traffic light"
    assert full[144] == "bulletin board"
    assert full[141] == "crt screen"
    assert full[44] == "chest of drawers"
    assert (full[58], full[130]) == ("screen door", "screen")
    assert all(name == name.strip() and name for name in full)  # CSAIL rows carry stray spaces ("bed ")
    assert full[7] == "bed" and full[127] == "bicycle"


def test_ade20k_reference_reproduces_langseg_truncation():
    ref = ade20k_labels("reference")
    assert len(ref) == 150
    for idx, word in {
        64: "coffee",
        75: "swivel",
        73: "kitchen",
        72: "palm",
        109: "swimming",
        123: "trade",
        136: "traffic",
        144: "bulletin",
        141: "crt",
        12: "person",
        44: "chest",
    }.items():
        assert ref[idx] == word
    dupes = [k for k, v in collections.Counter(ref).items() if v > 1]
    assert dupes == ["screen"] and ref[58] == ref[130] == "screen"


def test_ade20k_two_shipped_tables_agree():
    # lang-seg's ';' table and CSAIL's tab table describe the same classes: the reference string is the
    # first word of the full name, for all 150 rows.
    full, ref = ade20k_labels("full"), ade20k_labels("reference")
    assert [re.split(r"[ ,]", f)[0] for f in full] == ref
    with pytest.raises(LabelError):
        ade20k_labels("short")  # type: ignore[arg-type]


def test_ade20k_returns_fresh_lists():
    a = ade20k_labels()
    a[0] = "mutated"
    assert ade20k_labels()[0] == "wall"


def test_voc_labels():
    clean, raw = voc_labels(), voc_labels("reference")
    assert len(clean) == 21 and clean[0] == "background"
    assert clean[11] == "dining table" and raw[11] == "diningtable"
    assert clean[16] == "potted plant" and clean[20] == "tv monitor" and raw[20] == "tvmonitor"
    assert clean[1] == raw[1] == "aeroplane" and clean[14] == "motorbike"


def test_fewshot_pascal_and_folds():
    raw = fewshot_labels("pascal")
    assert len(raw) == 20 and raw[10] == "diningtable" and raw[15] == "pottedplant" and raw[19] == "tvmonitor"
    assert [raw[c] for c in pascal5i_fold_classes(2)] == [
        "diningtable",
        "dog",
        "horse",
        "motorbike",
        "person",
    ]
    assert [raw[c] for c in pascal5i_fold_classes(3)] == [
        "pottedplant",
        "sheep",
        "sofa",
        "train",
        "tvmonitor",
    ]
    assert fewshot_labels("pascal", "clean")[10] == "dining table"
    with pytest.raises(DatasetError):
        pascal5i_fold_classes(4)


def test_fewshot_coco_names_and_interleaved_folds():
    raw = fewshot_labels("coco")
    assert len(raw) == 80 and len(set(raw)) == 80
    fold0 = [raw[c] for c in coco20i_fold_classes(0)]
    assert fold0 == [
        "person",
        "aeroplane",
        "boat",
        "parkingmeter",
        "dog",
        "elephant",
        "backpack",
        "suitcase",
        "sportsball",
        "skateboard",
        "wineglass",
        "spoon",
        "sandwich",
        "hotdog",
        "chair",
        "diningtable",
        "mouse",
        "microwave",
        "refrigerator",
        "scissors",
    ]
    assert sorted(c for f in range(4) for c in coco20i_fold_classes(f)) == list(range(80))
    clean = fewshot_labels("coco", "clean")
    assert clean[9] == "traffic light" and clean[78] == "hair drier" and clean[77] == "teddy bear"
    assert all(" " not in r for r in raw)


def test_fewshot_fss_matches_langseg_file_order():
    names = fewshot_labels("fss")
    assert len(names) == 1000 and len(set(names)) == 1000
    # lang-seg fewshot_fss.txt: sorted(trn) + sorted(val) + sorted(test)
    assert names[0] == "ac_wall" and names[519] == "zucchini"
    assert names[520] == "ab_wheel" and names[759] == "yonex_icon"
    assert names[760] == "abe's_flyingfish" and names[999] == "wooden_spoon"
    assert names[31:34] == ["band-aid", "banded_gecko", "barometer"]
    sizes = {s: len(fss_split_categories(s)) for s in ("trn", "val", "test")}
    assert sizes == {"trn": 520, "val": 240, "test": 240}
    assert fewshot_labels("fss", "clean")[0] == "ac wall"
    assert clean_fewshot_name("thor's_hammer") == "thor's hammer"


def test_shipped_pascal5i_val_lists():
    expected = {0: 346, 1: 451, 2: 725, 3: 346}
    for fold, n in expected.items():
        lines = read_package_file(f"pascal5i_val_fold{fold}.txt").splitlines()
        assert len(lines) == n and lines == sorted(lines)
        classes = {int(line.split("__")[1]) for line in lines}
        assert classes == {5 * fold + i + 1 for i in range(5)}  # 1-based, contiguous block
        assert all(re.fullmatch(r"20\d\d_\d{6}__\d\d", line) for line in lines)
    assert read_package_file("pascal5i_val_fold0.txt").startswith("2007_000033__01\n")


def test_coco_stuff_and_context_labels():
    cs = coco_stuff_labels()
    assert (
        len(cs) == 171
        and cs[0] == "person"
        and cs[79] == "toothbrush"
        and cs[80] == "banner"
        and cs[-1] == "wood"
    )
    pc59 = pascal_context_labels(59)
    assert len(pc59) == 59 and pc59 == sorted(pc59) and pc59[0] == "aeroplane" and pc59[-1] == "wood"
    pc459 = pascal_context_labels(459)
    assert len(pc459) == 459 and len(set(pc459)) == 459 and set(pc59) <= set(pc459)
    assert pc459[0] == "accordion" and pc459[-1] == "wool"
    with pytest.raises(LabelError):
        pascal_context_labels(60)  # type: ignore[arg-type]


def test_load_label_file(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_text("cat\n dog \nsky\n\n")
    assert load_label_file(p) == ["cat", "dog", "sky"]
    p.write_text("cat\n\ndog\n")
    with pytest.raises(LabelError, match="blank line"):
        load_label_file(p)
    p.write_text("# classes\ncat\ndog\n")  # neither a class nor a comment: every id would be off by one
    with pytest.raises(LabelError, match="line 1 starts with '#'"):
        load_label_file(p)
    p.write_text("cat\ndog\nCat\n")
    with pytest.raises(LabelError, match="line 3 repeats line 1"):
        load_label_file(p)
    p.write_text("\n")
    with pytest.raises(LabelError, match="empty"):
        load_label_file(p)
    with pytest.raises(DatasetError, match="nope.txt"):
        load_label_file(tmp_path / "nope.txt")


def test_load_label_file_reads_utf8_only(tmp_path):
    """A byte-order mark is not part of the first label; other encodings are a one-line LabelError naming
    the file (not a raw UnicodeDecodeError)."""
    p = tmp_path / "labels.txt"
    p.write_bytes("\ufeffgräs\nsky\n".encode())
    assert load_label_file(p) == ["gräs", "sky"]
    p.write_bytes(b"gr\xe4s\nsky\n")  # latin-1
    with pytest.raises(LabelError, match=r"^label file .*labels.txt is not UTF-8 text \(.* at byte 2\); save it as "
                                         r"UTF-8$"):
        load_label_file(p)
