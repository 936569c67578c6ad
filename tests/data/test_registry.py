"""The dataset registry (:mod:`lseg.data.registry`): names and aliases, readers by name, few-shot benchmarks."""

from __future__ import annotations

import pytest

from lseg.data import FolderDataset
from lseg.data.registry import (
    FEWSHOT_DATASETS,
    SEMANTIC_DATASETS,
    build_dataset,
    build_fewshot_dataset,
    canonical_name,
    ignore_index_of,
)
from lseg.errors import DatasetError


@pytest.mark.parametrize(("alias", "name"), [
    ("ADE150", "ade20k"), (" pc59 ", "pascal_context59"), ("voc21", "pascal_voc"), ("coco-stuff", "coco_stuff"),
    ("fss-1000", "fss1000"), ("folder", "folder"),
])
def test_aliases_resolve_to_canonical_names(alias, name):
    assert canonical_name(alias) == name
    assert name in SEMANTIC_DATASETS + FEWSHOT_DATASETS


def test_unknown_names_list_the_known_ones():
    with pytest.raises(DatasetError, match="unknown dataset 'nope'; known: ade20k"):
        canonical_name("nope")


def test_build_dataset_needs_a_root_and_a_semantic_name(tmp_path):
    with pytest.raises(DatasetError, match="needs a data root"):
        build_dataset("ade20k", None)
    with pytest.raises(DatasetError, match="few-shot benchmark"):
        build_dataset("pascal5i", tmp_path)
    with pytest.raises(DatasetError, match="not a few-shot benchmark"):
        build_fewshot_dataset("ade20k", tmp_path)


def test_folder_dataset_by_name(tmp_path, files):
    (tmp_path / "labels.txt").write_text("sky\ngrass\n")
    for i in range(2):
        files.rgb(tmp_path / "images" / f"{i}.png", seed=i)
        files.mask(tmp_path / "masks" / f"{i}.png", files.mask_with([0, 1]))
    ds = build_dataset("folder", tmp_path, None)
    assert isinstance(ds, FolderDataset) and len(ds) == 2 and ignore_index_of(ds) == 255
    with pytest.raises(DatasetError, match="single label style"):
        build_dataset("folder", tmp_path, None, label_style="full")


def test_unknown_reader_keywords_name_the_accepted_ones(tmp_path, files):
    """A keyword the reader does not take is a one-line DatasetError listing what it accepts (not the
    arguments the registry passes itself), not a TypeError from its constructor."""
    (tmp_path / "labels.txt").write_text("sky\ngrass\n")
    files.rgb(tmp_path / "images" / "0.png")
    files.mask(tmp_path / "masks" / "0.png", files.mask_with([0, 1]))
    with pytest.raises(DatasetError, match=r"^dataset 'folder' \(FolderDataset\) takes no keyword 'splits'; "
                                           r"accepted: none$"):
        build_dataset("folder", tmp_path, None, splits="val")
    with pytest.raises(DatasetError, match=r"'voc20' \(PascalVOC20\) takes no keyword 'augment', 'labels'; "
                                           r"accepted: aug, label_style$"):
        build_dataset("voc20", tmp_path, augment=True, labels=["a"])
    with pytest.raises(DatasetError, match=r"'fss1000' \(FSS1000\) takes no keyword 'num_episodes'; "
                                           r"accepted: num_support$"):
        build_fewshot_dataset("fss1000", tmp_path, num_episodes=5)
    with pytest.raises(DatasetError, match=r"'pascal5i' \(Pascal5i\) takes no keyword 'seed'; "
                                           r"accepted: splits_dir, num_episodes, num_support$"):
        build_fewshot_dataset("pascal5i", tmp_path, seed=0)


def test_data_root_expands_home(tmp_path, files, monkeypatch):
    """A quoted '~/...' (command line, YAML config) is the home folder, not a folder named '~'."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "toy" / "labels.txt").parent.mkdir()
    (tmp_path / "toy" / "labels.txt").write_text("sky\ngrass\n")
    files.rgb(tmp_path / "toy" / "images" / "0.png")
    files.mask(tmp_path / "toy" / "masks" / "0.png", files.mask_with([0, 1]))
    assert len(build_dataset("folder", "~/toy", None)) == 1
    with pytest.raises(DatasetError, match=f"not found: {tmp_path}"):
        build_fewshot_dataset("fss1000", "~/none")


def test_open_vocab_labels_are_readable():  # what `lseg eval --protocol open-vocab` feeds to CLIP
    from lseg.data import clean_fewshot_name

    assert [clean_fewshot_name(lb) for lb in ["pottedplant", "tv_monitor", "cat"]] == ["potted plant", "tv monitor", "cat"]
