"""LSegPredictor: encode once, score any labels; caching, templates, windows, multi-scale.

Bounded memory for very large images and very many labels, measured in a fresh process.

Peak resident memory of each step is read from ``VmHWM`` in ``/proc/self/status`` after resetting
it (``/proc/self/clear_refs``), relative to the resident size before the step (so the interpreter,
torch and the model are not counted). Linux only.

Bounds (MB = 10**6 bytes), for a 12000x8000 photo (96 M pixels) and the tiny model:

* load (PNG -> HxWx3 uint8): <= 7 bytes/pixel + 64 MB = 736 MB: Pillow's decoded image
  (4 bytes/pixel for RGB) plus the 3-byte result, converted in row strips.
* ``segment`` of the loaded array, default size 480: <= 4 bytes/pixel + 160 MB = 544 MB: the int32
  label map, plus row strips of the resized logits; the input array is only read, never copied
  or converted to float as a whole.
* ``segment`` of the file with sliding windows at a 1024 working size (256 crops, stride 192):
  <= 7 bytes/pixel + 64 MB (the load dominates; everything after it fits under it).
* 5000 labels on a 240x320 image at working size 320 (chunks of 256): <= 200 MB, where the K x h x w
  logits alone would be 5000 * 240 * 320 * 4 = 1536 MB.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_photo
from hostile_inputs import cli_env
from PIL import Image

import lseg
from lseg.inference.predictor import MultiScaleConfig, multiscale_logits
from lseg.io import load_image


@pytest.fixture
def predictor(tiny_model):
    return lseg.LSegPredictor(tiny_model, size=128)


def test_segment_outputs(predictor, photo):
    r = predictor.segment(photo, "sky, grass, sun, other", return_embeddings=True)
    assert r.labels == ["sky", "grass", "sun", "other"]
    assert r.label_map.shape == photo.shape[:2] and r.label_map.dtype == np.int32
    assert r.label_map.min() >= 0 and r.label_map.max() < 4
    probs = r.probs
    assert probs.shape == (4, *photo.shape[:2])
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    # label map is the argmax of the same scores
    assert (probs.argmax(0) == r.label_map).mean() > 0.99
    assert r.embeddings.shape == (32, 48, 64)  # (D, h/2, w/2) at the 96x128 working size
    assert abs(sum(r.scores().values()) - 1) < 1e-9


def test_image_encoded_once_for_many_label_sets(predictor, photo, monkeypatch):
    emb = predictor.embed_image(photo)
    calls = []
    monkeypatch.setattr(predictor.model, "encode_image", lambda *a: calls.append(1))
    a = predictor.segment(emb, ["sky", "grass"])
    b = predictor.segment(emb, ["dog", "cat", "tree"])
    assert not calls
    assert a.label_map.shape == b.label_map.shape == photo.shape[:2]


def test_embedding_reuse_equals_direct_segment(predictor, photo):
    direct = predictor.segment(photo, ["sky", "grass"])
    reused = predictor.segment(predictor.embed_image(photo), ["sky", "grass"])
    assert np.array_equal(direct.label_map, reused.label_map)
    torch.testing.assert_close(direct.logits, reused.logits)


def test_text_cache(predictor, monkeypatch):
    first = predictor.embed_text(["sky", "grass"])
    seen = []
    orig = predictor.model.encode_text
    monkeypatch.setattr(predictor.model, "encode_text", lambda labels: seen.append(list(labels)) or orig(labels))
    again = predictor.embed_text("grass, sky, dog")
    assert seen == [["dog"]]  # only the new label is encoded
    torch.testing.assert_close(again[1], first[0])
    torch.testing.assert_close(again[0], first[1])
    # bounded cache
    small = lseg.LSegPredictor(predictor.model, text_cache_size=2)
    small.embed_text(["a", "b", "c"])
    assert [key[-1] for key in small._text_cache] == ["b", "c"]


def test_prompt_templates_average_embeddings(tiny_model):
    p = lseg.LSegPredictor(tiny_model, templates=["a photo of a {}.", "{}"])
    emb = p.embed_text(["dog"])
    with torch.no_grad():
        a = tiny_model.encode_text(["a photo of a dog."])
        b = tiny_model.encode_text(["dog"])
    expected = torch.nn.functional.normalize((a + b) / 2, dim=-1)
    torch.testing.assert_close(emb, expected)
    with pytest.raises(ValueError, match="exactly one"):
        lseg.LSegPredictor(tiny_model, templates=["no placeholder"])


def test_accepts_paths_pil_arrays_tensors(predictor, photo, tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(photo).save(path)
    maps = [
        predictor.segment(src, ["sky", "grass"]).label_map
        for src in (str(path), path, Image.fromarray(photo), photo, torch.from_numpy(photo).permute(2, 0, 1))
    ]
    for m in maps[1:]:
        assert np.array_equal(m, maps[0])


def test_sliding_windows_cover_large_working_sizes(tiny_model, photo):
    whole = lseg.LSegPredictor(tiny_model, size=128, crop_size=512)
    tiled = lseg.LSegPredictor(tiny_model, size=128, crop_size=64, stride=32)
    a, b = whole.embed_image(photo), tiled.embed_image(photo)
    assert a.pixels.shape == b.pixels.shape
    # windows see less context, so embeddings differ somewhat but stay strongly aligned
    cos = torch.nn.functional.cosine_similarity(a.pixels, b.pixels, dim=0)
    assert cos.mean() > 0.5
    r = tiled.segment(photo, ["sky", "grass"])
    assert r.label_map.shape == photo.shape[:2]


def test_multiscale_single_scale_without_flip_is_padded_forward(tiny_model):
    x = torch.randn(1, 3, 40, 60)
    cfg = MultiScaleConfig(scales=(1.0,), base_size=60, crop_size=64, flip=False)
    with torch.no_grad():
        text = tiny_model.encode_text(["a", "b"])
        got = multiscale_logits(tiny_model, x, text, cfg)
        pad = torch.nn.functional.pad(x, (0, 4, 0, 24), value=-1.0)
        expected = tiny_model(pad, text)[..., :40, :60]
    torch.testing.assert_close(got, expected)


def test_multiscale_flip_and_sliding_window(tiny_model, photo):
    p = lseg.LSegPredictor(tiny_model)
    cfg = MultiScaleConfig(scales=(0.75, 1.5), base_size=96, crop_size=64)
    r = p.segment(photo, ["sky", "grass"], multiscale=cfg)
    assert r.label_map.shape == photo.shape[:2]
    with pytest.raises(ValueError):
        p.segment(p.embed_image(photo), ["sky"], multiscale=True)


def test_multiscale_result_averages_the_passes_so_probs_keep_a_single_pass_scale(tiny_model, photo):
    """The result once held the sum of the 4 passes: logits past 1/0.07 and probabilities sharpened 4x."""
    p = lseg.LSegPredictor(tiny_model, size=64)
    cfg = MultiScaleConfig(scales=(0.5, 1.0), base_size=64, crop_size=64, flip=True)
    r = p.segment(photo, ["sky", "grass", "sun"], multiscale=cfg)
    with torch.no_grad():
        x = p.model.normalize(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255)
        total = multiscale_logits(p.model, x, p.embed_text(["sky", "grass", "sun"]), cfg)[0]
    np.testing.assert_allclose(r.logits, total.numpy() / 4, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(r.label_map, total.argmax(0).numpy())
    assert np.abs(r.logits).max() <= 1 / 0.07 and np.allclose(r.probs, torch.softmax(total / 4, 0).numpy(), atol=1e-6)


def test_batch(predictor, photo):
    results = predictor.segment_batch([photo, photo[:50]], ["sky", "grass"])
    assert [r.label_map.shape for r in results] == [photo.shape[:2], (50, photo.shape[1])]


def _explicit_multiscale(model, x, text, scales, base, crop, stride):
    """The reference's MultiEvalModule written out: scale, pad with -1, windows averaged, flip averaged
    in, cut and resize back, summed over scales."""
    F = torch.nn.functional
    _, _, h, w = x.shape
    total = torch.zeros(1, text.shape[0], h, w)
    for scale in scales:
        long = math.ceil(base * scale)
        hh, ww = (long, int(w * long / h + 0.5)) if h > w else (int(h * long / w + 0.5), long)
        cur = F.interpolate(x, size=(hh, ww), mode="bilinear", align_corners=True)
        ph, pw = max(hh, crop), max(ww, crop)
        canvas = F.pad(cur, (0, pw - ww, 0, ph - hh), value=-1.0)
        acc = torch.zeros(1, text.shape[0], ph, pw)
        count = torch.zeros(1, 1, ph, pw)
        for y0 in range(0, ph - crop + stride, stride):
            for x0 in range(0, pw - crop + stride, stride):
                y1, x1 = min(y0 + crop, ph), min(x0 + crop, pw)
                win = F.pad(canvas[..., y0:y1, x0:x1], (0, crop - (x1 - x0), 0, crop - (y1 - y0)), value=-1.0)
                out = model(win, text) + model(win.flip(-1), text).flip(-1)
                acc[..., y0:y1, x0:x1] += out[..., : y1 - y0, : x1 - x0]
                count[..., y0:y1, x0:x1] += 1
        mean = (acc / count)[..., :hh, :ww]
        total += F.interpolate(mean, size=(h, w), mode="bilinear", align_corners=True)
    return total


def test_multiscale_equals_the_explicit_computation(tiny_model):
    x = torch.randn(1, 3, 50, 70, generator=torch.Generator().manual_seed(3))
    # scale 0.5: one padded 48x48 crop; 1.25: 71x100 in overlapping windows, the last ones partial
    cfg = MultiScaleConfig(scales=(0.5, 1.25), base_size=80, crop_size=48, stride_rate=2 / 3, flip=True)
    with torch.no_grad():
        text = tiny_model.encode_text(["a", "b", "c"])
        got = multiscale_logits(tiny_model, x, text, cfg)
        expected = _explicit_multiscale(tiny_model, x, text, cfg.scales, 80, 48, 32)
    assert got.shape == (1, 3, 50, 70)
    torch.testing.assert_close(got, expected)


def test_sliding_windows_equal_the_explicit_average(tiny_model, photo):
    p = lseg.LSegPredictor(tiny_model, size=128, crop_size=64, stride=48)
    emb = p.embed_image(photo)
    x = tiny_model.normalize(p.prepare(photo).pixels[None])  # 96x128 working size
    canvas = torch.zeros(1, 32, 48, 64)
    count = torch.zeros(1, 1, 48, 64)
    with torch.no_grad():
        for y0 in (0, 32):  # 96 = 64 + 32: the second row of windows is shifted back to the edge
            for x0 in (0, 48, 64):  # 128: windows at 0 and 48, the last one flush with the edge
                canvas[..., y0 // 2 : y0 // 2 + 32, x0 // 2 : x0 // 2 + 32] += tiny_model.encode_image(
                    x[..., y0 : y0 + 64, x0 : x0 + 64])
                count[..., y0 // 2 : y0 // 2 + 32, x0 // 2 : x0 // 2 + 32] += 1
        expected = (canvas / count)[0]
        torch.testing.assert_close(emb.pixels, expected)
        text = p.embed_text(["sky", "grass"])
        r = p.segment(photo, ["sky", "grass"])
        logits = tiny_model.score(expected[None], text, size=(96, 128))[0]
    torch.testing.assert_close(torch.from_numpy(r.logits), logits)
    big = torch.nn.functional.interpolate(logits[None], size=photo.shape[:2], mode="bilinear", align_corners=True)
    assert (r.label_map == big[0].argmax(0).numpy()).mean() > 0.999


@pytest.mark.parametrize(("shape", "stride"), [((65, 64), None), ((64, 97), None), ((150, 171), 33)])
def test_sliding_windows_fill_every_row_of_an_odd_size(tiny_model, shape, stride):
    """An odd ``h - crop`` (or an odd stride) once left the last embedding row empty: NaN after the
    average, and label 0 there."""
    p = lseg.LSegPredictor(tiny_model, size=None, crop_size=64, stride=stride)
    image = make_photo(*shape, seed=4)
    r = p.segment(image, "sky, grass, other", return_embeddings=True)
    assert r.embeddings.shape[1:] == (math.ceil(shape[0] / 2), math.ceil(shape[1] / 2))
    assert np.isfinite(r.embeddings).all() and np.isfinite(r.logits).all()


def test_segment_batch_equals_per_image_segment(tiny_model):
    # two images share a working size (one batched forward), one has another, one runs in windows
    images = [make_photo(96, 128, seed=0), make_photo(60, 80, seed=1), make_photo(70, 50, seed=2),
              make_photo(150, 200, seed=3)]
    p = lseg.LSegPredictor(tiny_model, size=64, crop_size=480, batch_size=4)
    windowed = lseg.LSegPredictor(tiny_model, size=None, crop_size=96, stride=64, batch_size=4)
    labels = ["sky", "grass", "sun", "other"]
    for predictor in (p, windowed):
        batch = predictor.segment_batch(images, labels)
        assert len(batch) == len(images)
        for image, got in zip(images, batch, strict=True):
            single = predictor.segment(image, labels)
            assert got.label_map.shape == image.shape[:2]
            np.testing.assert_array_equal(got.label_map, single.label_map)
            np.testing.assert_allclose(got.logits, single.logits, atol=1e-5, rtol=0)
            assert got.image is image


def test_file_objects_embeddings_and_mistakes_in_segment_and_segment_batch(predictor, tmp_path):
    import io

    image = make_photo(40, 50, seed=4)
    data = io.BytesIO()
    Image.fromarray(image).save(data, format="PNG")
    data.seek(0)
    result = predictor.segment(data, "sky, grass")  # a stream is read once: the result keeps the pixels
    assert result.overlay().size[0] >= 50 and "overlay" in result.save(tmp_path)
    data.seek(0)
    with open(tmp_path / "p.png", "wb") as f:
        f.write(data.getvalue())
    with open(tmp_path / "p.png", "rb") as f:
        batch = predictor.segment_batch([f, image, predictor.embed_image(image)], "sky, grass")
    np.testing.assert_array_equal(batch[1].label_map, batch[2].label_map)  # an embedding is scored as it is
    assert batch[0].overlay() is not None and batch[2].image is None
    with pytest.raises(lseg.errors.ConfigError, match="takes a list of images, not one image \\(a str\\)"):
        predictor.segment_batch("p.png", "sky, grass")
    with pytest.raises(lseg.errors.ConfigError, match="label_chunk_size must be >= 1"):
        lseg.LSegPredictor(predictor.model, label_chunk_size=0)


def test_segment_batch_encodes_the_labels_once_whatever_the_cache_and_the_iterable(tiny_model, monkeypatch):
    """Each image once re-parsed the labels (a generator was then empty: 'no labels given' for every
    image) and re-encoded them (every image, with more labels than the text cache holds)."""
    p = lseg.LSegPredictor(tiny_model, size=64, text_cache_size=1)
    calls = []
    encode = p.model.encode_text
    monkeypatch.setattr(p.model, "encode_text", lambda labels: calls.append(labels) or encode(labels))
    images = [make_photo(40, 60, seed=i) for i in range(3)]
    batch = p.segment_batch(images, (label for label in ["sky", "grass", "sun"]), errors="return")
    assert [r.labels for r in batch] == [["sky", "grass", "sun"]] * 3 and calls == [["sky", "grass", "sun"]]
    ms = MultiScaleConfig(scales=(1.0,), base_size=64, crop_size=64, flip=False)
    assert p.segment_batch(images[:1], map(str.strip, [" sky", "grass "]), multiscale=ms)[0].labels == ["sky", "grass"]


def test_labels_equal_within_the_context_are_refused_even_when_one_is_cached(predictor, caplog):
    long = "word " * 100
    with caplog.at_level("WARNING", "lseg"):
        predictor.embed_text([long, "cat"])  # cached now
    assert "CLIP reads only the first 75" in caplog.text
    with pytest.raises(lseg.errors.LabelError, match="identical within CLIP's 75-token context"):
        predictor.embed_text([long, long + "x"])


def test_templates_are_filled_literally(tiny_model):
    # plain replacement of {} (lseg.labels): other braces stay, str.format would raise KeyError
    p = lseg.LSegPredictor(tiny_model, templates=["a {} {x}"])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(tiny_model.encode_text(["a dog {x}"]).float(), dim=-1)
    torch.testing.assert_close(p.embed_text(["dog"]), expected)


needs_clear_refs = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists() or not sys.platform.startswith("linux"),
    reason="needs Linux /proc/self/clear_refs to measure peak memory",
)

MB = 1e6
PIXELS = 12000 * 8000

SCRIPT = r"""
import gc, json, sys, time
import numpy as np, torch
from PIL import Image

