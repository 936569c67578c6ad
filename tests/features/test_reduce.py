"""Scene-level reduction: the streaming fit is the exact PCA, decode(encode(x)) error, one projection
for every view (lseg.features.reduce, lseg.features.derived.reduce_store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import interrupt_at_call
from features.helpers import make_inputs

import lseg
from lseg.features import FeatureExtractor, FeatureStore, PCAFit, export_store, fit_reduction
from lseg.features.derived import ReduceWriter, reduce_store
from lseg.features.reduce import STRIP_PIXELS
from lseg.features.store import StoreSettings
from lseg.jobs.engine import JobInterrupted


def _data(n: int = 20000, d: int = 24, rank: int = 6, seed: int = 0) -> np.ndarray:
    """Unit vectors near a low-dimensional subspace (as CLIP-space pixel embeddings are)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) + 0.05 * rng.normal(size=(n, d)) + 2.0
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_streaming_fit_is_the_exact_pca_and_merges() -> None:
    x = _data()
    assert x.shape[0] > 2 * STRIP_PIXELS  # several strips
    red = PCAFit(24).update(x).result(6)
    # numpy's exact PCA of all vectors at once (float64 SVD of the centred data)
    xc = x.astype(np.float64) - x.mean(0, dtype=np.float64)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    np.testing.assert_allclose(red.eigenvalues.numpy(), s**2 / len(x), atol=1e-9)
    np.testing.assert_allclose(np.abs(red.components.numpy()), np.abs(vt[:6]), atol=1e-5)
    # sign convention: each component's largest loading is positive
    c = red.components.numpy()
    assert (c[np.arange(6), np.abs(c).argmax(1)] > 0).all()
    # fits of two halves, merged, give the same projection as one pass
    merged = PCAFit(24).update(x[:7000]).merge(PCAFit(24).update(x[7000:])).result(6)
    torch.testing.assert_close(merged.components, red.components, atol=1e-6, rtol=0)
    # mse is the measured reconstruction error over the fitted vectors
    rec = red.decode(red.encode(x)).numpy()
    err = ((rec - x) ** 2).sum(1).mean()
    assert red.mse == pytest.approx(err, rel=1e-3)
    assert red.relative_error == pytest.approx(np.sqrt(err / (x**2).sum(1).mean()), rel=1e-3)
    assert red.relative_error < 0.15 and red.explained_variance_ratio > 0.95
    # maps: the same as their pixels as vectors
    maps = [torch.from_numpy(x[i * 4000 : (i + 1) * 4000].T.reshape(24, 40, 100).copy()) for i in range(5)]
    torch.testing.assert_close(fit_reduction(maps, 6).components, red.components, atol=1e-6, rtol=0)
    with pytest.raises(lseg.LSegError, match="1 <= k <= 24"):
        PCAFit(24).update(x).result(25)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    tmp = tmp_path_factory.mktemp("red")
    torch.manual_seed(0)
    predictor = lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=64)
    export_store(FeatureExtractor(predictor, "ours", "input"), [make_inputs(tmp)], tmp / "st",
                 settings=StoreSettings(fps=5, frames_per_shard=3), progress=False, reduce=8)
    return FeatureStore(tmp / "st")


def test_encode_and_decode_run_on_the_device_of_their_input() -> None:
    """The projection stays on the CPU: a GPU map met it there (a device-mismatch error)."""
    red = PCAFit(24).update(_data()).result(6)
    for x in (torch.zeros(24, 5, 7, device="meta"), torch.zeros(9, 24, device="meta")):  # a device that is not the CPU
        z = red.encode(x)
        assert z.device.type == "meta" and z.shape[0 if x.ndim == 3 else 1] == 6
        assert red.decode(z).device.type == "meta" and red.decode(z).shape == x.shape


