"""The batch engine's rules, as every command meets them (issue 22's list, tried as a user would):
records and staleness for query and store export, argument checks before any work, no model for a
finished job, a summary on Ctrl-C, concurrent workers that never fail each other or mix recipes, and
the Python folder entry point."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from features.helpers import make_inputs
from hostile_inputs import signal_segment_midway
from PIL import Image

import lseg
from lseg.cli import main
from lseg.errors import LSegError
from lseg.io import Staged
from lseg.jobs.engine import Report, Unit, Writer, run_job

TINY = ["--random-weights", "lseg_tiny_test", "--size", "32", "-q"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    inputs = make_inputs(tmp_path_factory.mktemp("in"))
    out = tmp_path_factory.mktemp("st") / "store"
    assert main(["features", str(inputs), "-o", str(out), "--format", "store", "--fps", "5", *TINY]) == 0
    return out


def test_query_redoes_frames_for_other_labels_and_records_them(store: Path, tmp_path: Path) -> None:
    q = tmp_path / "q"
    assert main(["query", str(store), "chair, table, other", "-o", str(q), "--heatmaps", *TINY[:2], "-q"]) == 0
    assert sorted(p.name for p in q.glob("img0_*")) == [
        "img0_heat_00_chair.png", "img0_heat_01_table.png", "img0_heat_02_other.png", "img0_labels.json",
        "img0_labels.png"]
    assert main(["query", str(store), "dog, other", "-o", str(q), "--heatmaps", *TINY[:2], "-q"]) == 0
    assert sorted(p.name for p in q.glob("img0_*")) == [  # the old labels' heatmaps are gone
        "img0_heat_00_dog.png", "img0_heat_01_other.png", "img0_labels.json", "img0_labels.png"]
    record = json.loads((q / "img0_labels.json").read_text())
    assert record["labels"] == ["dog", "other"] and record["recipe"]["labels"] == ["dog", "other"]
    assert json.loads(Image.open(q / "img0_labels.png").text["lseg:labels"]) == ["dog", "other"]


def test_query_refuses_another_random_model_and_an_empty_frame_range(store: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    q = tmp_path / "q"
    assert main(["query", str(store), "a, b", "-o", str(q), "--random-weights", "lseg_tiny_test_p32"]) == 2
    assert "was made with 'lseg_tiny_test'" in capsys.readouterr().err
    assert main(["query", str(store), "a, b", "-o", str(q), "--random-weights", "lseg_tiny_test",
                 "--frames", "100:200"]) == 2
    assert "selects none of the 8 frames" in capsys.readouterr().err
    assert not q.exists()


def test_store_export_redoes_reduced_after_full_and_refuses_the_store_as_output(
        store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "reduce", str(store), "4", "-q"]) == 0
    x = tmp_path / "x"
    assert main(["store", "export", str(store), "--layout", "openscene", "-o", str(x), "-q"]) == 0
    assert torch.load(x / "img0.pt").shape[0] == 32
    capsys.readouterr()
    assert main(["store", "export", str(store), "--layout", "openscene", "-o", str(x), "--reduced", "-q"]) == 0
    assert "8 written (8 redone: reduced changed)" in capsys.readouterr().err
    assert torch.load(x / "img0.pt").shape[0] == 4
    assert main(["store", "export", str(store), "--layout", "openscene", "-o", str(store / "x")]) == 2
    assert "inside the store" in capsys.readouterr().err and not (store / "x").exists()


def test_reduce_k_is_checked_before_the_fit(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in store.rglob("*"))
    assert main(["store", "reduce", str(store), "0", "--overwrite"]) == 2
    assert main(["store", "reduce", str(store), "33", "--overwrite"]) == 2
    assert "1 <= k <= 32" in capsys.readouterr().err
    assert sorted(p.name for p in store.rglob("*")) == before  # nothing fitted or written


def test_features_store_reduce_above_the_dimension_is_refused_before_extracting(tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture[str]
                                                                                ) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "st"
    assert main(["features", str(inputs), "-o", str(out), "--format", "store", "--reduce", "64", *TINY]) == 2
    assert "the features are 32-d" in capsys.readouterr().err
    assert not list(out.glob("shards/*.safetensors"))


def test_a_finished_job_builds_no_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(photo)
    args = ["segment", str(photo), "-l", "a, b", "-o", str(tmp_path / "o"), *TINY]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "0 written, 1 already done" in err and "running on" not in err and "random weights" not in err


class _Stops(Writer):
    """Three units; the second one's computation is interrupted (Ctrl-C)."""

    kind = "test"

    def __init__(self, out: Path) -> None:
        self.out = out

    def units(self) -> list[Unit]:
        return [Unit(Path(f"in{i}"), [self.out / f"o{i}.txt"], self.out / f"o{i}.json") for i in range(3)]

    def compute_one(self, unit: Unit) -> str:
        if unit.source.name == "in1":
            raise KeyboardInterrupt
        return unit.source.name

    def write(self, unit: Unit, result: str, staged: Staged) -> dict:
        staged.write(unit.targets[0], lambda p: p.write_text(result))
        return {}