torch.set_num_threads(1)  # 2 threads on 2 busy cores: OpenMP barriers make small ops 10x slower
import lseg
from lseg.io import load_image

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
def measure(fn):
    gc.collect()
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
    base = status("VmRSS")
    t = time.perf_counter()
    out = fn()
    return out, {"peak_growth": status("VmHWM") - base, "seconds": round(time.perf_counter() - t, 2)}

path, = sys.argv[1:]
Image.new("RGB", (12000, 8000), (40, 160, 60)).save(path, compress_level=1)
torch.manual_seed(0)
model = lseg.create_model("lseg_tiny_test")
default = lseg.LSegPredictor(model, inplace=True)  # all share the instrumented model
windows = lseg.LSegPredictor(model, size=1024, crop_size=256, stride=192, inplace=True)
calls = []
encode = model.encode_image
model.encode_image = lambda x: calls.append(tuple(x.shape[-2:])) or encode(x)
small = np.zeros((64, 96, 3), np.uint8)
for p in (default, windows):
    p.segment(small, ["grass", "sky", "other"])  # warm up: allocator, tokenizer, kernels
report = {}

image, report["load"] = measure(lambda: load_image(path))
assert image.shape == (8000, 12000, 3) and (image[::1000, ::1000] == (40, 160, 60)).all()

