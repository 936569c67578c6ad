"""Bounded memory for very large images and very many labels, measured in a fresh process.

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
import subprocess
import sys
from pathlib import Path

import pytest
from hardening.helpers import cli_env

pytestmark = pytest.mark.skipif(
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
default = lseg.LSegPredictor(model)
windows = lseg.LSegPredictor(model, size=1024, crop_size=256, stride=192)
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
many = lseg.LSegPredictor(model, size=320, text_cache_size=8192)
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


def test_large_image_load_is_bounded(report):
    assert report["load"]["peak_growth"] <= 7 * PIXELS + 64 * MB, report["load"]


def test_large_image_segment_default_size_is_bounded(report):
    assert report["segment_array"]["peak_growth"] <= 4 * PIXELS + 160 * MB, report["segment_array"]


def test_large_image_sliding_windows_are_bounded(report):
    assert report["windows"] > 1 and max(report["window_size"]) <= 256
    assert report["segment_file_windows"]["peak_growth"] <= 7 * PIXELS + 64 * MB, report["segment_file_windows"]


def test_five_thousand_labels_are_bounded_by_chunking(report):
    r = report["labels_5000"]
    assert r["peak_growth"] <= 200 * MB, r