def test_ctrl_c_returns_what_was_written(tmp_path: Path) -> None:
    report = run_job(_Stops(tmp_path), progress=False)
    assert report.interrupted and report.summary() == "1 written, 0 already done, 0 failed; interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o0.json", "o0.txt"]  # nothing half-made, no claims


class _Echo(Writer):
    """One unit, o.txt (holding the writer's ``kind``) and its record o.json."""

    def __init__(self, out: Path, kind: str) -> None:
        self.out, self.kind = out, kind

    def units(self) -> list[Unit]:
        return [Unit(Path("in"), [self.out / "o.txt"], self.out / "o.json")]

    def write(self, unit: Unit, result: None, staged: Staged) -> dict:
        staged.write(unit.targets[0], lambda p: p.write_text(self.kind))
        return {}


def test_another_commands_outputs_are_refused_not_redone(tmp_path: Path) -> None:
    """`lseg query -o seg` where `lseg segment` wrote (or `store export` where `features` wrote): the same
    names, but not a re-run with other settings: nothing is replaced unless --overwrite."""
    assert run_job(_Echo(tmp_path, "segment"), progress=False).written
    with pytest.raises(LSegError, match=r"o.json records the outputs of another command \(segment\)"):
        run_job(_Echo(tmp_path, "query"), progress=False)
    assert (tmp_path / "o.txt").read_text() == "segment"
    assert run_job(_Echo(tmp_path, "query"), overwrite=True, progress=False).written
    assert (tmp_path / "o.txt").read_text() == "query"


class _StopsWriting(_Stops):
    """Ctrl-C while the second unit is written (its files discarded)."""

    def compute_one(self, unit: Unit) -> str:
        return unit.source.name

    def write(self, unit: Unit, result: str, staged: Staged) -> dict:
        if result == "in1":
            raise KeyboardInterrupt
        return super().write(unit, result, staged)