r, report["segment_array"] = measure(lambda: default.segment(image, ["grass", "sky", "other"]))
assert r.label_map.shape == (8000, 12000) and r.label_map.max() < 3
assert len(np.unique(r.label_map[::97, ::89])) == 1  # a solid image: one label everywhere
del r, image

calls.clear()
r, report["segment_file_windows"] = measure(lambda: windows.segment(path, ["grass", "sky", "other"]))
assert r.label_map.shape == (8000, 12000) and r.label_map.max() < 3
report["windows"] = len(calls)
report["window_size"] = calls[0]
del r

labels = [f"object number {i}" for i in range(5000)]
many = lseg.LSegPredictor(model, size=320, text_cache_size=8192, inplace=True)
many.embed_text(labels)  # text encoding is not what is measured here
yy, xx = np.mgrid[0:240, 0:320]
img = np.stack([yy, xx, 255 - yy], -1).astype(np.uint8)
emb = many.embed_image(img)
r, report["labels_5000"] = measure(lambda: many.segment(emb, labels))
assert r.label_map.shape == (240, 320) and r.label_map.max() < 5000
report["labels_5000"]["distinct_labels_in_map"] = int(len(np.unique(r.label_map)))
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("large") / "large.png"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], env=cli_env(), capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT "))
    data = json.loads(line[len("REPORT "):])
    print(json.dumps(data, indent=1))  # shown with -s / on failure: the measured peaks
    return data


