"""The feature store: layout, frame-by-frame reads, metadata, resume, sharding, other layouts, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import interrupt_at_call
from features.helpers import make_inputs
from PIL import Image
from safetensors import safe_open

import lseg
from lseg.cli import main
from lseg.features import FeatureExtractor, FeatureStore, export_layout, export_store
from lseg.features.store import StoreSettings, weights_sha256
from lseg.jobs.engine import JobInterrupted

SETTINGS = StoreSettings(fps=5, frames_per_shard=2, batch_size=2)


@pytest.fixture(scope="module")
def predictor() -> lseg.LSegPredictor:
    torch.manual_seed(0)
    return lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=64)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("in"))


def test_store_layout_metadata_and_frame_reads(tmp_path: Path, predictor: lseg.LSegPredictor, inputs: Path) -> None:
    ex = FeatureExtractor(predictor, "ours")
    report = export_store(ex, [inputs], tmp_path / "st", settings=SETTINGS, checkpoint="ckpt/", progress=False)
    assert report.summary() == "8 written, 0 already done, 0 failed"
    store = FeatureStore(tmp_path / "st")
    keys = [f["key"] for f in store.frames]
    assert keys == [f"clip/{i:06d}" for i in (0, 2, 4, 6, 8)] + ["img0", "img1", "img2"]
    clip4 = store.frames[2]
    assert (clip4["frame"], clip4["time"], clip4["image_size"], clip4["shape"]) == (4, pytest.approx(0.4), [48, 64],
                                                                                     [32, 24, 32])
    assert store.frames[5]["frame"] is None and store.frames[5]["source"].endswith("img0.png")
    # units: the video (shards of 2 frames), then runs of 2 images
    assert store.shards() == [f"shards/u000000-c000{c}.safetensors" for c in range(3)] + [
        "shards/u000001-c0000.safetensors", "shards/u000002-c0000.safetensors"]
    m = store.manifest
    assert m["format"] == "lseg-feature-store" and m["dtype"] == "float16" and m["checkpoint"] == "ckpt/"
    assert m["compute_dtype"] == "float32"
    assert m["extractor"]["preset"]["name"] == "ours" and m["extractor"]["resolution"] == "half"
    assert m["extractor"]["geometry"] == {"size": 64, "crop_size": 480, "stride": 320, "normalization": "model"}
    assert m["weights_sha256"] == weights_sha256(predictor.model) and m["video_sampling"] == {"fps": 5, "every_n": None}
    # one frame, by key or id, equals the extractor's output in fp16; the shard holds only its own frames
    import av

    with av.open(str(inputs / "clip.mp4")) as c:
        frame4 = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][4]
    want = ex([frame4])[0].half().numpy()
    np.testing.assert_array_equal(store.read("clip/000004"), want)
    np.testing.assert_array_equal(store.read(2), want)
    assert store.read("img2").shape == (32, 15, 32) and store.read("img2").dtype == np.float16
    with safe_open(str(store.path / clip4["shard"]), framework="np") as f:
        assert sorted(f.keys()) == ["clip/000004", "clip/000006"]
        assert [r["frame"] for r in json.loads(f.metadata()["frames"])] == [4, 6]
    with pytest.raises(lseg.LSegError, match="no frame"):
        store.read("nope")


def test_resume_sharding_and_settings_guard(tmp_path: Path, predictor: lseg.LSegPredictor, inputs: Path) -> None:
    ex = FeatureExtractor(predictor, "ours")
    out = tmp_path / "st"
    # two "machines" (shard 0/2 and 1/2) write one store; the second to finish writes the index
    r0 = export_store(ex, [inputs], out, settings=SETTINGS, shard=(0, 2), progress=False)
    assert not (out / "index.json").exists() and r0.summary() == "6 written, 0 already done, 0 failed"
    with pytest.raises(lseg.LSegError, match="incomplete \\(2 of 3 units done\\)"):
        FeatureStore(out)
    export_store(ex, [inputs], out, settings=SETTINGS, shard=(1, 2), progress=False)
    whole = tmp_path / "whole"
    export_store(ex, [inputs], whole, settings=SETTINGS, progress=False)
    a, b = FeatureStore(out), FeatureStore(whole)
    assert a.index == b.index
    for i in range(len(a)):
        np.testing.assert_array_equal(a.read(i), b.read(i))
    # killed mid-video: a shard and the unit record missing -> only that shard is recomputed
    (out / "shards" / "u000000.json").unlink()
    (out / "shards" / "u000000-c0001.safetensors").unlink()
    (out / "index.json").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.safetensors")}
    report = export_store(ex, [inputs], out, settings=SETTINGS, progress=False)
    assert report.summary() == "5 written, 3 already done, 0 failed"  # the video's frames are its unit's
    after = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.safetensors")}
    assert sorted(n for n in after if after[n] != before.get(n)) == ["u000000-c0001.safetensors"]
    assert FeatureStore(out).index == b.index
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left
    with pytest.raises(lseg.LSegError, match="a store made with other settings"):
        export_store(FeatureExtractor(predictor, "openscene"), [inputs], out, settings=SETTINGS, progress=False)


def test_export_to_openscene_and_feature3dgs_layouts(tmp_path: Path, predictor: lseg.LSegPredictor,
                                                     inputs: Path) -> None:
    export_store(FeatureExtractor(predictor, "openscene"), [inputs], tmp_path / "st", settings=SETTINGS,
                 progress=False)
    store = FeatureStore(tmp_path / "st")
    assert store.read("img0").shape == (32, 40, 56)  # OpenScene: the image's own size
    report = export_layout(tmp_path / "st", "openscene", tmp_path / "os")
    assert sorted(str(p.relative_to(tmp_path / "os")) for p in report.written) == sorted(
        [f"clip/{i:06d}.pt" for i in (0, 2, 4, 6, 8)] + ["img0.pt", "img1.pt", "img2.pt"])
    t = torch.load(tmp_path / "os" / "img1.pt")
    assert t.dtype == torch.float16 and t.shape == (32, 48, 48)
    np.testing.assert_array_equal(t.numpy(), store.read("img1"))
    export_layout(tmp_path / "st", "feature3dgs", tmp_path / "f3")
    assert (tmp_path / "f3" / "clip" / "000008_fmap_CxHxW.pt").is_file()
    np.testing.assert_array_equal(torch.load(tmp_path / "f3" / "img2_fmap_CxHxW.pt").numpy(), store.read("img2"))


def test_cli_store_info_reduce_export(tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path / "m")
    common = ["-c", str(tmp_path / "m"), "--device", "cpu", "-q"]
    args = ["features", str(inputs), "-o", str(tmp_path / "st"), "--format", "store", "--preset", "vlmaps",
            "--resolution", "24x32", "--fps", "5", "--reduce", "4", "--frames-per-shard", "4", *common]
    assert main([*args, "--size", "64"]) == 2  # ours' geometry: vlmaps resizes to 520 whatever --size says
    assert "--size, --crop-size and --stride set the single-pass geometry; --preset vlmaps has its own" in capsys.readouterr().err
    assert main(args) == 0
    assert "features: 8 written, 0 already done, 0 failed" in capsys.readouterr().err
    assert main(["store", "info", str(tmp_path / "st")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 8 and info["extractor"]["preset"]["name"] == "vlmaps"
    assert info["extractor"]["resolution"] == [24, 32] and info["reduction"]["k"] == 4
    assert info["precision"] == FeatureStore(tmp_path / "st").manifest["precision"] in ("fp32", "bf16")
    assert FeatureStore(tmp_path / "st").read("img1", reduced=True).shape == (4, 24, 32)
    assert main(["store", "reduce", str(tmp_path / "st"), "8", "-q"]) == 2  # another k: refused ...
    assert "already holds a 4-d reduction" in capsys.readouterr().err
    assert main(["store", "reduce", str(tmp_path / "st"), "8", "--overwrite", "-q"]) == 0  # ... unless asked
    assert json.loads(capsys.readouterr().out)["k"] == 8
    assert main(["store", "export", str(tmp_path / "st"), "--layout", "feature3dgs", "--reduced",
                 "-o", str(tmp_path / "f3")]) == 0
    assert torch.load(tmp_path / "f3" / "img0_fmap_CxHxW.pt").shape == (8, 24, 32)
    # presets are a store feature; the npy layout refuses them
    for store_only in (["--preset", "vlmaps"], ["--frames-per-shard", "4"], ["--workers", "3"], ["--flip"]):
        assert main(["features", str(inputs), "-o", str(tmp_path / "npy"), *store_only, *common]) == 2
        assert "--format store" in capsys.readouterr().err
    for ray_only in (["--workers", "3"], ["--ray-address", "auto"], ["--gpus-per-worker", "1"]):  # were ignored
        assert main(["features", str(inputs), "-o", str(tmp_path / "st2"), "--format", "store", *ray_only,
                     *common]) == 2
        assert "needs --engine ray" in capsys.readouterr().err
    assert main(["features", str(inputs), "-o", str(tmp_path / "st2"), "--format", "store", "--pca", *common]) == 2
    assert "--pca are for --format npy" in capsys.readouterr().err
    assert not (tmp_path / "npy").exists() and not (tmp_path / "st2").exists()  # refused before creating -o


def test_an_interrupted_overwrite_leaves_an_unfinished_store(
        tmp_path: Path, predictor: lseg.LSegPredictor, inputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lseg.features.store as store_module

    ex, out = FeatureExtractor(predictor, "ours"), tmp_path / "st"
    export_store(ex, [inputs], out, settings=SETTINGS, progress=False, reduce=4)
    interrupt_at_call(monkeypatch, store_module, "write_unit", 2)
    with pytest.raises(JobInterrupted) as stopped:  # a Python caller's program stops too, with the report
        export_store(ex, [inputs], out, settings=SETTINGS, progress=False, overwrite=True)
    assert stopped.value.report.interrupted and isinstance(stopped.value, KeyboardInterrupt)
    monkeypatch.undo()
    with pytest.raises(lseg.LSegError, match="incomplete \\(2 of 3 units done\\)"):
        FeatureStore(out)
    report = export_store(ex, [inputs], out, settings=SETTINGS, progress=False, overwrite=True, reduce=4)
    assert report.summary() == "8 written (8 redone: --overwrite), 0 already done, 0 failed"
    store = FeatureStore(out)
    assert len(store) == 8 and store.index["reduction"]["k"] == 4  # the reduction recorded again
    assert store.read("img1", reduced=True).shape[0] == 4


def test_one_folder_by_relative_and_absolute_path_is_one_input(
        tmp_path: Path, predictor: lseg.LSegPredictor, inputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ex, out = FeatureExtractor(predictor, "ours"), tmp_path / "st"
    monkeypatch.chdir(inputs.parent)
    export_store(ex, [inputs.name], out, settings=SETTINGS, progress=False)
    report = export_store(ex, [inputs.resolve()], out, settings=SETTINGS, progress=False)
    assert report.summary() == "0 written, 8 already done, 0 failed"
    with pytest.raises(lseg.LSegError, match="a store made with other inputs"):  # another folder still is not
        export_store(ex, [inputs / "img0.png"], out, settings=SETTINGS, progress=False)


def test_a_rerun_with_nothing_to_extract_still_indexes_and_reduces(
        tmp_path: Path, predictor: lseg.LSegPredictor, inputs: Path) -> None:
    ex, out = FeatureExtractor(predictor, "ours"), tmp_path / "st"
    export_store(ex, [inputs], out, settings=SETTINGS, progress=False)
    stamp = (out / "index.json").stat().st_mtime_ns
    assert export_store(ex, [inputs], out, settings=SETTINGS, progress=False).summary() == (
        "0 written, 8 already done, 0 failed")
    assert (out / "index.json").stat().st_mtime_ns == stamp  # an unchanged index is not rewritten
    # --reduce K added to a finished store's command: the reduction is fitted, not silently skipped
    export_store(ex, [inputs], out, settings=SETTINGS, progress=False, reduce=4)
    assert FeatureStore(out).index["reduction"]["k"] == 4
    # killed after the last unit, before the index: the same command finishes the store
    (out / "index.json").unlink()
    export_store(ex, [inputs], out, settings=SETTINGS, progress=False, reduce=4)
    assert len(FeatureStore(out)) == 8 and FeatureStore(out).index["reduction"]["k"] == 4


def test_exports_and_queries_are_redone_when_the_store_is_extracted_again(
        tmp_path: Path, predictor: lseg.LSegPredictor, inputs: Path) -> None:
    from lseg.features.query import QueryWriter
    from lseg.jobs.engine import run_job

    def query() -> str:
        text = torch.nn.functional.normalize(torch.randn(2, 32), dim=1)
        writer = QueryWriter(FeatureStore(st), ["a", "b"], tmp_path / "q", model={}, text=lambda: (text, 1.0))
        return run_job(writer, progress=False).summary()

    st = tmp_path / "st"
    export_store(FeatureExtractor(predictor, "openscene"), [inputs], st, settings=SETTINGS, progress=False)
    export_layout(st, "openscene", tmp_path / "os")
    assert query() == "8 written, 0 already done, 0 failed"
    # same frames, keys and shapes (both at the image's size), other features
    export_store(FeatureExtractor(predictor, "reference-ss"), [inputs], st, settings=SETTINGS, progress=False,
                 overwrite=True)
    assert export_layout(st, "openscene", tmp_path / "os").summary().startswith("8 written (8 redone")
    np.testing.assert_array_equal(torch.load(tmp_path / "os" / "img1.pt").numpy(), FeatureStore(st).read("img1"))
    assert query().startswith("8 written (8 redone")


def test_units_another_worker_finished_count_their_frames(tmp_path: Path, predictor: lseg.LSegPredictor,
                                                          inputs: Path) -> None:
    from lseg.inference.folder import weights_identity

    ex, out = FeatureExtractor(predictor, "ours"), tmp_path / "st"

    def build() -> FeatureExtractor:  # while this worker loads its model, another one does every unit
        export_store(ex, [inputs], out, settings=SETTINGS, progress=False)
        return ex

    report = export_store(build, [inputs], out, settings=SETTINGS, progress=False, description=ex.describe(),
                          model=weights_identity(ex.model))
    assert report.summary() == "0 written, 8 already done, 0 failed"  # frames, as when planned: not 3 units


def test_a_new_reduction_leaves_no_shard_of_an_earlier_extraction(tmp_path: Path, predictor: lseg.LSegPredictor,
                                                                  inputs: Path) -> None:
    from lseg.features import reduce_store

    ex, out = FeatureExtractor(predictor, "ours"), tmp_path / "st"
    export_store(ex, [inputs], out, settings=StoreSettings(fps=5, frames_per_shard=1), progress=False)
    reduce_store(out, 4)
    export_store(ex, [inputs], out, settings=SETTINGS, progress=False, overwrite=True)  # fewer, larger shards
    reduce_store(out, 4)
    listed = {Path(rel).name for rel in FeatureStore(out).shards()}
    assert {p.name for p in (out / "reduction" / "shards").glob("*.safetensors")} == listed


def test_a_name_clash_in_a_store_names_the_frame_key(tmp_path: Path) -> None:
    from lseg.features.store import plan_units

    for name in ("a.png", "a.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    with pytest.raises(lseg.LSegError, match=r"would both write a \(one frame key in the store\)"):
        plan_units([tmp_path], 2)


def test_an_image_named_as_a_video_frame_is_refused_before_its_key_is_stored_twice(tmp_path: Path) -> None:
    """clip/000000.png and frame 0 of clip.mp4 would both be the key clip/000000 (a read or export returns one of them)."""
    from features.helpers import write_video

    from lseg.features.store import plan_units

    write_video(tmp_path / "clip.mp4", n_frames=2)
    (tmp_path / "clip").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "clip" / "notes.png")  # no frame key: fine
    assert len(plan_units([tmp_path], 2)) == 2
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "clip" / "000000.png")
    with pytest.raises(lseg.LSegError, match=r"clip/000000.png would take the frame key clip/000000 of the video"):
        plan_units([tmp_path], 2)


def test_a_store_made_with_a_relative_checkpoint_is_queried_from_another_folder(
        tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lseg.save_pretrained(lseg.create_model("lseg_tiny_test"), tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    assert main(["features", str(inputs), "-o", "st", "--format", "store", "--fps", "5", "-c", "m", "-q"]) == 0
    assert FeatureStore(tmp_path / "st").manifest["checkpoint"] == str(tmp_path / "m")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["query", "../st", "sky, other", "-o", "q", "-q"]) == 0


def test_a_file_name_that_is_not_utf8_is_a_readable_frame_key(tmp_path: Path, predictor: lseg.LSegPredictor) -> None:
    import os

    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(os.fsdecode(bytes(tmp_path / "in") + b"/caf\xe9.png"))
    export_store(FeatureExtractor(predictor, "ours"), [tmp_path / "in"], tmp_path / "st", progress=False)
    store = FeatureStore(tmp_path / "st")
    assert [f["key"] for f in store.frames] == ["caf\\xe9"] and store.read("caf\\xe9").shape[0] == 32


def test_exports_and_queries_drop_the_frames_a_store_extracted_again_no_longer_has(
        tmp_path: Path, predictor: lseg.LSegPredictor, inputs: Path) -> None:
    """A consumer globbing the export folder read the old sampling's frames beside the new ones."""
    from lseg.features.query import QueryWriter
    from lseg.jobs.engine import run_job

    def query(store: Path, frames: list[int] | None = None) -> None:
        text = torch.nn.functional.normalize(torch.randn(2, 32), dim=1)
        run_job(QueryWriter(FeatureStore(store), ["a", "b"], tmp_path / "q", frames=frames, model={},
                            text=lambda: (text, 1.0)), progress=False)

    def keys(folder: Path, suffix: str) -> list[str]:
        return sorted(p.relative_to(folder).as_posix().removesuffix(suffix) for p in folder.rglob(f"*{suffix}"))

    ex, st, other = FeatureExtractor(predictor, "openscene"), tmp_path / "st", tmp_path / "other"
    export_store(ex, [inputs], st, settings=SETTINGS, progress=False)  # clip frames 0, 2, 4, 6, 8
    (tmp_path / "solo").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "solo" / "solo.png")
    export_store(ex, [tmp_path / "solo"], other, progress=False)  # another store, into the same folders
    for store in (st, other):
        export_layout(store, "openscene", tmp_path / "os")
        query(store)
    export_layout(st, "feature3dgs", tmp_path / "os")  # the other layout of the same frames is kept
    export_store(ex, [inputs], st, settings=StoreSettings(every_n=5), progress=False, overwrite=True)  # 0, 5
    export_layout(st, "openscene", tmp_path / "os")
    query(st, frames=[0])  # a query of some frames keeps the others the store still has
    want = ["clip/000000", "clip/000005", "img0", "img1", "img2", "solo"]
    kept = [f"{k}_fmap_CxHxW" for k in ("clip/000000", "img0", "img1", "img2")]  # not re-exported, still stored
    assert keys(tmp_path / "os", ".pt") == sorted([*want, *kept])
    assert keys(tmp_path / "q", "_labels.png") == ["clip/000000", "img0", "img1", "img2", "solo"]


