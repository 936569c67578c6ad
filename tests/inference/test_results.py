"""SegmentationResult.save(): what it may replace and what its record lists (the rules of `lseg segment`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import make_photo
from PIL import Image

import lseg


@pytest.fixture
def predictor(tiny_model) -> lseg.LSegPredictor:
    return lseg.LSegPredictor(tiny_model, size=32)


@pytest.fixture
def photo_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Image.fromarray(make_photo(32, 40)).save("photo.png")
    return tmp_path / "photo.png"


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