@pytest.mark.slow  # shares the 12000x8000 measurement (one process, ~15 s)
@needs_clear_refs
def test_large_image_load_is_bounded(report):
    assert report["load"]["peak_growth"] <= 7 * PIXELS + 64 * MB, report["load"]


@pytest.mark.slow
@needs_clear_refs
def test_large_image_segment_default_size_is_bounded(report):
    assert report["segment_array"]["peak_growth"] <= 4 * PIXELS + 160 * MB, report["segment_array"]


@pytest.mark.slow
@needs_clear_refs
def test_large_image_sliding_windows_are_bounded(report):
    assert report["windows"] > 1 and max(report["window_size"]) <= 256
    assert report["segment_file_windows"]["peak_growth"] <= 7 * PIXELS + 64 * MB, report["segment_file_windows"]


@pytest.mark.slow
@needs_clear_refs
def test_five_thousand_labels_are_bounded_by_chunking(report):
    r = report["labels_5000"]
    assert r["peak_growth"] <= 200 * MB, r


def test_the_default_stride_follows_the_crop(tiny_model):
    assert lseg.LSegPredictor(tiny_model).stride == 320  # the reference's 480 / 320
    assert lseg.LSegPredictor(tiny_model, crop_size=64).stride == 42  # a small crop needs no --stride
    assert lseg.LSegPredictor(tiny_model, crop_size=53).stride == 34  # even: whole half-resolution pixels