def test_one_projection_for_every_view_and_decode_error(store: FeatureStore) -> None:
    red = store.reduction
    assert red is not None and red.k == 8 and red.dim == 32
    assert red.count == sum(np.prod(f["shape"][1:]) for f in store.frames)  # every pixel of every frame
    summary = store.index["reduction"]
    assert summary["k"] == 8 and summary["relative_error"] == pytest.approx(red.relative_error, abs=1e-6)
    sq_err, sq_norm = 0.0, 0.0
    for i in range(len(store)):
        full = torch.from_numpy(store.read(i)).float()
        z = torch.from_numpy(store.read(i, reduced=True)).float()
        # the stored reduced frame is this frame encoded with the one scene projection
        torch.testing.assert_close(z, red.encode(full), atol=2e-3, rtol=2e-3)
        dec = red.decode(z)
        sq_err += float(((dec - full) ** 2).sum())
        sq_norm += float((full**2).sum())
        cos = torch.nn.functional.cosine_similarity(torch.from_numpy(store.read_decoded(i)), full, dim=0)
        assert float(cos.mean()) > 0.9
    # measured decode(encode(x)) error on the stored (fp16) maps = the fit's own figure
    assert np.sqrt(sq_err / sq_norm) == pytest.approx(red.relative_error, rel=0.02)


def test_reduce_all_dimensions_is_lossless(store: FeatureStore, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "st"
    shutil.copytree(store.path, copy)
    assert reduce_store(copy, 32, overwrite=True).summary() == "3 written (3 redone: k changed), 0 already done, 0 failed"
    s = FeatureStore(copy)
    assert s.reduction is not None and s.reduction.mse < 1e-9
    full = torch.from_numpy(s.read(3)).float()
    torch.testing.assert_close(torch.from_numpy(s.read_decoded(3)), full, atol=2e-3, rtol=0)  # fp16 storage only


def test_read_and_read_decoded_give_one_array_type(store: FeatureStore) -> None:
    full, decoded = store.read(0), store.read_decoded(0)
    assert isinstance(full, np.ndarray) and isinstance(decoded, np.ndarray)
    assert full.dtype == np.float16 and decoded.dtype == np.float32 and decoded.shape == full.shape


def test_an_interrupted_reduction_reads_as_none_until_finished(store: FeatureStore, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    copy = tmp_path / "st"
    shutil.copytree(store.path, copy)
    interrupt_at_call(monkeypatch, ReduceWriter, "write", 2)
    with pytest.raises(JobInterrupted):  # one shard 4-d, one deleted, one 8-d
        reduce_store(copy, 4, overwrite=True)
    monkeypatch.undo()
    s = FeatureStore(copy)
    assert s.index["reduction"] is None and s.reduction is None
    with pytest.raises(lseg.LSegError, match="has no reduction"):
        s.read_decoded(0)
    assert reduce_store(copy, 4).summary() == "2 written (1 redone: k changed), 1 already done, 0 failed"
    s = FeatureStore(copy)
    assert s.index["reduction"]["k"] == 4
    assert all(s.read(i, reduced=True).shape[0] == 4 for i in range(len(s)))
    # killed after the last shard, before the index records it: the next run records it
    monkeypatch.setattr(ReduceWriter, "finish", lambda self, report: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        reduce_store(copy, 6, overwrite=True)
    monkeypatch.undo()
    assert FeatureStore(copy).index["reduction"] is None
    report = reduce_store(copy, 6)
    assert report.summary() == "3 written (3 redone: projection changed), 0 already done, 0 failed"
    s = FeatureStore(copy)
    assert s.index["reduction"]["k"] == 6 and s.read_decoded(0).shape[0] == 32
    # a missing shard is a one-line error, not a raw FileNotFoundError
    (copy / s.frames[0]["shard"]).unlink()
    with pytest.raises(lseg.LSegError, match="is missing: the store is damaged"):
        s.read(0)


def test_ctrl_c_in_the_fit_stops_the_job_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C while --reduce fits its PCA: exit 130 and "interrupted" (it was exit 0, after a second fit)."""
    from lseg.cli import main
    from lseg.features import derived

    calls = []

    def fit(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(derived, "fit_reduction", fit)
    args = ["features", str(make_inputs(tmp_path)), "-o", str(tmp_path / "st"), "--format", "store", "--fps", "5",
            "--reduce", "4", "--random-weights", "lseg_tiny_test", "--size", "32", "-q"]
    assert main(args) == 130 and len(calls) == 1
    assert "8 written, 0 already done, 0 failed; interrupted" in capsys.readouterr().err
    with pytest.raises(JobInterrupted):
        reduce_store(tmp_path / "st", 4)
    assert len(calls) == 2
