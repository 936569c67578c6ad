"""The demo's callback, called directly (no server, no browser)."""

from __future__ import annotations

import gc
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")

import lseg
from lseg.app.demo import DEFAULT_LABELS, MASK_OPACITY, SegmentDemo, build_demo
from lseg.cli.demo import is_loopback
from lseg.viz import palette


@pytest.fixture(scope="module")
def predictor() -> lseg.LSegPredictor:
    torch.manual_seed(0)
    return lseg.LSegPredictor(lseg.create_model("lseg_tiny_test_p32"), size=96)


@pytest.fixture
def photo_file(tmp_path: Path, photo: np.ndarray) -> Path:
    path = tmp_path / "meadow photo.png"
    Image.fromarray(photo).save(path)
    return path


def test_good_input(predictor: lseg.LSegPredictor, photo_file: Path, photo: np.ndarray, tmp_path: Path) -> None:
    demo = SegmentDemo(predictor, out_dir=tmp_path / "out")
    out = demo.run(str(photo_file), DEFAULT_LABELS)
    assert out.ok, out.status
    labels = ["dog", "grass", "sky", "other"]
    assert out.image is not None and out.image.shape == photo.shape
    assert out.color_map == {lb: "#{:02x}{:02x}{:02x}".format(*palette(4)[i]) for i, lb in enumerate(labels)}
    # One mask per label present; together they cover every pixel exactly once.
    assert out.masks and all(m.shape == photo.shape[:2] and m.dtype == np.float32 for m, _ in out.masks)
    np.testing.assert_allclose(sum(m for m, _ in out.masks), np.full(photo.shape[:2], MASK_OPACITY))
    assert sum(out.shares.values()) == pytest.approx(1.0)
    # The label-map PNG: palette mode, pixel value = label index, same map as the predictor's.
    assert out.label_png is not None and out.label_png.name == "meadow_photo_labels.png"
    png = Image.open(out.label_png)
    assert png.mode == "P" and png.size == (photo.shape[1], photo.shape[0])
    assert json.loads(png.text["lseg:labels"]) == labels
    expected = predictor.segment(photo, labels).label_map
    np.testing.assert_array_equal(np.asarray(png), expected)
    for i, lb in enumerate(labels):
        masks = {name: m for m, name in out.masks}
        if lb in masks:
            np.testing.assert_array_equal(masks[lb] > 0, expected == i)
    assert out.status.startswith("Segmented a 128x96 image into 4 labels")


def test_callback_outputs_for_gradio(predictor: lseg.LSegPredictor, photo_file: Path) -> None:
    demo = SegmentDemo(predictor)
    annotated, file, status = demo.callback(str(photo_file), "sky, grass, other")
    assert annotated["__type__"] == "update"
    image, masks = annotated["value"]
    assert image.shape == (96, 128, 3) and {name for _, name in masks} <= {"sky", "grass", "other"}
    assert set(annotated["color_map"]) == {"sky", "grass", "other"}
    assert file is not None and Path(file).is_file()
    assert "Segmented" in status
    folder = demo.out_dir
    gc.collect()  # other tests' garbage (the browser test's sockets) warns on its own, not here
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del demo, annotated
        gc.collect()
    assert not folder.exists()  # the default output folder goes with the demo, quietly
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("", "Bad labels: "),
        ("dog,,cat", "Bad labels: "),
        ("dog, Dog", "Bad labels: "),
        (", ".join(f"l{i}" for i in range(5)), "5 labels given; this demo accepts at most 4"),
        ("salt &amp; pepper, salt & pepper", "Bad labels: "),  # one text to CLIP's tokenizer: the model refuses
    ],
)
def test_bad_labels(predictor: lseg.LSegPredictor, photo_file: Path, labels: str, message: str) -> None:
    demo = SegmentDemo(predictor, max_labels=4)
    out = demo.run(str(photo_file), labels)
    assert not out.ok and out.status.startswith(message) and out.label_png is None
    with pytest.warns(UserWarning):  # gr.Warning outside a request falls back to warnings.warn
        annotated, file, status = demo.callback(str(photo_file), labels)
    assert annotated == {"__type__": "update", "value": None} and file is None
    assert status.startswith("**Error:** " + message)


