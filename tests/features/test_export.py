"""Dense feature export: sharding (torchrun), resume, video frames, resolutions, PCA pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import interrupt_at_call
from features.helpers import write_video
from PIL import Image
from process_group import FEATURES_MODEL_ARGS, TwoProcessRun, random_images

import lseg
from lseg.cli import main
from lseg.features import FeatureExtractor, export_features, resize_embeddings
from lseg.jobs.engine import JobInterrupted
from lseg.jobs.inputs import collect_media

MODEL_ARGS = FEATURES_MODEL_ARGS


def _files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def predictor() -> lseg.LSegPredictor:
    torch.manual_seed(0)
    return lseg.LSegPredictor(lseg.create_model("lseg_tiny_test_p32"), size=64)


@pytest.mark.slow
def test_torchrun_two_processes_write_each_output_once(two_processes: TwoProcessRun) -> None:
    # `lseg features` in the two ranks of torchrun --standalone --nproc_per_node=2 (tests/process_group.py)
    assert two_processes.exit_codes["features"] == [0, 0], two_processes.stderr["features"][-3000:]
    stderr = two_processes.stderr["features"]
    # Each rank reports its own part: 3 + 3 written, so no image was done twice.
    assert "features (part 1/2): 3 written, 0 already done, 0 failed" in stderr
    assert "features (part 2/2): 3 written, 0 already done, 0 failed" in stderr
    # no temp files left; each array has its record (the settings that made it)
    out = two_processes.features_out
    assert _files(out) == sorted(["features.json"] + [f"img{i}.{ext}" for i in range(6) for ext in ("json", "npy")])
    for i in range(6):
        arr = np.load(out / f"img{i}.npy")
        assert arr.dtype == np.float16 and arr.shape[0] == 32
    assert json.loads((out / "features.json").read_text())["format"] == "lseg-features"


def test_resume_rewrites_only_missing_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    random_images(tmp_path / "in")
    out = tmp_path / "out"
    args = ["features", str(tmp_path / "in"), "--out", str(out), *MODEL_ARGS]
    assert main(args) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    (out / "img1.npy").unlink()
    (out / "img4.npy").unlink()
    capsys.readouterr()
    assert main(args) == 0
    assert "features: 2 written, 4 already done, 0 failed" in capsys.readouterr().err
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    assert sorted(after) == sorted(before)
    changed = sorted(n for n in after if after[n] != before.get(n))
    assert changed == ["img1.npy", "img4.npy"]


def test_manual_shard_and_settings_guard(
    tmp_path: Path, predictor: lseg.LSegPredictor, capsys: pytest.CaptureFixture[str]
) -> None:
    random_images(tmp_path / "in")
    out = tmp_path / "out"
    report = export_features(predictor, [tmp_path / "in"], out, shard=(1, 3), progress=False)
    assert sorted(p.name for p in report.written) == ["img1.npy", "img4.npy"]
    # Other settings: the outputs made with the old ones are redone, not skipped, not refused.
    report = export_features(predictor, [tmp_path / "in"], out, dtype="float32", progress=False)
    assert len(report.written) == 6 and sorted(p.name for p in report.redone) == ["img1.npy", "img4.npy"]
    assert "dtype changed" in report.summary() and np.load(out / "img1.npy").dtype == np.float32
    assert main(["features", str(tmp_path / "in"), "--out", str(out), "--shard", "3/3", *MODEL_ARGS]) == 2
    assert "error: --shard must be k/M with 0 <= k < M" in capsys.readouterr().err


def test_video_frames(tmp_path: Path, predictor: lseg.LSegPredictor, capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "in" / "clip.mp4"
    video.parent.mkdir()
    write_video(video, n_frames=10, rate=10)
    random_images(tmp_path / "in", n=1)
    out = tmp_path / "out"
    assert main(["features", str(tmp_path / "in"), "--out", str(out), "--fps", "5", *MODEL_ARGS]) == 0
    expected = [f"clip/{i:06d}.npy" for i in (0, 2, 4, 6, 8)]
    assert _files(out) == sorted(["clip/frames.json", *expected, "features.json", "img0.json", "img0.npy"])
    index = json.loads((out / "clip" / "frames.json").read_text())
    assert [f["index"] for f in index["frames"]] == [0, 2, 4, 6, 8]
    assert [f["time"] for f in index["frames"]] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8], abs=1e-3)
    assert np.load(out / "clip" / "000004.npy").shape == (32, 24, 32)  # 48x64 -> working 48x64 -> half
    # Frames differ (the bar grows), so the embeddings do too.
    assert not np.array_equal(np.load(out / "clip" / "000000.npy"), np.load(out / "clip" / "000008.npy"))
    capsys.readouterr()
    assert main(["features", str(tmp_path / "in"), "--out", str(out), "--fps", "5", *MODEL_ARGS]) == 0
    assert "0 written, 6 already done" in capsys.readouterr().err  # frames.json marks the video done
    report = export_features(predictor, [video], tmp_path / "out3", every_n=3, progress=False)
    assert report.summary() == "4 written, 0 already done, 0 failed"  # its frames
    assert _files(tmp_path / "out3") == ["clip/000000.npy", "clip/000003.npy", "clip/000006.npy", "clip/000009.npy",
                                         "clip/frames.json", "features.json"]


def test_resolutions_and_pca(tmp_path: Path, predictor: lseg.LSegPredictor) -> None:
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    half = export_features(predictor, [tmp_path / "a.png"], tmp_path / "half", dtype="float32", progress=False)
    pixels = np.load(half.written[0])
    assert pixels.shape == (32, 23, 32)  # working size 46x64 (long side 64)
    cases = {"input": (46, 64), "original": (50, 70), "20x30": (20, 30)}
    for res, hw in cases.items():
        out = tmp_path / res
        export_features(predictor, [tmp_path / "a.png"], out, dtype="float32", resolution=res, pca=True,
                        progress=False)
        arr = np.load(out / "a.npy")
        assert arr.shape == (32, *hw)
        np.testing.assert_allclose(np.linalg.norm(arr, axis=0), 1.0, atol=1e-5)
        assert Image.open(out / "a_pca.png").size == (hw[1], hw[0])
        # The same two resizes LSeg applies to its logits, in torch, then re-normalised.
        t = torch.from_numpy(pixels)[None]
        ref = torch.nn.functional.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)[..., :46, :64]
        ref = torch.nn.functional.interpolate(ref, size=hw, mode="bilinear", align_corners=True)
        ref = torch.nn.functional.normalize(ref, dim=1)[0].numpy()
        np.testing.assert_allclose(arr, ref, atol=2e-5)
    # Strip-wise computation gives the same result as a single pass.
    small = resize_embeddings(pixels, (46, 64), (50, 70))
    from lseg.features import iter_resized_embeddings

    strips = np.concatenate([s for _, s in iter_resized_embeddings(pixels, (46, 64), (50, 70), rows=7)], axis=1)
    np.testing.assert_array_equal(small, strips)
    with pytest.raises(lseg.LSegError, match="resolution must be"):
        export_features(predictor, [tmp_path / "a.png"], tmp_path / "bad", resolution="quarter")


def test_same_stem_is_an_error(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    with pytest.raises(lseg.LSegError, match="would both write a.npy"):
        collect_media([tmp_path])


def test_a_predictor_factory_needs_what_identifies_the_run(tmp_path: Path) -> None:
    """A function building the model later cannot say its recipe or weights: refused in one line
    before any work, instead of an AttributeError on the function."""
    from lseg.features.store import export_store

    with pytest.raises(TypeError, match="needs model_id and recipe"):
        export_features(lambda: None, [tmp_path], tmp_path / "out", recipe={"size": 64})
    with pytest.raises(TypeError, match="needs description and model"):
        export_store(lambda: None, [tmp_path], tmp_path / "store", model={"name": "x"})
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()


def test_an_interrupted_video_leaves_no_stray_frames_after_a_rerun_with_other_settings(
        tmp_path: Path, predictor: lseg.LSegPredictor, monkeypatch: pytest.MonkeyPatch) -> None:
    from lseg.features.export import NpyWriter

    video = tmp_path / "clip.mp4"
    write_video(video, n_frames=10, rate=10)
    interrupt_at_call(monkeypatch, NpyWriter, "_save", 5)
    with pytest.raises(JobInterrupted):
        export_features(predictor, [video], tmp_path / "out", progress=False)
    monkeypatch.undo()
    assert _files(tmp_path / "out") == sorted(["clip/frames.json", "features.json",
                                               *(f"clip/{i:06d}.npy" for i in range(4))])
    report = export_features(predictor, [video], tmp_path / "out", every_n=5, progress=False)
    assert report.summary() == "2 written (2 redone: video_sampling changed), 0 already done, 0 failed"
    assert _files(tmp_path / "out") == ["clip/000000.npy", "clip/000005.npy", "clip/frames.json",
                                        "features.json"]


def test_infinite_fps_and_scales_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--random-weights", "lseg_tiny_test", "--device", "cpu", "-q", "-o", str(tmp_path / "o")]
    assert main(["features", str(tmp_path), "--fps", "inf", *common]) == 2
    assert main(["features", str(tmp_path), "--format", "store", "--preset", "reference", "--scales", "1,inf",
                 *common]) == 2
    err = capsys.readouterr().err
    assert "error: --fps must be a finite number, got inf" in err and "--scales must be a finite number" in err
    assert "Traceback" not in err


def test_a_map_larger_than_the_free_disk_is_refused_before_writing(tmp_path: Path, predictor: lseg.LSegPredictor,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import lseg.features.export as export_module

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(export_module.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    report = export_features(predictor, [tmp_path / "a.png"], tmp_path / "o", resolution=(900, 900), progress=False)
    # 32 x 900 x 900 float16: 51.8 MB
    assert report.stopped and "a.npy: No space left on device for 51.8 MB (1000 bytes free)" in report.failed[0][1]
    assert not list((tmp_path / "o").glob("*.npy")) and not list((tmp_path / "o").glob(".*tmp*"))


def test_other_video_sampling_redoes_the_videos_only(tmp_path: Path, predictor: lseg.LSegPredictor) -> None:
    """--fps / --every-n change which frames of a video are kept, never a still image's map."""
    from features.helpers import make_inputs

    inputs, out = make_inputs(tmp_path), tmp_path / "out"
    assert export_features(predictor, [inputs], out, progress=False).summary().startswith("13 written")
    report = export_features(predictor, [inputs], out, every_n=5, progress=False)
    assert report.summary() == "2 written (2 redone: video_sampling changed), 3 already done, 0 failed"
    assert json.loads((out / "img0.json").read_text())["recipe"]["video_sampling"] == {"fps": None, "every_n": None}


