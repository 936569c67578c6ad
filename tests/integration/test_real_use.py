"""Issue 10, item by item, from the user's side: CLI invocations and API calls, their exit codes,
messages and files (tiny random weights, small photos)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_photo
from PIL import Image

import lseg
from lseg.cli import build_parser, main

RANDOM = ["--random-weights", "lseg_tiny_test", "--size", "64", "-q"]


@pytest.fixture
def pin(tmp_path: Path) -> Path:
    d = tmp_path / "pin"
    d.mkdir()
    Image.fromarray(make_photo(60, 80, seed=1)).save(d / "chelsea.png")
    Image.fromarray(make_photo(48, 64, seed=2)).save(d / "coffee.jpg")
    return d


def _err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# 1 ------------------------------------------------------------------------------- honest re-runs

def test_01_rerun_redoes_exactly_the_outputs_whose_recipe_changed(pin, tmp_path, capsys):
    seg = tmp_path / "seg"
    base = ["segment", str(pin), "--out", str(seg), "--scores", *RANDOM]
    assert main([*base, "--labels", "cat, person, coffee, other"]) == 0
    assert main([*base, "--labels", "cat, person, coffee, other"]) == 0
    assert "0 written, 2 already done" in capsys.readouterr().err
    assert main([*base, "--labels", "dog, car, sky"]) == 0
    assert "2 written (2 redone: labels changed), 0 already done" in capsys.readouterr().err
    scores = np.load(seg / "chelsea_scores.npz")
    assert list(scores["labels"]) == ["dog", "car", "sky"] and scores["probs"].shape[0] == 3
    template = ["--template", "a photo of a {}."]
    for change, key in ((template, "templates"), ([*template, "--alpha", "0.8"], "alpha")):
        assert main([*base, "--labels", "dog, car, sky", *change]) == 0
        assert f"2 redone: {key} changed" in capsys.readouterr().err
    # features: the same decision and the same words (no more "holds features made with other settings").
    feats = tmp_path / "feats"
    fbase = ["features", str(pin), "--out", str(feats), "--random-weights", "lseg_tiny_test", "-q"]
    assert main([*fbase, "--size", "64"]) == 0
    assert main([*fbase, "--size", "64"]) == 0
    assert "0 written, 2 already done" in capsys.readouterr().err
    assert main([*fbase, "--size", "32"]) == 0
    assert "2 written (2 redone: size changed), 0 already done" in capsys.readouterr().err
    record = json.loads((feats / "chelsea.json").read_text())
    assert record["recipe"]["size"] == 32 and record["recipe"]["model"]["random_weights"] == "lseg_tiny_test"


def test_01b_switching_output_options_keeps_the_earlier_outputs_lseg_s(pin, tmp_path, capsys):
    """--scores, then --heatmaps (same recipe): the scores stay listed in the record, so a later
    --scores run finds them done instead of refusing them as a stranger's files."""
    seg = tmp_path / "seg"
    base = ["segment", str(pin), "--out", str(seg), "--labels", "cat, other", *RANDOM]
    assert main([*base, "--scores"]) == 0
    assert main([*base, "--heatmaps"]) == 0
    assert "2 written, 0 already done" in capsys.readouterr().err
    outputs = json.loads((seg / "chelsea_labels.json").read_text())["outputs"]
    assert {"chelsea_scores.npz", "chelsea_heat_00_cat.png"} <= set(outputs)
    assert main([*base, "--scores"]) == 0
    assert "0 written, 2 already done" in capsys.readouterr().err
    assert main([*base, "--labels", "dog, other", "--scores"]) == 0  # a new recipe: the old outputs go
    assert "2 redone: labels changed" in capsys.readouterr().err
    assert not list(seg.glob("*_heat_*")) and len(list(seg.glob("*_scores.npz"))) == 2


# 2 ------------------------------------------------------------------------ output never read as input

def test_02_output_tree_inside_or_equal_to_the_input_is_never_read_back(pin, capsys):
    for _ in range(3):
        assert main(["segment", str(pin), "-o", str(pin / "seg"), "-l", "cat, other", *RANDOM]) == 0
        assert main(["features", str(pin), "-o", str(pin / "feats"), "--pca", "--random-weights",
                     "lseg_tiny_test", "--size", "64", "-q"]) == 0
        assert main(["segment", str(pin), "-o", str(pin), "-l", "cat, other", *RANDOM]) == 0  # out = input
    files = _files(pin)
    assert not any("/seg/" in f[4:] or "_labels_labels" in f or "_pca_pca" in f or "overlay_" in f for f in files)
    assert len([f for f in files if f.endswith(".png") and "/" not in f]) == 1 + 2 * 2  # photo + labels, overlay
    assert "0 written, 2 already done" in capsys.readouterr().err
    # Naming a recorded output explicitly is refused with the reason.
    assert main(["segment", str(pin / "seg" / "chelsea_overlay.png"), "-l", "a, b", *RANDOM]) == 2
    assert "is an output of an earlier lseg run" in capsys.readouterr().err


