"""ONNX export: two graphs, run with onnxruntime, compared with eager PyTorch.

A dynamo export takes 10-30 s on 2 cores, so the tests share two (marked ``slow``): the dynamic-size
export of the tiny model with the bottleneck block, and the CLI's fixed-size export of the ViT-B/32
layout with CLIP's normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from conftest import make_photo

import lseg
from lseg.cli import main
from lseg.export.onnx import export_onnx
from lseg.export.onnx_runtime import OnnxPredictor
from lseg.geometry import pad_to_multiple, resize_bilinear
from lseg.models.lseg import LSeg

ATOL = 1e-4


@pytest.fixture(scope="module")
def block_model() -> LSeg:
    """Tiny random model with the bottleneck spatial block (exercises the numpy block too)."""
    torch.manual_seed(0)
    cfg = lseg.get_config("lseg_tiny_test").replace(arch_option=1, block_depth=2, activation="lrelu")
    return LSeg(cfg).eval()


@pytest.fixture(scope="module")
def exported(block_model: LSeg, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dynamic-size export (one dynamo export takes 10-30 s: the tests share two of them)."""
    out = tmp_path_factory.mktemp("onnx")
    result = export_onnx(block_model, out, size=(64, 96), verify=True)  # verify: odd sizes too
    assert result.exporter == "dynamo" and result.dynamic_size
    assert set(result.max_abs_diff) >= {"image 64x96", "image 49x77"} and max(result.max_abs_diff.values()) < ATOL
    return out


#: CLIP's normalisation: black is a different value per channel.
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def clip_norm_model() -> LSeg:
    """The ViT-B/32 layout with the bottleneck block and CLIP's normalisation (each channel's own black)."""
    torch.manual_seed(0)
    cfg = lseg.get_config("lseg_tiny_test_p32").replace(arch_option=1, block_depth=2, activation="lrelu",
                                                        mean=CLIP_MEAN, std=CLIP_STD)
    return LSeg(cfg).eval()


@pytest.fixture(scope="module")
def fixed_export(clip_norm_model: LSeg, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``lseg export onnx -c FOLDER --size 64 --fixed-size`` of that model: (folder, stderr)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("onnx_fixed")
    folder = lseg.save_pretrained(clip_norm_model, root / "model")
    out = root / "onnx"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["export", "onnx", "-c", str(folder), "--size", "64", "--fixed-size", "--out", str(out)]) == 0
    return out, err.getvalue()


@pytest.mark.slow
def test_export_files_and_metadata(exported: Path, block_model: LSeg) -> None:
    assert sorted(p.name for p in exported.iterdir()) == [
        "image_encoder.onnx", "lseg_onnx.json", "text_encoder.onnx"
    ]
    meta = json.loads((exported / "lseg_onnx.json").read_text())
    assert meta["dynamic_size"] is True and meta["exporter"] == "dynamo"
    assert meta["size_multiple"] == 32 and meta["pad_value"] == -1.0
    assert meta["logit_scale"] == pytest.approx(1 / 0.07)
    assert meta["spatial_block"]["bottleneck"] is True and meta["spatial_block"]["depth"] == 2
    assert lseg.LSegConfig.from_dict(meta["model"]) == block_model.config