def test_pca_pictures_are_added_or_kept_without_redoing_the_maps(tmp_path: Path, predictor: lseg.LSegPredictor) -> None:
    """--pca adds a file (as segment's --scores): a re-run without it keeps the pictures and the maps."""
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert export_features(predictor, [tmp_path / "a.png"], out, pca=True, progress=False).summary().startswith("1 wr")
    assert export_features(predictor, [tmp_path / "a.png"], out, progress=False).summary().startswith("0 written, 1 al")
    assert (out / "a_pca.png").is_file()
    assert export_features(predictor, [tmp_path / "a.png"], out, pca=True, progress=False).summary().startswith("0 wr")
    (out / "a_pca.png").unlink()
    assert export_features(predictor, [tmp_path / "a.png"], out, pca=True, progress=False).summary().startswith("1 wr")
    assert json.loads((out / "a.json").read_text())["outputs"] == ["a.npy", "a_pca.png"]


def test_half_resolution_maps_of_sliding_windows_are_unit_vectors(tmp_path: Path) -> None:
    """Overlapping windows average their embeddings (shorter vectors); the stored map is L2-normalised as documented."""
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    torch.manual_seed(0)
    windows = lseg.LSegPredictor(lseg.create_model("lseg_tiny_test_p32"), size=160, crop_size=64,
                                   precision="fp32")
    assert windows.embed_image(tmp_path / "a.png").pixels.norm(dim=0).min() < 1 - 1e-4  # overlaps averaged
    for res in ("half", "original"):  # the same maps as the store's `ours` (original = the half grid: that map)
        export_features(windows, [tmp_path / "a.png"], tmp_path / res, dtype="float32", resolution=res, progress=False)
        arr = np.load(tmp_path / res / "a.npy")
        np.testing.assert_allclose(np.linalg.norm(arr, axis=0), 1.0, atol=1e-5)
        np.testing.assert_allclose(arr, FeatureExtractor(windows, "ours", res)([tmp_path / "a.png"])[0], atol=1e-5)