def test_compile_compiles_the_image_path_of_a_copy_with_freezing_on_a_cpu(monkeypatch):
    """``compile=True``: the copy's encoder and decoder go through ``torch.compile`` with inductor's
    freezing on a CPU (what makes it pay there: docs/performance.md); the caller's model is untouched."""
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append((self, kw)))
    model = lseg.create_model("lseg_tiny_test")
    predictor = lseg.LSegPredictor(model, compile=True, precision="fp32")
    assert [m for m, _ in compiled] == [predictor.model.backbone, predictor.model.decoder]
    assert all(kw == {"options": {"freezing": True}} for _, kw in compiled)
    assert predictor.model is not model


def test_compile_and_int8_together_are_one_error_line():
    from lseg.models.precision import int8_supported

    if not int8_supported():
        pytest.skip("this torch has no oneDNN int8 kernels")
    with pytest.raises(lseg.ConfigError, match="compile.? does not apply to precision int8"):
        lseg.LSegPredictor(lseg.create_model("lseg_tiny_test"), compile=True, precision="int8")


def test_settings_beside_options_are_refused_not_dropped(tiny_model):
    with pytest.raises(lseg.errors.ConfigError, match="templates given beside options="):
        lseg.LSegPredictor(tiny_model, options=lseg.PredictorOptions(size=64), templates=["a photo of a {}."])
    with pytest.raises(lseg.errors.ConfigError, match="crop_size, batch_size given beside options="):
        lseg.LSegPredictor(tiny_model, options=lseg.PredictorOptions(size=64), crop_size=32, batch_size=1)
    with pytest.raises(lseg.errors.ConfigError, match="not one string"):
        lseg.LSegPredictor(tiny_model, templates="a photo of a {}.")  # not iterated character by character


