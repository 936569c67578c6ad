"""Fixtures of the ``lseg`` command-line tests: generated photographs and a tiny model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_photo
from PIL import Image

import lseg


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(make_photo(96, 128, seed=1)).save(d / "a.jpg", quality=92)
    Image.fromarray(make_photo(80, 120, seed=2)).save(d / "b.png")
    Image.fromarray(make_photo(64, 64, seed=3)).save(d / "sub" / "c.png")
    return d


@pytest.fixture
def model_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    return lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path / "model")