def test_ctrl_c_while_writing_does_not_count_the_discarded_unit(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE")  # the tests' environment hides bars
    report = run_job(_StopsWriting(tmp_path), progress=True)
    assert report.summary() == "1 written, 0 already done, 0 failed; interrupted"
    assert capsys.readouterr().err.splitlines()[-1].split("|")[-1].lstrip().startswith("1/3 ")  # the bar: not 2/3


@pytest.mark.slow  # SIGINT to a process
def test_the_cli_prints_the_summary_on_ctrl_c(tmp_path: Path) -> None:
    code, err = signal_segment_midway(tmp_path, signal.SIGINT)
    assert code == 130
    assert "segment (into" in err and "already done" in err and "; interrupted" in err


def test_two_workers_with_other_settings_never_mix(tmp_path: Path) -> None:
    """A live job holds the folder's recipe: a job with other settings is refused while it runs."""
    from lseg.jobs.claims import ClaimSet, hold_recipe

    with ClaimSet() as first:
        hold_recipe(first, tmp_path, "recipe-a", "write")
        with ClaimSet() as same:
            hold_recipe(same, tmp_path, "recipe-a", "write")  # the same settings share the folder
        with ClaimSet() as other, pytest.raises(LSegError, match="with other settings"):
            hold_recipe(other, tmp_path, "recipe-b", "write")
    with ClaimSet() as later:  # the first has ended: its claim is gone
        hold_recipe(later, tmp_path, "recipe-b", "write")


def test_segment_folder_and_per_item_failures(tmp_path: Path, tiny_model) -> None:
    photos = tmp_path / "in"
    photos.mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(photos / "a.png")
    (photos / "b.png").write_bytes(b"not an image")
    predictor = lseg.LSegPredictor(tiny_model, size=32)
    options = lseg.SegmentOptions(out=str(tmp_path / "o"), quiet=True)
    report = lseg.segment_folder(predictor, photos, "sky, other", options)
    assert isinstance(report, Report) and report.summary() == "1 written, 0 already done, 1 failed"
    assert (tmp_path / "o" / "a_labels.png").is_file() and not (tmp_path / "o" / "b_labels.png").exists()
    assert lseg.segment_folder(predictor, photos, "sky, other", options).summary().startswith("0 written, 1 already")
    results = predictor.segment_batch([photos / "a.png", photos / "b.png"], "sky, other", errors="return")
    assert isinstance(results[0], lseg.SegmentationResult) and isinstance(results[1], lseg.ImageLoadError)
    with pytest.raises(lseg.ImageLoadError):
        predictor.segment_batch([photos / "a.png", photos / "b.png"], "sky, other")


def test_ctrl_c_in_segment_folder_reaches_the_caller(tmp_path: Path, tiny_model, monkeypatch) -> None:
    """The job's report swallowed Ctrl-C: `for f in folders: lseg.segment_folder(...)` went on to the next."""
    photos = tmp_path / "in"
    photos.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(photos / f"{name}.png")
    predictor = lseg.LSegPredictor(tiny_model, size=32, batch_size=1)  # one image per call
    segment_batch = predictor.segment_batch
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return segment_batch(*args, **kwargs)

    monkeypatch.setattr(predictor, "segment_batch", interrupted)
    with pytest.raises(KeyboardInterrupt) as stopped:
        lseg.segment_folder(predictor, photos, "sky, other", lseg.SegmentOptions(out=str(tmp_path / "o"), quiet=True))
    assert stopped.value.report.summary() == "1 written, 0 already done, 0 failed; interrupted"  # JobInterrupted
    assert (tmp_path / "o" / "a_labels.png").is_file() and not (tmp_path / "o" / "b_labels.png").exists()


def test_the_predictor_never_changes_the_callers_model(tiny_model) -> None:
    model = lseg.create_model("lseg_tiny_test").train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    predictor = lseg.LSegPredictor(model, precision="bf16", size=32)
    assert predictor.model is not model and predictor.precision == "bf16" and predictor.model.numerics == "fast"
    assert model.training and model.numerics == "plain" and model.precision == "fp32"
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    owned = lseg.LSegPredictor(model, precision="bf16", inplace=True)
    assert owned.model is model and model.precision == "bf16" and not model.training


def test_nothing_to_process_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    with caplog.at_level("WARNING", logger="lseg"):
        report = lseg.segment_folder(lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32),
                                     tmp_path / "empty", "a, b", lseg.SegmentOptions(out=tmp_path / "o", quiet=True))
    assert report.summary() == "0 written, 0 already done, 0 failed"
    assert "segment: nothing to process (an empty folder, or no files of a supported type)" in caplog.text


def test_multiscale_segment_is_not_redone_for_sizes_it_does_not_use(tmp_path: Path, tiny_model) -> None:
    photos = tmp_path / "in"
    photos.mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(photos / "a.png")
    options = lseg.SegmentOptions(out=str(tmp_path / "o"), multiscale=True, quiet=True)
    assert lseg.segment_folder(lseg.LSegPredictor(tiny_model, size=32), photos, "sky, other",
                               options).summary().startswith("1 written")
    again = lseg.LSegPredictor(tiny_model, size=64, crop_size=64, stride=32)  # the evaluator has its own sizes
    assert lseg.segment_folder(again, photos, "sky, other", options).summary().startswith("0 written, 1 already")


def test_an_input_replaced_under_the_same_name_is_redone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Another image saved as a.png (or the same one edited) is redone on a re-run; an untouched one is not."""
    photos, out = tmp_path / "in", tmp_path / "o"
    photos.mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(photos / "a.png")
    Image.fromarray(np.full((20, 30, 3), 30, np.uint8)).save(photos / "b.png")
    args = ["segment", str(photos), "-l", "sky, other", "-o", str(out), *TINY]
    assert main(args) == 0
    Image.fromarray(np.full((24, 40, 3), 200, np.uint8)).save(photos / "a.png")
    capsys.readouterr()
    assert main(args) == 0
    assert "1 written (1 redone: input changed), 1 already done" in capsys.readouterr().err
    assert Image.open(out / "a_labels.png").size == (40, 24)
    assert json.loads((out / "a_labels.json").read_text())["inputs"][0][0] == (photos / "a.png").stat().st_size
    assert main(args) == 0 and "0 written, 2 already done" in capsys.readouterr().err


def test_a_store_redoes_a_run_of_images_when_one_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs, out = make_inputs(tmp_path), tmp_path / "store"
    (inputs / "clip.mp4").unlink()
    args = ["features", str(inputs), "-o", str(out), "--format", "store", "--frames-per-shard", "2", *TINY]
    assert main(args) == 0
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(inputs / "img1.png")  # the second of the first run
    capsys.readouterr()
    assert main(args) == 0
    assert "2 written (2 redone: input changed), 1 already done" in capsys.readouterr().err


def test_a_run_of_images_another_worker_holds_counts_its_images(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The summary counts images: a store's run of two images a live worker holds is 2 left to it."""
    from lseg.features.reader import unit_record
    from lseg.jobs.claims import ClaimSet

    inputs, out = make_inputs(tmp_path), tmp_path / "store"
    (inputs / "clip.mp4").unlink()
    with ClaimSet(heartbeat=0) as other:
        assert other.take(unit_record(out, 0))  # img0 and img1
        assert main(["features", str(inputs), "-o", str(out), "--format", "store", "--frames-per-shard", "2",
                     *TINY]) == 0
    assert "1 written, 0 already done, 0 failed, 2 left to other workers" in capsys.readouterr().err


