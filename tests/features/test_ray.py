"""The store export on Ray Data, on a local 2-CPU cluster: the same store as one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from features.helpers import make_inputs
from PIL import Image

import lseg
from lseg.features import FeatureExtractor, FeatureStore, export_store
from lseg.features.store import StoreSettings

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'lseg[scale]')")


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    mp = pytest.MonkeyPatch()
    # keep the cluster local and quiet: no usage reporting, no dashboard, loopback only
    mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
    mp.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield
    ray.shutdown()
    mp.undo()


@pytest.mark.slow  # a local Ray cluster
def test_ray_store_equals_single_process_store(local_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from lseg.features.ray_export import export_store_ray

    inputs = make_inputs(tmp_path)
    torch.manual_seed(0)
    predictor = lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=64)
    ex = FeatureExtractor(predictor, "ours")
    settings = StoreSettings(fps=5, frames_per_shard=2, batch_size=2)
    export_store(ex, [inputs], tmp_path / "local", settings=settings, progress=False, reduce=4)
    report = export_store_ray(ex, [inputs], tmp_path / "ray", num_workers=2, settings=settings, reduce=4)
    assert report.summary() == "8 written, 0 already done, 0 failed"
    a, b = FeatureStore(tmp_path / "local"), FeatureStore(tmp_path / "ray")
    assert a.manifest == b.manifest and a.index == b.index  # same frames, shards, reduction figures
    for i in range(len(a)):
        np.testing.assert_array_equal(a.read(i), b.read(i))
        np.testing.assert_array_equal(a.read(i, reduced=True), b.read(i, reduced=True))
    assert sorted(p.name for p in (tmp_path / "ray" / "shards").iterdir()) == sorted(
        p.name for p in (tmp_path / "local" / "shards").iterdir())
    # a re-run finds every unit done
    again = export_store_ray(ex, [inputs], tmp_path / "ray", num_workers=2, settings=settings)
    assert again.summary() == "0 written, 8 already done, 0 failed"
    assert FeatureStore(tmp_path / "ray").index == b.index  # its index (and reduction) untouched


@pytest.mark.slow  # a local Ray cluster
def test_ray_redoes_an_edited_image(local_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The actors wrote every unit as "new", which keeps a finished shard of the same frame keys: an edited
    image kept its old features (and the summary said nothing was redone)."""
    from PIL import Image

    from lseg.features.ray_export import export_store_ray

    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.full((40, 56, 3), 60 * i, np.uint8)).save(photos / f"img{i}.png")
    torch.manual_seed(0)
    ex = FeatureExtractor(lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=64), "ours")
    settings = StoreSettings(frames_per_shard=1)
    export_store_ray(ex, [photos], tmp_path / "ray", num_workers=2, settings=settings)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(photos / "img1.png")
    report = export_store_ray(ex, [photos], tmp_path / "ray", num_workers=2, settings=settings)
    assert report.summary() == "1 written (1 redone: input changed), 1 already done, 0 failed"
    export_store(ex, [photos], tmp_path / "local", settings=settings, progress=False)
    np.testing.assert_array_equal(FeatureStore(tmp_path / "ray").read("img1"), FeatureStore(tmp_path / "local").read("img1"))


class _Rows:
    """A dataset that writes one unit, then meets Ctrl-C (``stop``), noting whether progress bars were on."""

    def __init__(self, stop: bool = True) -> None:
        self.stop, self.bars = stop, None

    def map_batches(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.bars = ray.data.DataContext.get_current().enable_progress_bars  # a dataset copies it as it is made
        return self

    def iter_rows(self):  # type: ignore[no-untyped-def]
        yield {"unit": 0, "written": 1, "redone": 0, "failed": "[]"}
        if self.stop:
            raise KeyboardInterrupt
        yield {"unit": 1, "written": 1, "redone": 0, "failed": "[]"}


@pytest.fixture
def fake_ray(tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    """No cluster: ray.init sets a SIGTERM handler of its own, as Ray does; yields (photos, set the dataset)."""
    import signal

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda address=None: signal.signal(signal.SIGTERM, lambda *a: None))
    monkeypatch.setattr(ray, "put", lambda obj: obj)
    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.full((20, 24, 3), 60 * i, np.uint8)).save(photos / f"img{i}.png")
    yield photos, lambda rows: monkeypatch.setattr(ray.data, "from_items", lambda items, **kw: rows)