def test_two_stores_of_one_relative_name_export_into_one_folder(tmp_path: Path, predictor: lseg.LSegPredictor,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """a/st and b/st, each exported from its folder as `st`: the second keeps the first's frames (its records
    name their shards by absolute path, not by `st/...` that would now point into b/st)."""
    for scene, names in (("a", ("x", "y")), ("b", ("z",))):
        (tmp_path / scene / "img").mkdir(parents=True)
        for name in names:
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / scene / "img" / f"{name}.png")
        monkeypatch.chdir(tmp_path / scene)
        export_store(FeatureExtractor(predictor), ["img"], "st", progress=False)
        export_layout("st", "openscene", tmp_path / "exp")
    assert sorted(p.name for p in (tmp_path / "exp").glob("*.pt")) == ["x.pt", "y.pt", "z.pt"]


def test_a_part_rerun_with_other_settings_leaves_no_index_over_mixed_features(
        tmp_path: Path, predictor: lseg.LSegPredictor, inputs: Path) -> None:
    """``--shard 1/2 --overwrite`` with another preset on a finished store: its index listed the other
    part's frames, made with the old settings, under a manifest naming the new ones."""
    out = tmp_path / "st"
    for part in range(2):
        export_store(FeatureExtractor(predictor, "ours"), [inputs], out, settings=SETTINGS, shard=(part, 2),
                     progress=False)
    other = FeatureExtractor(predictor, "openscene")
    report = export_store(other, [inputs], out, settings=SETTINGS, shard=(1, 2), overwrite=True, progress=False)
    assert report.summary() == "2 written (2 redone: extractor changed), 0 already done, 0 failed"
    assert not (out / "index.json").exists()
    with pytest.raises(lseg.LSegError, match="incomplete \\(1 of 3 units done\\)"):
        FeatureStore(out)
    export_store(other, [inputs], out, settings=SETTINGS, shard=(0, 2), progress=False)  # the other part, redone
    whole = tmp_path / "whole"
    export_store(other, [inputs], whole, settings=SETTINGS, progress=False)
    assert FeatureStore(out).index == FeatureStore(whole).index


def test_a_video_replaced_after_a_killed_run_leaves_none_of_that_runs_shards(
        tmp_path: Path, predictor: lseg.LSegPredictor, monkeypatch: pytest.MonkeyPatch) -> None:
    # killed 3 shards into a long clip, then the clip replaced by a short one: the third shard stayed for ever
    from features.helpers import write_video

    write_video(tmp_path / "in" / "clip.mp4", n_frames=30)
    settings, out = StoreSettings(every_n=2, frames_per_shard=2), tmp_path / "st"
    interrupt_at_call(monkeypatch, FeatureExtractor, "__call__", 3)
    with pytest.raises(JobInterrupted):
        export_store(FeatureExtractor(predictor, "ours"), [tmp_path / "in"], out, settings=settings, progress=False)
    assert len(list((out / "shards").glob("*.safetensors"))) == 2
    monkeypatch.undo()
    write_video(tmp_path / "in" / "clip.mp4", n_frames=2)
    export_store(FeatureExtractor(predictor, "ours"), [tmp_path / "in"], out, settings=settings, progress=False)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["u000000-c0000.safetensors", "u000000.json"]