def test_bad_images(predictor: lseg.LSegPredictor, tmp_path: Path) -> None:
    demo = SegmentDemo(predictor, max_upload_mb=0.01, max_pixels=10_000)
    big = tmp_path / "big.bmp"
    Image.new("RGB", (80, 60)).save(big)  # 14 kB uncompressed > 0.01 MB
    out = demo.run(str(big), "a, b")
    assert not out.ok and "this demo accepts files up to 0.01 MB" in out.status
    wide = tmp_path / "wide.png"
    Image.new("RGB", (200, 100)).save(wide)  # small file, 20,000 pixels > 10,000
    out = demo.run(str(wide), "a, b")
    assert not out.ok and out.status.startswith("Cannot use this image:")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"<html>not an image</html>")
    out = demo.run(str(broken), "a, b")
    assert not out.ok and "HTML" in out.status
    assert demo.run(None, "a, b").status == "Upload an image first."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "HTML"),
        (b"just some words\n", "not an image but a text file"),
        ("bomb", "M pixels, above max_pixels"),
    ],
    ids=["empty", "html", "text", "bomb"],
)
def test_hostile_uploads_get_a_message_without_server_paths(
    predictor: lseg.LSegPredictor, tmp_path: Path, content: bytes | str, message: str,
) -> None:
    """Issue 11, class 6: every unreadable upload gets lseg's one-line reason, and the server's
    temporary folder (where Gradio stores uploads) never reaches the web user."""
    server_dir = tmp_path / "gradio" / "3f9a0c1d"
    server_dir.mkdir(parents=True)
    upload = server_dir / "holiday.png"
    if content == "bomb":  # 9.6 M pixels of one colour: a 10 kB PNG
        Image.new("L", (4000, 2400)).save(upload)
    else:
        upload.write_bytes(content)  # type: ignore[arg-type]
    out = SegmentDemo(predictor, max_pixels=1_000_000).run(str(upload), "a, b")
    assert not out.ok and message in out.status, out.status
    assert "holiday.png" in out.status
    assert str(tmp_path) not in out.status and "3f9a0c1d" not in out.status


def test_large_image_display_is_downscaled(predictor: lseg.LSegPredictor, tmp_path: Path) -> None:
    path = tmp_path / "large.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)).save(path)
    demo = SegmentDemo(predictor)
    demo.max_display_side = 150
    out = demo.run(str(path), "a, b, c")
    assert out.ok and out.image is not None and out.image.shape == (150, 100, 3)
    assert all(m.shape == (150, 100) for m, _ in out.masks)
    assert Image.open(out.label_png).size == (200, 300)  # the download keeps full resolution


def test_build_demo_is_importable_without_launching(predictor: lseg.LSegPredictor) -> None:
    import gradio as gr

    demo = build_demo(predictor, max_upload_mb=5, max_labels=8, banner="Random weights")
    assert isinstance(demo, gr.Blocks)
    kinds = {type(b).__name__ for b in demo.blocks.values()}
    assert {"Image", "Textbox", "Button", "AnnotatedImage", "File", "Markdown"} <= kinds


def test_the_python_api_checks_the_options_as_lseg_demo(predictor: lseg.LSegPredictor) -> None:
    from lseg.app.demo import launch_demo

    with pytest.raises(lseg.ConfigError, match="max_upload_mb must be positive, got 0"):
        SegmentDemo(predictor, max_upload_mb=0)
    with pytest.raises(lseg.ConfigError, match="max_labels must be at least 1, got 0"):
        build_demo(predictor, max_labels=0)
    with pytest.raises(lseg.ConfigError, match=r"port must be in \[0, 65535\], got 70000"):
        launch_demo(None, port=70000)  # type: ignore[arg-type]  # refused before Gradio is touched


def test_port_0_serves_on_a_free_port_and_a_bad_host_is_one_line(predictor: lseg.LSegPredictor,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``launch_demo(port=0)`` serves (Gradio took 0 literally and failed); a host that is not this machine's
    is refused at once, not after Gradio tried 100 ports with an ``ERROR`` line each."""
    import socket
    import urllib.request

    from lseg.app.demo import launch_demo
    from lseg.cli import main

    demo = build_demo(predictor)
    try:
        launch_demo(demo, port=0, prevent_thread_lock=True)
        assert urllib.request.urlopen(demo.local_url, timeout=30).status == 200
    finally:
        demo.close()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(lseg.LSegError, match=r"Address already in use \(another program uses it\?\)"):
            launch_demo(demo, port=busy.getsockname()[1])
    for port in ("0", "8123"):
        assert main(["demo", "--random-weights", "lseg_tiny_test_p32", "--host", "192.0.2.1", "--port", port]) == 2
        err = capsys.readouterr().err
        assert f"error: cannot serve on 192.0.2.1:{port}: " in err and "(not an address of this machine?)" in err


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")


def test_demo_command(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import lseg.app.demo
    from lseg.cli import main

    calls: list[dict] = []

    def fake_launch(demo, **kwargs):  # type: ignore[no-untyped-def]
        calls.append({"demo": demo, **kwargs})

    monkeypatch.setattr(lseg.app.demo, "launch_demo", fake_launch)
    assert main(["demo", "--random-weights", "lseg_tiny_test_p32", "--size", "64", "--device", "cpu"]) == 0
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 7860 and calls[-1]["max_upload_mb"] == 20
    assert "serving on" not in caplog.text
    assert main(["demo", "--random-weights", "lseg_tiny_test_p32", "--size", "64", "--device", "cpu",
                 "--host", "0.0.0.0", "--port", "0", "--max-upload-mb", "3"]) == 0
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] > 0 and calls[-1]["max_upload_mb"] == 3
    assert "serving on 0.0.0.0: anyone who can reach this machine can use the demo" in caplog.text
