"""Queries over a store (lseg.features.query, `lseg query`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from features.helpers import make_inputs
from PIL import Image

import lseg
from lseg.cli import main
from lseg.features import FeatureStore
from lseg.features.query import similarity
from lseg.viz import read_label_names


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("q")
    torch.manual_seed(0)
    lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp / "m")
    args = ["features", str(make_inputs(tmp)), "-o", str(tmp / "st"), "--format", "store", "--fps", "5",
            "--reduce", "32", "-c", str(tmp / "m"), "--size", "64", "--device", "cpu", "-q"]
    assert main(args) == 0
    return tmp / "st", tmp / "m"


def test_query_label_maps_equal_argmax_of_similarities(made: tuple[Path, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    st, _ = made
    labels = ["chair", "table", "other"]
    # the store remembers its checkpoint: no model option needed
    assert main(["query", str(st), ", ".join(labels), "-o", str(tmp_path / "q"), "--heatmaps", "--scores"]) == 0
    assert "8 written, 0 already done, 0 failed" in capsys.readouterr().err
    store = FeatureStore(st)
    model = lseg.load_model(store.manifest["checkpoint"])
    text = lseg.LSegPredictor(model).embed_text(labels)
    for info in store.frames:
        got = np.array(Image.open(tmp_path / "q" / f"{info['key']}_labels.png"))
        feats = torch.from_numpy(store.read(info["id"])).float()
        want = torch.einsum("dhw,kd->khw", feats, text).argmax(0).numpy()
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(similarity(store, info["key"], text).argmax(0).numpy(), want)
        assert got.shape == tuple(info["shape"][1:])
        assert read_label_names(tmp_path / "q" / f"{info['key']}_labels.png") == labels
    assert (tmp_path / "q" / "clip" / "000004_heat_01_table.png").is_file()
    probs = np.load(tmp_path / "q" / "img2_scores.npz")["probs"]
    assert probs.shape == (3, 15, 32) and np.allclose(probs.astype(np.float32).sum(0), 1, atol=3e-3)
    # reduced features (k = D here), decoded: the same label maps up to fp16 rounding
    assert main(["query", str(st), ", ".join(labels), "-o", str(tmp_path / "r"), "--reduced", "--frames", "0:3"]) == 0
    for key in ("clip/000000", "clip/000002", "clip/000004"):
        a = np.array(Image.open(tmp_path / "q" / f"{key}_labels.png"))
        b = np.array(Image.open(tmp_path / "r" / f"{key}_labels.png"))
        assert (a == b).mean() > 0.98
    assert not (tmp_path / "r" / "clip" / "000006_labels.png").exists()


def test_query_refuses_another_model(made: tuple[Path, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    st, _ = made
    torch.manual_seed(1)
    lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path / "other")
    assert main(["query", str(st), "a, b", "-o", str(tmp_path / "q"), "-c", str(tmp_path / "other")]) == 2
    assert "is not the model that made" in capsys.readouterr().err


def test_query_of_a_random_weights_store_names_the_model_to_give(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = ["features", str(make_inputs(tmp_path)), "-o", str(tmp_path / "st"), "--format", "store", "--fps", "5",
            "--random-weights", "lseg_tiny_test", "--size", "64", "-q"]
    assert main(args) == 0
    assert main(["query", str(tmp_path / "st"), "a, b", "-o", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "records no checkpoint: give the --checkpoint of its weights" in err
    assert "--random-weights lseg_tiny_test if it was made with random weights" in err
    assert main(["query", str(tmp_path / "st"), "a, b", "-o", str(tmp_path / "q"), "--random-weights",
                 "lseg_tiny_test"]) == 0


def test_frames_selects_a_key_of_digits_by_its_key(tmp_path: Path) -> None:
    """ScanNet-style images 0.jpg, 20.jpg, 100.jpg: --frames 20 is the frame 20.jpg, not id 20 (out of range) nor id 2."""
    from lseg.features import FeatureExtractor, export_store
    from lseg.features.query import parse_frames

    for name in ("0", "20", "100"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{name}.png")
    torch.manual_seed(0)
    ex = FeatureExtractor(lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32))
    export_store(ex, [tmp_path], tmp_path / "st", progress=False)
    store = FeatureStore(tmp_path / "st")
    assert [f["key"] for f in store.frames] == ["0", "100", "20"]
    assert parse_frames("20", store) == [2] and parse_frames("100,0", store) == [1, 0]
    assert parse_frames("1", store) == [1] and parse_frames("0:2", store) == [0, 1]  # no such key: an id
