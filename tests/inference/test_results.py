"""SegmentationResult.save(): what it may replace and what its record lists (the rules of `lseg segment`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import make_photo
from PIL import Image

import lseg
from lseg.cli import main

RANDOM = ["--random-weights", "lseg_tiny_test", "--size", "64", "-q"]


@pytest.fixture
def predictor(tiny_model) -> lseg.LSegPredictor:
    return lseg.LSegPredictor(tiny_model, size=32)


@pytest.fixture
def photo_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Image.fromarray(make_photo(32, 40)).save("photo.png")
    return tmp_path / "photo.png"


def _outputs(folder: Path) -> list[str]:
    return json.loads((folder / "photo_labels.json").read_text())["outputs"]


def test_save_refuses_a_file_no_record_lists(predictor, photo_file: Path) -> None:
    out = photo_file.parent / "o1"
    out.mkdir()
    (out / "photo_labels.png").write_bytes(b"MY OWN FILE")
    result = predictor.segment(photo_file, "dog, grass, other")
    with pytest.raises(lseg.LSegError, match=r"photo_labels\.png exists and is not an lseg output"):
        result.save(out)
    assert sorted(os.listdir(out)) == ["photo_labels.png"] and (out / "photo_labels.png").read_bytes() == b"MY OWN FILE"
    result.save(out, overwrite=True)  # asked for
    assert (out / "photo_labels.png").read_bytes() != b"MY OWN FILE"


def test_save_with_other_labels_removes_the_old_scores(predictor, photo_file: Path) -> None:
    out = photo_file.parent / "o4"
    predictor.segment(photo_file, "dog, grass, other").save(out, scores=True)
    predictor.segment(photo_file, "cat, sky").save(out)
    record = json.loads((out / "photo_labels.json").read_text())
    assert record["outputs"] == ["photo_labels.png", "photo_overlay.png"] and record["labels"] == ["cat", "sky"]
    assert record["recipe"]["labels"] == ["cat", "sky"]
    assert sorted(os.listdir(out)) == ["photo_labels.json", "photo_labels.png", "photo_overlay.png"]


def test_save_over_lseg_segment_of_the_same_image_redoes_it(predictor, photo_file: Path) -> None:
    command = ["segment", "photo.png", "-l", "dog, grass, other", "-o", "o7", "--heatmaps", *RANDOM]
    assert main(command) == 0  # records the source as given: photo.png
    out = photo_file.parent / "o7"
    predictor.segment("photo.png", "dog, grass, other").save(out)  # the same image: no overwrite needed
    assert sorted(os.listdir(out)) == ["photo_labels.json", "photo_labels.png", "photo_overlay.png"]
    assert _outputs(out) == ["photo_labels.png", "photo_overlay.png"]  # the heatmaps went with the old recipe
    assert main(command) == 0  # no orphaned heatmaps to clash with
    assert len([n for n in os.listdir(out) if "_heat_" in n]) == 3


def test_save_refuses_an_empty_stem(predictor, photo_file: Path) -> None:
    with pytest.raises(lseg.LSegError, match="stem is empty"):
        predictor.segment(photo_file, "dog, other").save(photo_file.parent / "o6", stem="")
    assert sorted(os.listdir(photo_file.parent)) == ["photo.png"]


def test_save_records_a_home_relative_image_path_expanded(predictor, photo_file: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = photo_file.parent / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    Image.fromarray(make_photo(32, 40)).save(home / "photo.png")
    predictor.segment("~/photo.png", "dog, other").save("o8")
    record = json.loads(Path("o8/photo_labels.json").read_text())
    assert record["source"] == str((home / "photo.png").resolve())
    predictor.segment(home / "photo.png", "dog, other").save("o8")  # the same image


@pytest.mark.parametrize("size,error", [((0, 5), ValueError), ((-1, 5), ValueError), ((10.5, 3), TypeError),
                                        (7, TypeError), ((1, 2, 3), TypeError)])
def test_probs_at_refuses_a_bad_size_in_one_line(predictor, size, error) -> None:
    """probs_at((0, 5)) was torch's RuntimeError ('Input and output sizes should be greater than 0')."""
    result = predictor.segment(make_photo(32, 40), "dog, other")
    with pytest.raises(error, match=r"^probs_at: size"):
        result.probs_at(size)
    assert result.probs_at([3, 4]).shape == (2, 3, 4)


def test_a_many_label_result_pickles_its_logits_not_the_predictor(tiny_model) -> None:
    """With more labels than label_chunk_size the lazy logits were a bound method of the predictor:
    pickling or deep-copying a result carried the whole model (and its text cache) along."""
    import copy
    import pickle

    import numpy as np

    predictor = lseg.LSegPredictor(tiny_model, size=64, label_chunk_size=2)
    result = predictor.segment(make_photo(32, 48), "a, b, c, d, e")
    data = pickle.dumps(result)
    assert len(data) < 200_000 < len(pickle.dumps(tiny_model))
    for back in (pickle.loads(data), copy.deepcopy(result)):
        np.testing.assert_array_equal(back.logits, result.logits)
        np.testing.assert_array_equal(back.label_map, result.label_map)