class _SlowModel(_Stops):
    """Ctrl-C while the model loads."""

    def setup(self) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_while_the_model_loads_leaves_no_empty_output_folder(tmp_path: Path) -> None:
    report = run_job(_SlowModel(tmp_path / "out"), progress=False)
    assert report.interrupted and not (tmp_path / "out").exists()


class _Ahead(Writer):
    """Three units, all claimed ahead (as a loader prefetches); with recipe "b", Ctrl-C after the first."""

    kind = "test"

    def __init__(self, out: Path, recipe: str) -> None:
        self.out, self._recipe = out, recipe

    def units(self) -> list[Unit]:
        return [Unit(Path(f"in{i}"), [self.out / f"o{i}.txt"], self.out / f"o{i}.json") for i in range(3)]

    def recipe(self) -> dict:
        return {"r": self._recipe}

    def compute(self, units):
        claimed = list(units)
        yield claimed[0], None
        if self._recipe == "b":
            raise KeyboardInterrupt
        yield from ((u, None) for u in claimed[1:])

    def write(self, unit: Unit, result: None, staged: Staged) -> dict:
        staged.write(unit.targets[0], lambda p: p.write_text(self._recipe))
        return {}


def test_ctrl_c_in_a_redo_keeps_the_old_files_of_the_units_claimed_ahead(tmp_path: Path) -> None:
    assert run_job(_Ahead(tmp_path, "a"), progress=False).summary() == "3 written, 0 already done, 0 failed"
    report = run_job(_Ahead(tmp_path, "b"), progress=False)
    assert report.interrupted and report.summary() == "1 written (1 redone: r changed), 0 already done, 0 failed; interrupted"
    assert [(tmp_path / f"o{i}.txt").read_text() for i in range(3)] == ["b", "a", "a"]
    assert run_job(_Ahead(tmp_path, "c"), progress=False).summary().startswith("3 written (3 redone: r changed)")


def test_ctrl_c_in_an_overwrite_keeps_the_old_files_of_the_units_claimed_ahead(tmp_path: Path) -> None:
    class SameRecipe(_Ahead):  # recipe "a" as before; Ctrl-C after the first unit, as with "b"
        def recipe(self) -> dict:
            return {"r": "a"}

    run_job(_Ahead(tmp_path, "a"), progress=False)
    report = run_job(SameRecipe(tmp_path, "b"), overwrite=True, progress=False)
    assert report.summary() == "1 written (1 redone: --overwrite), 0 already done, 0 failed; interrupted"
    assert [(tmp_path / f"o{i}.txt").read_text() for i in range(3)] == ["b", "a", "a"]


class _Video(Writer):
    """One unit writing its frame folder as it goes (a video); ``bad``: its file cannot be decoded."""

    kind = "test"

    def __init__(self, out: Path, bad: bool) -> None:
        self.out, self.bad = out, bad

    def units(self) -> list[Unit]:
        return [Unit(Path("v.mp4"), [], self.out / "v" / "frames.json", folder=self.out / "v")]

    def write(self, unit: Unit, result: None, staged: Staged) -> dict:
        if self.bad:
            raise LSegError("cannot read video 'v.mp4': it has no video stream")
        unit.targets.append(unit.folder / "000000.npy")
        unit.targets[0].write_text("frame")
        return {}


def test_a_video_that_cannot_be_read_leaves_no_frame_folder(tmp_path: Path) -> None:
    # `lseg features clips/ -o feats` with an audio-only clip left feats/<clip>/frames.json, pending, for ever
    report = run_job(_Video(tmp_path, bad=True), progress=False)
    assert len(report.failed) == 1 and list(tmp_path.iterdir()) == []
    assert run_job(_Video(tmp_path, bad=False), progress=False).written
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["000000.npy", "frames.json"]
