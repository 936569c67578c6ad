"""lseg.export.onnx_runtime: runs an export without torch (the runtime's behaviour is tested against
the torch predictor in test_onnx.py, next to the export fixtures)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lseg.errors import CheckpointError
from lseg.export.onnx_runtime import FORMAT_VERSION, IMAGE_ENCODER, METADATA, TEXT_ENCODER, OnnxPredictor

pytest.importorskip("onnxruntime")


def test_runtime_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "import lseg.export.onnx_runtime as rt\n"
        "assert rt.OnnxPredictor and rt.OnnxSegmentation\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def fake_export(folder: Path) -> Path:
    """An export folder in seconds (no torch export): 2x2 average pooling as the image graph (D = 3) and
    the first 3 token ids as the text graph, with the metadata ``export_onnx`` writes."""
    import onnx
    from onnx import TensorProto, helper

    def save(name: str, nodes: list, inp: object, out: object, inits: tuple = ()) -> None:
        graph = helper.make_graph(nodes, name, [inp], [out], initializer=list(inits))
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(folder / name))

    folder.mkdir(parents=True, exist_ok=True)
    save(IMAGE_ENCODER, [helper.make_node("AveragePool", ["image"], ["pixels"], kernel_shape=[2, 2], strides=[2, 2])],
         helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"]),
         helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, "h2", "w2"]))
    save(TEXT_ENCODER, [helper.make_node("Cast", ["tokens"], ["f"], to=TensorProto.FLOAT),
                        helper.make_node("Slice", ["f", "starts", "ends", "axes"], ["embeddings"])],
         helper.make_tensor_value_info("tokens", TensorProto.INT64, ["k", "t"]),
         helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["k", 3]),
         [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("starts", 0), ("ends", 3), ("axes", 1))])
    meta = {"format": "lseg-onnx", "version": FORMAT_VERSION, "image_encoder": IMAGE_ENCODER,
            "text_encoder": TEXT_ENCODER, "dynamic_size": True, "input_size": [64, 64], "mean": [0.5] * 3,
            "std": [0.5] * 3, "size_multiple": 32, "pad_value": -1.0, "logit_scale": 1.0, "embed_dim": 3,
            "context_length": 77, "spatial_block": None}
    (folder / METADATA).write_text(json.dumps(meta))
    return folder


def test_a_damaged_export_folder_is_one_checkpoint_error(tmp_path: Path) -> None:
    """A truncated or hand-edited export (copied to a deployment machine) is one CheckpointError naming the
    file, not a JSONDecodeError, KeyError or onnxruntime's own exception."""
    good = fake_export(tmp_path / "good")
    assert OnnxPredictor(good, size=64).segment(np.zeros((40, 50, 3), np.uint8), "a, b").label_map.shape == (40, 50)
    meta = (good / METADATA).read_text()
    damage = {
        "json truncated": (METADATA, meta[:50].encode()), "json binary": (METADATA, b"\xff\xfe\x00junk"),
        "json a list": (METADATA, b"[]"),
        "json lacks a key": (METADATA, json.dumps({k: v for k, v in json.loads(meta).items() if k != "mean"}).encode()),
        "graph truncated": (IMAGE_ENCODER, (good / IMAGE_ENCODER).read_bytes()[:40]),
        "graph empty": (TEXT_ENCODER, b""),
    }
    for what, (name, data) in damage.items():
        bad = tmp_path / what.replace(" ", "_")
        shutil.copytree(good, bad)
        (bad / name).write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            OnnxPredictor(bad)
        assert str(bad / name) in str(e.value) and "\n" not in str(e.value), what


def test_labels_clip_reads_as_one_text_are_refused_as_lseg_predictor_does(tmp_path: Path) -> None:
    """LSegPredictor refuses labels that CLIP's tokenizer reads as one text (HTML entities, mojibake, equal
    within the 75-token context); OnnxPredictor gave them one embedding, so the second label never won."""
    from lseg.errors import LabelError

    predictor = OnnxPredictor(fake_export(tmp_path / "x"), size=64)
    image = np.zeros((40, 50, 3), np.uint8)
    long = "x " * 80
    for labels in (["salt &amp; pepper", "salt & pepper"], ["cafÃ©", "café"], [long + "a", long + "b"]):
        with pytest.raises(LabelError, match=r"would get one embedding"):
            predictor.segment(image, labels)
    predictor.segment(image, ["café"])  # cached now: a clash with a cached label is still seen
    with pytest.raises(LabelError, match=r"'cafÃ©' \(position 2\)"):
        predictor.segment(image, ["café", "cafÃ©"])
    assert predictor.embed_text(["sky", "grass", "a much longer label"]).shape == (3, 3)
