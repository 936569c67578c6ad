"""Strange label lists through the predictor and the model: empty, duplicates, empty strings,
whitespace, unicode and emoji, labels longer than CLIP's context, thousands of labels (chunked
running argmax, checked against the unchunked computation), and a property test."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hardening.helpers import scene
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lseg
from lseg.errors import LabelError
from lseg.labels import parse_labels


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return lseg.LSegPredictor(tiny_model, size=48)


@pytest.fixture(scope="module")
def emb(predictor):
    return predictor.embed_image(scene(30, 40))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "no labels"),
        ("", "no labels"),
        ("  \n ", "no labels"),
        (["dog", "dog"], "duplicate label 'dog' at position 2"),
        (["Dog", "dog"], "ignoring case"),
        (["café", "cafe\u0301"], "duplicate"),  # NFC vs NFD spelling of the same word
        (["dog", ""], "label 2 of 2 is empty"),
        (["dog", "   \t"], "label 2 of 2 is empty"),
        ("dog,,cat", "label 2 of 3 is empty"),
        ("dog, cat,", "label 3 of 3 is empty"),
        ([1, 2], "not a string"),
        ({"dog", "cat"}, "not a set"),
        (b"dog,cat", "not bytes"),
        (None, "must be a string or a list"),
    ],
)
def test_unusable_label_lists_raise_one_line_label_errors(predictor, emb, labels, message):
    with pytest.raises(LabelError, match=message) as e:
        predictor.segment(emb, labels)
    assert "\n" not in str(e.value)
    with pytest.raises(LabelError):
        predictor.embed_text(labels)


def test_whitespace_is_normalised(predictor, emb):
    r = predictor.segment(emb, ["  dog ", "big\t\n  cat", "sky"])
    assert r.labels == ["dog", "big cat", "sky"]
    assert r.label_map.max() < 3
    torch.testing.assert_close(predictor.embed_text(["big cat"]), predictor.embed_text([" big   cat "]))
    assert predictor.segment(emb, "dog\ncat\r\nsky\n").labels == ["dog", "cat", "sky"]  # a label file's text


def test_unicode_and_emoji_labels(predictor, emb):
    labels = ["café", "猫", "🐶", "🏳️‍🌈 flag", "Ελληνικά", "zero\u200bwidth", "a, b"]
    r = predictor.segment(emb, labels)
    assert r.labels == labels and r.logits.shape[0] == len(labels)
    text = predictor.embed_text(labels)
    assert torch.isfinite(text).all()
    sims = text @ text.T
    assert (sims - torch.eye(len(labels))).abs().max() < 0.9999  # all different embeddings


def test_label_longer_than_clip_context_warns_and_is_truncated(predictor, emb):
    """CLIP reads 75 tokens (+ start/end). Policy: warn naming the label and use its first 75
    tokens, as the text encoder can only see those. A warning, not an error: a long description
    still means what its beginning says, and one long label should not stop a batch job. What
    would be wrong silently - two labels that only differ after token 75 - is an error."""
    long = "a photo of a very " + "very " * 100 + "large dog"
    with pytest.warns(UserWarning, match=r"label 'a photo of a very very very .*'\.\.\. has 107 tokens; "
                      r"CLIP reads only the first 75"):
        r = predictor.segment(emb, [long, "cat"])
    assert r.label_map.max() < 2
    truncated = "a photo of a very " + "very " * 71
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(predictor.embed_text([long]), predictor.embed_text([truncated]), atol=1e-5, rtol=0)
        with pytest.raises(LabelError, match=r"labels 1 and 2 .* identical within CLIP's 75-token context"):
            lseg.LSegPredictor(predictor.model).embed_text([long, long.replace("large dog", "small cat")])


def test_thousands_of_labels_running_argmax_equals_unchunked(tiny_model):
    """Above ``label_chunk_size`` labels the label map is a running argmax over chunks (the
    K x h x w logits are never all held): identical to the argmax of the full logits."""
    labels = [f"thing number {i}" for i in range(300)]
    img = scene(60, 84, seed=3)
    for size in (None, 40):  # original size == working size, and resized to the original size
        chunked = lseg.LSegPredictor(tiny_model, size=size, label_chunk_size=64)
        whole = lseg.LSegPredictor(tiny_model, size=size, label_chunk_size=10_000)
        a = chunked.segment(img, labels)
        b = whole.segment(img, labels)
        assert a.label_map.shape == (60, 84)
        np.testing.assert_array_equal(a.label_map, b.label_map)
        assert not isinstance(a._logits, torch.Tensor) and callable(a._logits)  # not computed yet
        torch.testing.assert_close(a.logits, b.logits)  # computed on first access
        assert isinstance(a._logits, torch.Tensor)  # computed once, then kept
        full = F.interpolate(torch.from_numpy(b.logits)[None], size=(60, 84), mode="bilinear", align_corners=True)[0]
        assert (full.argmax(0).numpy() == a.label_map).mean() > 0.999
        assert len(set(a.label_map.ravel().tolist())) > 1
        assert "logits" not in repr(a)


def test_label_chunks_do_not_change_a_bottleneck_spatial_block(tiny_model):
    """arch_option=1's spatial block adds the per-pixel maximum over *all* labels, so labels must
    not be scored in separate chunks there (they were, giving another label map)."""
    torch.manual_seed(0)
    model = lseg.LSeg(tiny_model.config.replace(arch_option=1, block_depth=2)).eval()
    model.load_state_dict(tiny_model.state_dict(), strict=False)
    labels = [f"class {i}" for i in range(12)]
    img = scene(40, 56)
    a = lseg.LSegPredictor(model, size=48, label_chunk_size=3).segment(img, labels)
    b = lseg.LSegPredictor(model, size=48, label_chunk_size=100).segment(img, labels)
    np.testing.assert_array_equal(a.label_map, b.label_map)
    torch.testing.assert_close(a.logits, b.logits)


def test_label_cache_stays_bounded(tiny_model, emb):
    p = lseg.LSegPredictor(tiny_model, size=48, text_cache_size=50, label_chunk_size=16)
    r = p.segment(emb, [f"label {i}" for i in range(120)])
    assert r.label_map.max() < 120
    assert len(p._text_cache) == 50


# ------------------------------------------------------------------------------------ property test

label_text = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", " ", "dog", "Dog", "🐶", "a,b", "\n", "\u200b", "ü", "u\u0308", "&amp;", "x" * 30]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
          database=None)
@given(labels=st.lists(label_text, max_size=6) | st.text(st.characters(codec="utf-8"), max_size=30))
def test_property_any_label_input_gives_a_result_or_a_label_error(predictor, emb, labels):
    try:
        expected = parse_labels(labels)
    except LabelError as e:
        assert "\n" not in str(e)
        with pytest.raises(LabelError):
            predictor.segment(emb, labels)
        return
    r = predictor.segment(emb, labels)
    assert r.labels == expected
    assert r.label_map.shape == (30, 40) and 0 <= r.label_map.min() and r.label_map.max() < len(expected)
    assert np.isfinite(r.logits).all()