def test_sigterm_and_ctrl_c_stop_a_ray_export_as_a_local_one(tmp_path: Path, fake_ray) -> None:  # type: ignore[no-untyped-def]
    """ray.init replaced the command's SIGTERM handler (the driver aborted with a stack dump, no summary),
    and Ctrl-C left export_store_ray as a bare KeyboardInterrupt without its report."""
    import signal

    from lseg.features.ray_export import export_store_ray
    from lseg.jobs.engine import JobInterrupted

    def mine(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    photos, use = fake_ray
    use(_Rows())
    old = signal.signal(signal.SIGTERM, mine)
    try:
        ex = FeatureExtractor(lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32), "ours")
        with pytest.raises(JobInterrupted) as info:
            export_store_ray(ex, [photos], tmp_path / "st", settings=StoreSettings(frames_per_shard=1))
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)
    assert info.value.report.summary() == "1 written, 0 already done, 0 failed; interrupted"
    assert not (tmp_path / "st" / "index.json").exists()


def test_quiet_turns_off_ray_datas_progress_bars(tmp_path: Path, fake_ray) -> None:  # type: ignore[no-untyped-def]
    """``lseg features --engine ray -q`` printed Ray Data's progress all the same."""
    from lseg.features.ray_export import export_store_ray

    photos, use = fake_ray
    rows = _Rows(stop=False)
    use(rows)
    before = ray.data.DataContext.get_current().enable_progress_bars
    ex = FeatureExtractor(lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32), "ours")
    export_store_ray(ex, [photos], tmp_path / "st", settings=StoreSettings(frames_per_shard=1), progress=False)
    assert rows.bars is False and ray.data.DataContext.get_current().enable_progress_bars == before


def test_a_ray_export_with_nothing_to_do_builds_no_model(tmp_path: Path) -> None:
    """``lseg features --engine ray`` built the model (and started Ray) on a finished store."""
    from lseg.features.ray_export import export_store_ray
    from lseg.inference.folder import weights_identity

    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.full((20, 24, 3), 60 * i, np.uint8)).save(photos / f"img{i}.png")
    ex = FeatureExtractor(lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32), "ours")
    settings = StoreSettings(frames_per_shard=1)
    export_store(ex, [photos], tmp_path / "st", settings=settings, progress=False)

    def build() -> FeatureExtractor:
        raise AssertionError("the model was built")

    report = export_store_ray(build, [photos], tmp_path / "st", settings=settings, description=ex.describe(),
                              model=weights_identity(ex.model))
    assert report.summary() == "0 written, 2 already done, 0 failed"


def test_a_ray_export_is_refused_while_a_job_with_other_settings_writes_there(tmp_path: Path, fake_ray) -> None:  # type: ignore[no-untyped-def]
    """The Ray driver held no recipe claim: with --overwrite it wrote into a store another job was writing with
    other settings (a mixed store), where two local jobs refuse each other."""
    from lseg.features.ray_export import export_store_ray
    from lseg.jobs.claims import ClaimSet, hold_recipe

    photos, use = fake_ray
    use(_Rows(stop=False))
    ex = FeatureExtractor(lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32), "ours")
    with ClaimSet() as other:
        hold_recipe(other, tmp_path / "st", "a-recipe-of-other-settings", "write")
        with pytest.raises(lseg.LSegError, match="is writing into .* with other settings"):
            export_store_ray(ex, [photos], tmp_path / "st", settings=StoreSettings(frames_per_shard=1), overwrite=True)
    assert not (tmp_path / "st" / "store.json").exists()


def test_a_ray_export_clears_a_killed_runs_leftovers_and_stops_cleanly_in_ray_init(  # type: ignore[no-untyped-def]
        tmp_path: Path, fake_ray, monkeypatch) -> None:
    """The Ray driver restated run_job's setup without its cleanup: a killed run's temp files stayed, and
    Ctrl-C (or SIGTERM) while Ray started was a bare KeyboardInterrupt that left an empty output folder."""
    import subprocess
    import sys

    from lseg.features.ray_export import export_store_ray
    from lseg.io.atomic import _host_tag
    from lseg.jobs.engine import JobInterrupted

    photos, use = fake_ray
    use(_Rows(stop=False))
    ex = FeatureExtractor(lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32), "ours")
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    (tmp_path / "st").mkdir()
    stale = tmp_path / "st" / f".u000000.safetensors.{_host_tag()}-{dead}-0123abcd.tmp.safetensors"
    stale.write_bytes(b"half written")
    export_store_ray(ex, [photos], tmp_path / "st", settings=StoreSettings(frames_per_shard=1))
    assert not stale.exists()

    def interrupted(address=None):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "init", interrupted)
    with pytest.raises(JobInterrupted) as info:
        export_store_ray(ex, [photos], tmp_path / "new", settings=StoreSettings(frames_per_shard=1))
    assert info.value.report.summary() == "0 written, 0 already done, 0 failed; interrupted"
    assert not (tmp_path / "new").exists()
