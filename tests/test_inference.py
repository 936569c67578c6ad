"""LSegPredictor: encode once, score any labels; caching, templates, windows, multi-scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import lseg
from lseg.inference import MultiScaleConfig, multiscale_logits


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


def test_batch(predictor, photo):
    results = predictor.segment_batch([photo, photo[:50]], ["sky", "grass"])
    assert [r.label_map.shape for r in results] == [photo.shape[:2], (50, photo.shape[1])]