# 3 --------------------------------------------------------- one-line errors before any model work

@pytest.mark.parametrize(("extra", "message"), [
    (["--device", "gpu"], "--device 'gpu' is not a device"),
    (["--template", "a photo of a"], "--template: template 1 'a photo of a' must contain exactly one"),
    (["--alpha", "2"], "--alpha must be in [0, 1], got 2"),
    (["--crop-size", "0"], "--crop-size must be at least 32, got 0"),
    (["--size", "-5"], "--size must be at least 1, got -5"),
    (["--stride", "600"], "--stride (600) must not exceed --crop-size (480)"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--random-weights", "nope"], "--random-weights: unknown model 'nope'"),
    (["--size", "abc"], "argument --size: invalid int value: 'abc'"),
])
def test_03_bad_arguments_are_one_line_exit_2_before_any_model_loads(pin, tmp_path, monkeypatch, capsys, extra,
                                                                        message):
    monkeypatch.setattr("lseg.cli.common.load_source_model", lambda *a: pytest.fail("model loaded"))
    args = ["segment", str(pin), "-l", "cat, other", "-o", str(tmp_path / "o")]
    if "--random-weights" not in extra:
        args.append("--random-weights=lseg_tiny_test")
    with pytest.raises(SystemExit) if "invalid int" in message else _no_raise():
        rc = main(args + extra)
        assert rc == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "o").exists()


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_03_device_without_cuda_out_file_predictor_path_and_push_offline(pin, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["segment", str(pin), "-l", "a, b", "--device", "cuda", *RANDOM]) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1 and "--device cuda:" in lines[0] and "use --device cpu" in lines[0]
    (tmp_path / "taken").write_text("x")
    assert main(["segment", str(pin), "-l", "a, b", "-o", str(tmp_path / "taken"), *RANDOM]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(TypeError, match=r"use LSegPredictor\(lseg.load_model\('lseg-demo/'\)\)"):
        lseg.LSegPredictor("lseg-demo/")
    import httpx
    from huggingface_hub import HfApi

    def no_network(*args: object, **kwargs: object) -> None:
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(HfApi, "create_repo", no_network)
    with pytest.raises(lseg.LSegError, match="cannot push to 'me/x': .*name resolution.*no network"):
        lseg.push_to_hub(lseg.create_model("lseg_tiny_test"), "me/x")


# 4 ---------------------------------------------------------------------------- readable outputs

def test_04_palette_legend_unicode_heatmaps_and_label_names(pin, tmp_path, capsys):
    from lseg.viz import legend_font_size, overlay, palette, read_label_names
    from lseg.viz.fonts import TextRenderer

    colours = palette(300).astype(float) / 255
    lum = colours @ [0.2126, 0.7152, 0.0722]
    assert lum.min() > 0.1 and lum.max() < 0.8 and (colours.max(1) - colours.min(1)).min() > 0.2  # no black/white/grey
    # Every label is in the legend, absent ones included (label 0 has no pixel here).
    ids = np.ones((40, 60), np.int64)
    legend = np.asarray(overlay(np.full((40, 60, 3), 128, np.uint8), ids, ["zero", "one"]))[:, 60:]
    assert all((legend == c).all(-1).any() for c in palette(2))
    # The legend grows with the photo: a 6000x4000 photo gets 133 px text.
    assert legend_font_size((6000, 4000)) >= 130 and legend_font_size((80, 60)) == 12
    # Non-ASCII labels are drawn with a font that has their glyphs (no boxes).
    runs = TextRenderer(20).runs("café crème")
    assert "".join(s for _, s in runs) == "café crème"
    cjk = "".join(s for _, s in TextRenderer(20).runs("猫"))
    assert cjk in ("猫", "[U+732B]")  # the CJK font with lseg[cjk], else the code point: never a box
    # CLI: heatmaps with a caption and colour bar; label names in the PNG and the sidecar JSON.
    out = tmp_path / "o"
    assert main(["segment", str(pin / "chelsea.png"), "-l", "café crème, 猫, other", "-o", str(out), "--heatmaps",
                 *RANDOM]) == 0
    heat = Image.open(out / "chelsea_heat_00_café_crème.png")
    assert heat.width == 80 and heat.height > 60  # photo + caption strip
    assert read_label_names(out / "chelsea_labels.png") == ["café crème", "猫", "other"]
    record = json.loads((out / "chelsea_labels.json").read_text(encoding="utf-8"))
    assert record["labels"] == ["café crème", "猫", "other"] and record["colors"][0] == "#1f77b4"


# 5 --------------------------------------------------------------------------------- label files

def test_05_labels_file_and_a_file_name_given_as_labels(pin, tmp_path, capsys):
    (tmp_path / "labels.txt").write_text("# my classes\ncat\nperson, coffee\n\nother\n", encoding="utf-8")
    assert main(["segment", str(pin), "-l", str(tmp_path / "labels.txt"), *RANDOM]) == 2
    assert "looks like a file name: to read labels from a file use --labels-file" in capsys.readouterr().err
    out = tmp_path / "o"
    assert main(["segment", str(pin), "--labels-file", str(tmp_path / "labels.txt"), "-o", str(out), *RANDOM]) == 0
    assert read_names(out / "chelsea_labels.json") == ["cat", "person", "coffee", "other"]
    # a training labels.txt reads that line as one class: the shift of every later class id is warned about
    assert "the line 'person, coffee' gives 2 labels (split at commas)" in capsys.readouterr().err
    (tmp_path / "labels.txt").write_text('cat\n"person, coffee"\nother\n', encoding="utf-8")
    assert main(["segment", str(pin), "--labels-file", str(tmp_path / "labels.txt"), "-o", str(out), *RANDOM]) == 0
    assert read_names(out / "chelsea_labels.json") == ["cat", "person, coffee", "other"]
    assert "split at commas" not in capsys.readouterr().err
    assert main(["segment", str(pin), "-l", "cat", "-o", str(tmp_path / "one"), *RANDOM]) == 0
    assert "warning: --labels gives one label ('cat'): every pixel gets it" in capsys.readouterr().err


def read_names(path: Path) -> list[str]:
    return json.loads(path.read_text(encoding="utf-8"))["labels"]


# 6 ------------------------------------------------------------------------------------------ demo

def test_06_demo_names_the_problem_and_says_error_in_toast_and_status(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    import gradio as gr

    from lseg.app.demo import SegmentDemo, launch_demo, lenient_upload

    fake = tmp_path / "notes.png"
    fake.write_text("shopping list: milk, eggs")
    # Gradio's own check fails on such a file with a bare "Error"; the upload hands it to the demo.
    payload = gr.FileData(path=str(fake), orig_name="notes.png")
    assert lenient_upload(gr.Image(type="filepath")).preprocess(payload) == str(fake)
    predictor = lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=32)
    toasts: list[tuple[str, str]] = []
    monkeypatch.setattr(gr, "Warning", lambda message, title="Warning", **kw: toasts.append((title, message)))
    _, _, status = SegmentDemo(predictor).callback(str(fake), "cat, other")
    assert status.startswith("**Error:** Cannot use this image:") and "text" in status
    assert toasts == [("Error", status.removeprefix("**Error:** "))]

    calls: dict[str, object] = {}

    class FakeBlocks:
        local_url = "http://127.0.0.1:1/"

        def launch(self, **kwargs: object) -> None:
            calls.update(kwargs)

    launch_demo(FakeBlocks(), prevent_thread_lock=True)  # type: ignore[arg-type]
    assert calls["quiet"] is True  # no "set share=True in launch()" hint
    assert "common.complete" in calls["i18n"].translations_dict["en"]  # type: ignore[attr-defined]


# 7 ------------------------------------------------------------------------------------ collisions

def test_07_every_output_name_clash_is_listed_before_any_work(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a.jpg", "a.png", "b.jpg", "b.png", "c.png"):
        Image.fromarray(make_photo(16, 16)).save(d / name)
    assert main(["segment", str(d), "-l", "x, y", "-o", str(tmp_path / "o"), *RANDOM]) == 2
    err = capsys.readouterr().err
    assert "error: 2 output name clashes:" in err and "a.jpg and" in err and "b.jpg and" in err
    assert not (tmp_path / "o").exists()


# 8 ----------------------------------------------------------------------------------------- train

def test_08_train_with_a_wrong_data_root_fails_once_before_starting_processes(tmp_path, capsys):
    pytest.importorskip("lightning")
    out = tmp_path / "runs"
    rc = main(["train", "--config", "folder_finetune", "--data-root", str(tmp_path / "missing"), "--devices", "8",
               "--accelerator", "cpu", "--out-dir", str(out), "--model", "lseg_tiny_test"])
    lines = _err_lines(capsys)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "missing" in lines[0]
    assert not out.exists()  # no config.yaml of a run that never started


# 9 ----------------------------------------------------------------------------------- conventions

def test_09_version_module_verbose_help_and_fast_startup(tmp_path):
    run = subprocess.run([sys.executable, "-m", "lseg", "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0 and run.stdout.strip() == f"lseg {lseg.__version__}"
    args = build_parser().parse_args(["segment", "x.jpg", "-l", "a, b", "-v"])
    assert args.verbose is True
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name in ("train", "eval", "segment", "features", "demo"):
        text = sub.choices[name].format_help()
        assert "``" not in text and ":class:" not in text and "Examples::" not in text, name
    seg = sub.choices["segment"]
    for action in seg._actions:
        assert action.help, action.option_strings
    help_text = seg.format_help()
    assert "(default: 480)" in help_text and "(default: lseg-output)" in help_text
    assert "--out" in sub.choices["train"].format_help()  # --out as in the other commands (= --out-dir)
    # `lseg --help` imports no torch (it took 3 s).
    code = "import sys, lseg.cli; lseg.cli.build_parser(); print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert run.stdout.strip() == "False", run.stderr


# 11 ----------------------------------------------------------------------------- seeded weights

def test_11_random_weights_are_the_same_network_every_run(pin, tmp_path):
    for name in ("a", "b"):
        assert main(["segment", str(pin / "chelsea.png"), "-l", "cat, other", "-o", str(tmp_path / name),
                     "--scores", *RANDOM]) == 0
    a, b = (np.load(tmp_path / n / "chelsea_scores.npz")["probs"] for n in ("a", "b"))
    np.testing.assert_array_equal(a, b)


# 12 ------------------------------------------------------------------------------------ Python API

def test_12_python_api_masks_overlay_save_batch_and_numpy(pin, tmp_path, monkeypatch):
    torch.manual_seed(0)
    predictor = lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), size=64, batch_size=4)
    result = predictor.segment(pin / "chelsea.png", "cat, person, other")
    assert isinstance(result.logits, np.ndarray) and isinstance(result.probs, np.ndarray)
    masks = result.masks
    assert list(masks) == ["cat", "person", "other"] and sum(m.sum() for m in masks.values()) == 60 * 80
    np.testing.assert_array_equal(result.mask("Person"), result.label_map == 1)
    with pytest.raises(KeyError, match="'dog' is not one of the labels"):
        result.mask("dog")
    assert result.overlay().size[1] >= 60
    paths = result.save(tmp_path / "saved", scores=True)
    assert sorted(p.name for p in paths.values()) == ["chelsea_labels.json", "chelsea_labels.png",
                                                      "chelsea_overlay.png", "chelsea_scores.npz"]
    record = json.loads(paths["json"].read_text())
    assert record["labels"] == ["cat", "person", "other"] and set(record["shares"]) == set(record["labels"])
    # the files are lseg's: `lseg segment` into the same folder redoes them instead of refusing them
    assert main(["segment", str(pin / "chelsea.png"), "-l", "cat, dog", "-o", str(tmp_path / "saved"),
                 *RANDOM]) == 0
    assert json.loads(paths["json"].read_text())["labels"] == ["cat", "dog"]
    assert not (tmp_path / "saved" / "chelsea_scores.npz").exists()  # the old recipe's output, removed
    assert "SegmentationResult(3 labels, 80x60" in repr(result)
    emb = predictor.embed_image(pin / "chelsea.png")
    assert repr(emb).startswith("ImageEmbedding(pixels=<(32, ") and len(repr(emb)) < 200
    # segment_batch: the text once; on a CPU one image per forward (stacking is slower there:
    # lseg.inference.predictor.images_per_forward), on a GPU one forward per working size.
    calls = []
    encode = predictor.model.encode_image
    monkeypatch.setattr(predictor.model, "encode_image", lambda x: calls.append(x.shape[0]) or encode(x))
    photos = [make_photo(60, 80, seed=s) for s in range(3)]
    batch = predictor.segment_batch(photos, "cat, other")
    assert calls == [1, 1, 1] and len(batch) == 3
    for photo, r in zip(photos, batch, strict=True):
        np.testing.assert_array_equal(r.label_map, predictor.segment(photo, "cat, other").label_map)
    from lseg.export.onnx_runtime import OnnxSegmentation

    onnx_result = OnnxSegmentation(["a", "b"], np.array([[0, 1], [1, 1]], np.int32), np.zeros((2, 1, 1), np.float32))
    assert onnx_result.scores() == {"a": 0.25, "b": 0.75}