def test_options_say_the_precision_the_predictor_runs(tiny_model):
    assert lseg.LSegPredictor(tiny_model).options.precision == "fp32"  # the model's own, not "auto"
    assert lseg.LSegPredictor(tiny_model, precision="bf16").options.precision == "bf16"
    asked = lseg.PredictorOptions(precision="auto")
    assert lseg.LSegPredictor(tiny_model, options=asked).options.precision in ("fp32", "bf16")
    assert asked.precision == "auto"  # the caller's options are not changed
    # precision= beside options= runs (it may be given there): options said the PredictorOptions' "auto"
    beside = lseg.LSegPredictor(tiny_model, precision="fp32", options=lseg.PredictorOptions(size=64))
    assert beside.precision == "fp32" and beside.options.precision == "fp32" and beside.options.size == 64


def test_an_animated_pil_image_is_segmented_and_drawn_at_its_frame(predictor, tmp_path):
    """segment(im) of a GIF seeked to frame 2 segmented frame 0; its overlay drew whatever frame the image
    was at when overlay() was called."""
    frames = [Image.new("RGB", (32, 24), (80 * i, 40, 200 - 80 * i)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with Image.open(tmp_path / "a.gif") as im:
        im.seek(2)
        result = predictor.segment(im, "a, b")
        expected = predictor.segment(load_image(tmp_path / "a.gif", frame=2), "a, b")
        np.testing.assert_allclose(result.logits, expected.logits, atol=1e-5)
        im.seek(0)
        photo = np.asarray(result.overlay(alpha=0.0, legend=False))
        np.testing.assert_array_equal(photo, load_image(tmp_path / "a.gif", frame=2))


def test_a_shared_model_put_back_in_training_mode_is_run_in_eval_mode_and_left_as_it_was():
    """A predictor sharing the caller's model (nothing to change) ran it in training mode once the caller
    called model.train(): batch statistics (other logits) and the caller's BatchNorm running stats updated."""
    from conftest import with_bn_stats

    model = with_bn_stats("lseg_tiny_test_rn")
    predictor = lseg.LSegPredictor(model, size=64, fast=False)
    assert predictor.model is model
    photo = make_photo(48, 64)
    expected = predictor.segment(photo, "a, b, c").logits
    model.train()
    model.text_encoder.eval()  # a caller's mix of modes is kept too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    np.testing.assert_allclose(predictor.segment(photo, "a, b, c").logits, expected, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and model.backbone.training and not model.text_encoder.training


def test_the_predictors_own_arguments_are_checked_as_the_options_are(tiny_model):
    """fast, inplace, text_cache_size and label_chunk_size were used as given: inplace="false" (truthy)
    prepared the caller's model in place, label_chunk_size=2.5 failed inside segment()."""
    model = lseg.create_model("lseg_tiny_test")
    predictor = lseg.LSegPredictor(model, inplace="false", label_chunk_size="2")
    assert predictor.model is not model and model.numerics == "plain" and predictor.label_chunk_size == 2
    assert lseg.LSegPredictor(model, fast="false").model.numerics == "plain"
    for bad, match in [({"label_chunk_size": 2.5}, "label_chunk_size must be an integer"),
                       ({"text_cache_size": None}, "text_cache_size must be an integer"),
                       ({"fast": "maybe"}, "fast must be true or false")]:
        with pytest.raises(lseg.ConfigError, match=match):
            lseg.LSegPredictor(tiny_model, **bad)
    with pytest.raises(TypeError, match="options must be a lseg.PredictorOptions, not a dict"):
        lseg.LSegPredictor(tiny_model, options={"size": 64})


def test_text_and_image_embeddings_can_feed_a_training_step():
    """They were inference tensors: a training loss with the predictor's label embeddings (or a probe
    on ImageEmbedding.pixels) raised "Inference tensors cannot be saved for backward"."""
    model = lseg.create_model("lseg_tiny_test")
    predictor = lseg.LSegPredictor(model, size=64)
    text = predictor.embed_text("a, b")
    pixels = predictor.embed_image(make_photo(32, 32)).pixels
    assert not text.requires_grad and not pixels.requires_grad
    model.train()
    loss = model.score(model.encode_image(model.normalize(torch.rand(2, 3, 64, 64))), text).mean()
    loss.backward()
    probe = torch.nn.Conv2d(pixels.shape[0], 2, 1)
    probe(pixels[None]).mean().backward()
    assert probe.weight.grad is not None and model.pixel_proj.weight.grad is not None


def test_one_image_given_as_a_batch_is_refused_and_any_iterable_is_a_batch(predictor, tmp_path):
    """segment_batch(image) of one HxWx3 array segmented each of its rows as an image (H results);
    embed_images("photo.png") read "p", "h", ...; a generator of images raised TypeError (len)."""
    image = make_photo(20, 30)
    for one in (image, image[..., 0], torch.from_numpy(image).permute(2, 0, 1), Image.fromarray(image), "p.png"):
        for method in (predictor.segment_batch, predictor.embed_images):
            args = (one, "a, b") if method == predictor.segment_batch else (one,)
            with pytest.raises(lseg.ConfigError, match="takes a list of images, not one image"):
                method(*args)
    assert len(predictor.segment_batch((image for _ in range(2)), "a, b")) == 2
    assert len(predictor.embed_images(iter([image, image]))) == 2
    assert len(predictor.segment_batch(np.stack([image] * 3), "a, b")) == 3  # a NxHxWx3 batch
    paths = [str(tmp_path / f"{i}.png") for i in range(2)]
    for path in paths:
        Image.fromarray(image).save(path)
    assert len(predictor.embed_images(np.array(paths))) == 2  # an array of paths (df["path"].values) is a batch


def test_a_training_wrapper_is_unwrapped_and_another_module_refused_in_one_line():
    """LSegPredictor(DataParallel(model)), as training code holds it, raised AttributeError: 'DataParallel'
    object has no attribute 'device'; so did any other torch module."""
    model = lseg.create_model("lseg_tiny_test")
    predictor = lseg.LSegPredictor(torch.nn.DataParallel(model), size=64, fast=False)
    assert predictor.model is model and predictor.segment(make_photo(20, 30), "a, b").labels == ["a", "b"]
    with pytest.raises(TypeError, match="LSegPredictor takes an lseg model, not a Linear"):
        lseg.LSegPredictor(torch.nn.Linear(2, 2))


def test_a_float64_model_is_refused_in_one_line_that_says_why():
    """LSegPredictor(model.double()) said "precision must be one of ..., got 'torch.float64'" though no
    precision was given."""
    model = lseg.create_model("lseg_tiny_test").double()
    with pytest.raises(lseg.ConfigError, match="the model computes in torch.float64.*model.float"):
        lseg.LSegPredictor(model)
    assert lseg.LSegPredictor(model, precision="fp32", size=64).segment(make_photo(20, 30), "a, b").logits.dtype == np.float32