@pytest.mark.slow
@pytest.mark.parametrize("hw", [(64, 96), (49, 77), (160, 32)])  # example size, odd/non-32, another
def test_image_graph_matches_pytorch(exported: Path, block_model: LSeg, hw: tuple[int, int]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported / "image_encoder.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(hw[0]))
    with torch.no_grad():
        ref = block_model.encode_image(x).numpy()
    padded = pad_to_multiple(x.numpy(), -1.0)
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    got = session.run(None, {"image": padded})[0]
    assert got.shape[-2:] == (padded.shape[-2] // 2, padded.shape[-1] // 2)
    got = got[..., : (hw[0] + 1) // 2, : (hw[1] + 1) // 2]
    assert got.shape == ref.shape == (1, 32, (hw[0] + 1) // 2, (hw[1] + 1) // 2)
    diff = float(np.abs(got - ref).max())
    print(f"image {hw}: max abs diff {diff:.2e}")
    assert diff < ATOL


@pytest.mark.slow
def test_text_graph_dynamic_labels_and_tokens(exported: Path, block_model: LSeg) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported / "text_encoder.onnx"), providers=["CPUExecutionProvider"])
    for labels in (["dog"], ["dog", "grass", "sky", "other"], ["a very long description of a red car", "x"]):
        tokens = block_model.text_encoder.tokenize(labels)
        with torch.no_grad():
            ref = block_model.text_encoder.encode_tokens(tokens).numpy()
        trimmed = tokens[:, : int(tokens.argmax(-1).max()) + 1]
        for t in (trimmed, tokens):  # cut after the longest label, and the full 77-token context
            got = session.run(None, {"tokens": t.numpy()})[0]
            diff = float(np.abs(got - ref).max())
            print(f"text {tuple(t.shape)}: max abs diff {diff:.2e}")
            assert got.shape == ref.shape and diff < ATOL


@pytest.mark.slow
def test_onnx_predictor_matches_torch_predictor(exported: Path, block_model: LSeg, photo: np.ndarray) -> None:
    labels = "dog, grass, sky, sun, other"
    ref = lseg.LSegPredictor(block_model, size=None).segment(photo, labels)  # no resize: same input
    pred = OnnxPredictor(exported, size=None)
    got = pred.segment(photo, labels)
    assert got.labels == ref.labels
    assert got.logits.shape == tuple(ref.logits.shape)
    diff = float(np.abs(got.logits - ref.logits).max())
    print(f"logits (spatial block, x2 upsample in numpy): max abs diff {diff:.2e}")
    assert diff < 1e-3  # logits are scaled by 14.3 and go through the block twice
    assert got.label_map.dtype == np.int32
    # The argmax may only differ where two labels are (numerically) tied.
    assert (got.label_map == ref.label_map).mean() > 0.999
    np.testing.assert_allclose(got.probs, ref.probs, atol=1e-4)
    # The text embeddings are cached: a second label set re-uses the image embedding.
    emb = pred.embed_image(photo)
    again = pred.segment(emb, ["sky", "grass"])
    assert again.label_map.shape == photo.shape[:2] and set(np.unique(again.label_map)) <= {0, 1}


def test_resize_bilinear_matches_torch() -> None:
    x = np.random.default_rng(0).normal(size=(3, 7, 5)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x)[None], size=(15, 11), mode="bilinear",
                                          align_corners=True)[0].numpy()
    np.testing.assert_allclose(resize_bilinear(x, (15, 11)), ref, atol=1e-5)


@pytest.mark.slow
def test_cli_fixed_size_export(fixed_export: tuple[Path, str], photo: np.ndarray) -> None:
    out, stderr = fixed_export
    assert "max abs diff" in stderr
    meta = json.loads((out / "lseg_onnx.json").read_text())
    assert meta["dynamic_size"] is False and meta["input_size"] == [64, 64]
    assert max(meta["max_abs_diff"].values()) < ATOL
    # A fixed-size graph gets letterboxed images: 96x128 -> 48x64 padded to 64x64.
    result = OnnxPredictor(out).segment(photo, "sky, grass")
    assert result.label_map.shape == photo.shape[:2]
    assert result.logits.shape == (2, 48, 64)


def test_predictor_rejects_non_export_folder(tmp_path: Path) -> None:
    with pytest.raises(lseg.CheckpointError, match="not an lseg ONNX export"):
        OnnxPredictor(tmp_path)


@pytest.mark.slow
def test_dynamic_export_pads_non_multiple_of_32_like_torch(exported: Path, block_model: LSeg) -> None:
    # 49x77 (no resize with size=None) is padded to 64x96 with normalised black, as encode_image pads
    image = make_photo(49, 77, seed=5)
    labels = ["sky", "grass", "sun", "other"]
    ref = lseg.LSegPredictor(block_model, size=None).segment(image, labels)
    got = OnnxPredictor(exported, size=None).segment(image, labels)
    assert got.logits.shape == tuple(ref.logits.shape) == (4, 49, 77)
    np.testing.assert_allclose(got.logits, ref.logits, atol=1e-3, rtol=0)
    assert (got.label_map == ref.label_map).mean() > 0.999
    np.testing.assert_allclose(got.probs, ref.probs, atol=1e-4)


@pytest.mark.slow
def test_fixed_size_letterbox_matches_torch(fixed_export: tuple[Path, str], clip_norm_model: LSeg) -> None:
    # A 64x64 graph; a 42x64 image is letterboxed (padded bottom/right to 64x64) and must give what
    # the torch predictor gives on the same image (it pads to a multiple of 32, i.e. the same 64x64).
    out, _ = fixed_export
    image = make_photo(42, 64, seed=6)
    labels = ["sky", "grass", "other"]
    pred = OnnxPredictor(out)
    assert pred.working_size(42, 64) == (42, 64) and pred.working_size(84, 128) == (42, 64)
    got = pred.segment(image, labels)
    ref = lseg.LSegPredictor(clip_norm_model, size=64).segment(image, labels)
    assert got.logits.shape == tuple(ref.logits.shape) == (3, 42, 64)
    np.testing.assert_allclose(got.logits, ref.logits, atol=1e-3, rtol=0)
    assert (got.label_map == ref.label_map).mean() > 0.999


@pytest.mark.slow
def test_other_normalisation_pads_with_its_black(fixed_export: tuple[Path, str], clip_norm_model: LSeg) -> None:
    # CLIP's normalisation: black is a different value per channel; the metadata carries all three and
    # the runtime pads with them, as encode_image does (the letterbox pads a 49x77 image, resized to
    # 41x64, to 64x64; the dynamic export's verify checks odd sizes against eager PyTorch).
    out, _ = fixed_export
    meta = json.loads((out / "lseg_onnx.json").read_text())
    assert max(meta["max_abs_diff"].values()) < ATOL
    black = [-m / s for m, s in zip(CLIP_MEAN, CLIP_STD, strict=True)]
    assert meta["pad_value"] == pytest.approx(black)
    image = make_photo(49, 77, seed=7)
    ref = lseg.LSegPredictor(clip_norm_model, size=64).segment(image, ["sky", "grass"])
    got = OnnxPredictor(out).segment(image, ["sky", "grass"])
    assert got.logits.shape == tuple(ref.logits.shape) == (2, 41, 64)
    np.testing.assert_allclose(got.logits, ref.logits, atol=1e-3, rtol=0)


def test_a_failed_re_export_leaves_no_old_metadata(tmp_path: Path, tiny_model: LSeg,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """lseg_onnx.json is removed before any graph is written: a failed export is refused as a whole,
    never run as new graphs with the old metadata."""
    from lseg.errors import CheckpointError, LSegError
    from lseg.export import onnx

    out = tmp_path / "onnx"
    out.mkdir()
    (out / "lseg_onnx.json").write_text(json.dumps({"format": "lseg-onnx", "version": 1}))  # the last one's
    written: list[str] = []

    def fail_second(module, example, path: Path, *args, **kwargs) -> None:
        written.append(path.name)
        if len(written) == 2:
            raise LSegError(f"ONNX export of {path.name} failed: interrupted")
        path.write_bytes(b"new graph")

    monkeypatch.setattr(onnx, "_export_graph", fail_second)
    with pytest.raises(LSegError, match="interrupted"):
        export_onnx(tiny_model, out, size=64, verify=False)
    assert written == ["image_encoder.onnx", "text_encoder.onnx"] and not (out / "lseg_onnx.json").exists()
    with pytest.raises(CheckpointError, match="has no lseg_onnx.json"):
        OnnxPredictor(out)


@pytest.mark.parametrize(("arch_option", "depth"), [(2, 0), (2, 1), (1, 0), (2, 3)])
def test_numpy_scoring_applies_the_spatial_block_as_torch_does(arch_option: int, depth: int) -> None:
    """OnnxPredictor.score runs the block max(1, depth) times, the last pass not activated, as LSeg._head."""
    from lseg.export.onnx import _metadata

    torch.manual_seed(0)
    cfg = lseg.get_config("lseg_tiny_test").replace(arch_option=arch_option, block_depth=depth,
                                                    activation="tanh")
    model = LSeg(cfg).eval()
    with torch.no_grad():
        model.spatial_block.conv.weight.normal_()  # a block that changes the logits
    pred = OnnxPredictor.__new__(OnnxPredictor)  # score needs the metadata only, no graphs
    pred.meta = _metadata(model, 18, True, (32, 32), {})
    pred.logit_scale = np.float32(pred.meta["logit_scale"])
    gen = torch.Generator().manual_seed(1)
    pixels = torch.nn.functional.normalize(torch.randn(1, cfg.embed_dim, 6, 7, generator=gen), dim=1)
    text = torch.nn.functional.normalize(torch.randn(3, cfg.embed_dim, generator=gen), dim=1)
    with torch.no_grad():
        ref = model.score(pixels, text, size=(11, 13))[0].numpy()
    got = pred.score(pixels[0].numpy(), text.numpy(), (11, 13))
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path: Path, tiny_model: LSeg, tiny_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from lseg.errors import OutputWriteError

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(OutputWriteError, match=r"^cannot write .*afile/sub: Not a directory; check the"):
        export_onnx(tiny_model, afile / "sub", size=64, verify=False)
    assert main(["export", "onnx", "-c", str(tiny_dir), "-o", str(afile / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and "Not a directory" in err and "Traceback" not in err


def test_onnx_predictor_arguments_are_checked_as_lseg_predictor_does(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from lseg.errors import CheckpointError, ConfigError
    from lseg.export.onnx_runtime import OnnxSegmentation

    for size in (0, -5, 2.5, True):  # LSegPredictor refuses these too; 0 used to segment a 1x1 image
        with pytest.raises(ConfigError, match="size must be an int of at least 1"):
            OnnxPredictor(tmp_path, size=size)
    monkeypatch.setenv("HOME", str(tmp_path))  # ~ is the home folder, as everywhere in lseg
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "lseg_onnx.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match=f"^{tmp_path / 'x' / 'lseg_onnx.json'}: not an lseg ONNX"):
        OnnxPredictor("~/x")
    (tmp_path / "file.png").write_bytes(b"\x89PNG")
    with pytest.raises(CheckpointError, match="file.png is a file, not an lseg ONNX export folder"):
        OnnxPredictor(tmp_path / "file.png")
    # mask as SegmentationResult.mask: a name (case-insensitive) or an index
    label_map = np.array([[0, 1], [1, 1]], np.int32)
    seg = OnnxSegmentation(["dog", "grass"], label_map, np.zeros((2, 1, 1), np.float32), (2, 2))
    np.testing.assert_array_equal(seg.mask(0), [[True, False], [False, False]])
    np.testing.assert_array_equal(seg.mask("Dog"), seg.mask("dog"))
    np.testing.assert_array_equal(seg.mask(np.int64(1)), seg.mask("grass"))
    with pytest.raises(IndexError):
        seg.mask(2)
    with pytest.raises(KeyError, match="'cat' is not one of the labels"):
        seg.mask("cat")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_a_model_not_in_fp32_is_refused_before_anything_is_written(tmp_path: Path, precision: str) -> None:
    """A bf16 model exported graphs that onnxruntime cannot load (InvalidGraph: bfloat16 Conv), after the
    export had already replaced the folder's graphs."""
    from lseg.errors import LSegError

    model = lseg.create_model("lseg_tiny_test").set_precision(precision)
    with pytest.raises(LSegError, match=rf"^a {precision} model does not export to ONNX .*set_precision\('fp32'\)"):
        export_onnx(model, tmp_path / "out", size=64)
    assert not (tmp_path / "out").exists() and model.precision == precision
