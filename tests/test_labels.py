"""Tests for lseg.labels: label parsing policy, prompt templates, and property-based checks.

Strange label lists through the predictor and the model: empty, duplicates, empty strings,
whitespace, unicode and emoji, labels longer than CLIP's context, thousands of labels (chunked
running argmax, checked against the unchunked computation), and a property test.
"""

from __future__ import annotations

import re
import unicodedata
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hostile_inputs import scene
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lseg
from lseg.errors import ConfigError, LabelError, LSegError
from lseg.labels import (
    DEFAULT_TEMPLATES,
    NO_TEMPLATE,
    LabelCache,
    apply_templates,
    fill_template,
    parse_labels,
    validate_templates,
)

#: Examples per property test.
PROPERTY_EXAMPLES = 300


def _error(labels: object) -> str:
    with pytest.raises(LabelError) as info:
        parse_labels(labels)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, LSegError) and isinstance(info.value, ValueError)
    return message


def test_comma_string() -> None:
    assert parse_labels("dog, grass, sky, other") == ["dog", "grass", "sky", "other"]
    assert parse_labels("  dog,grass  ") == ["dog", "grass"]
    assert parse_labels("sky") == ["sky"]


def test_newlines_and_mixed_separators() -> None:
    assert parse_labels("dog\ncat\r\nbird\rfish, cow\n") == ["dog", "cat", "bird", "fish", "cow"]
    assert parse_labels("dog\n\n") == ["dog"]  # trailing blank lines of a file are fine


def test_whitespace_normalised() -> None:
    assert parse_labels("  traffic \t  light , potted\u00a0\u00a0plant") == ["traffic light", "potted plant"]
    assert parse_labels(["  stop   sign "]) == ["stop sign"]


def test_sequences_keep_commas_and_order() -> None:
    assert parse_labels(["person, human", "sky"]) == ["person, human", "sky"]
    assert parse_labels(("b", "a")) == ["b", "a"]
    assert parse_labels(np.array(["road", "car"])) == ["road", "car"]
    assert parse_labels(label for label in ["x", "y"]) == ["x", "y"]


def test_unicode_and_emoji_accepted_as_is() -> None:
    assert parse_labels("Hund, 猫, 🐶 dog, café") == ["Hund", "猫", "🐶 dog", "café"]


def test_empty_inputs() -> None:
    assert "no labels" in _error("")
    assert "no labels" in _error("   \n ")
    assert "no labels" in _error([])


def test_empty_label_positions() -> None:
    message = _error("dog,,cat")
    assert "label 2 of 3 is empty" in message
    assert "label 3" in _error("dog, cat,")
    assert "label 1" in _error(", dog")
    assert "label 2" in _error("dog\n \ncat")
    assert "label 2" in _error(["dog", "   "])


def test_duplicates_case_insensitive() -> None:
    message = _error("dog, cat, Dog")
    assert "'Dog' at position 3" in message and "'dog' at position 1" in message
    assert "ignoring case" in message
    exact = _error(["sky", "sky"])
    assert "ignoring case" not in exact and "position 2" in exact
    assert "duplicate" in _error(["traffic  light", "traffic light"])  # after whitespace collapse
    assert "duplicate" in _error(["caf\u00e9", "cafe\u0301"])  # NFC vs NFD spelling


def test_non_string_items() -> None:
    assert "label 2 is a int" in _error(["dog", 5])
    assert "label 1 is a NoneType" in _error([None])
    assert "bytes" in _error(b"dog, cat")
    assert "label 1 is a bytes" in _error([b"dog"])
    assert "set" in _error({"dog", "cat"})
    assert "got int" in _error(42)


def test_result_is_fresh_list() -> None:
    src = ["a", "b"]
    out = parse_labels(src)
    assert out == src and out is not src


def test_templates() -> None:
    assert NO_TEMPLATE == ("{}",)
    assert apply_templates("dog, sky") == [["dog"], ["sky"]]
    prompts = apply_templates(["dog", "sky"], ("a photo of a {}.", "a {} in the scene"))
    assert prompts == [["a photo of a dog.", "a dog in the scene"], ["a photo of a sky.", "a sky in the scene"]]
    # Substitution is literal: other braces and braces inside labels are left alone.
    assert apply_templates(["{x}"], ["a {} with {braces}"]) == [["a {x} with {braces}"]]
    assert validate_templates(DEFAULT_TEMPLATES) == DEFAULT_TEMPLATES
    assert len(DEFAULT_TEMPLATES) >= 2 and all(t.count("{}") == 1 for t in DEFAULT_TEMPLATES)


def test_template_errors() -> None:
    for bad, fragment in [
        ("a photo of a {}.", "not one string"),
        ([], "empty"),
        (["no placeholder"], "found 0"),
        (["{} and {}"], "found 2"),
        ([3], "not a string"),
        (["a {}", "a {}"], "twice"),
        (5, "list of strings"),
    ]:
        with pytest.raises(ConfigError, match=fragment):
            validate_templates(bad)  # type: ignore[arg-type]
    with pytest.raises(LabelError):
        apply_templates("dog, dog", DEFAULT_TEMPLATES)


def test_template_with_other_braces_is_filled_literally() -> None:
    # Documented behaviour: a plain replacement of {}. "a {} {x}" is valid (one placeholder) and
    # gives "a dog {x}" (str.format raised KeyError: 'x' here).
    assert validate_templates(["a {} {x}"]) == ("a {} {x}",)
    assert fill_template("a {} {x}", "dog") == "a dog {x}"
    assert fill_template("{{}} {}", "dog") == "{dog} dog"  # "{{}}" holds a "{}" too: not str.format's escape
    assert apply_templates(["dog", "{0}"], ["a {} {x}"]) == [["a dog {x}"], ["a {0} {x}"]]


def test_label_cache_is_lru_and_bounded() -> None:
    calls: list[list[str]] = []

    def encode(labels: list[str]) -> list[str]:
        calls.append(labels)
        return [lb.upper() for lb in labels]

    cache: LabelCache[str] = LabelCache(3)
    assert cache.get(["a", "b", "a"], encode) == ["A", "B", "A"]
    assert calls == [["a", "b"]]  # each missing label encoded once
    assert cache.get(["c", "b"], encode) == ["C", "B"] and calls[-1] == ["c"]
    assert cache.get(["d"], encode) == ["D"]  # evicts "a", the least recently used
    assert [key[-1] for key in cache] == ["c", "b", "d"] and len(cache) == 3
    # scopes are separate entries (the predictor's device, dtype and numerics)
    assert cache.get(["d"], encode, scope="other") == ["D"] and calls[-1] == ["d"]
    # a request larger than the cache still gets every value; then the cache is trimmed
    assert cache.get(list("uvwxyz"), encode) == list("UVWXYZ") and len(cache) == 3
    empty: LabelCache[str] = LabelCache(0)
    assert empty.get(["a"], encode) == ["A"] and len(empty) == 0


def test_label_cache_shared_by_threads_never_loses_a_value() -> None:
    """A predictor used from a thread pool: another thread's eviction between this one's insert and its
    move_to_end / look-up raised KeyError (at once with a small cache, with 4096 entries under load)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    def encode(labels: list[str]) -> list[str]:
        time.sleep(0.001)  # the text tower releases the GIL: other threads run meanwhile
        return [lb.upper() for lb in labels]

    cache: LabelCache[str] = LabelCache(2)
    sets = [[f"a{i}", f"b{i}", f"c{i % 3}"] for i in range(300)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda s: cache.get(s, encode), sets))
    assert got == [[lb.upper() for lb in s] for s in sets] and len(cache) <= 2


def _key(label: str) -> str:
    return unicodedata.normalize("NFC", label).lower()


def _check_parsed(result: list[str]) -> None:
    assert result, "a successful parse returns at least one label"
    for label in result:
        assert isinstance(label, str) and label
        assert label == label.strip() and label == " ".join(label.split())
    assert len({_key(label) for label in result}) == len(result)


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, database=None)
@given(text=st.text(max_size=60))
def test_property_arbitrary_text(text: str) -> None:
    try:
        result = parse_labels(text)
    except LabelError as e:
        assert "\n" not in str(e)
        return
    _check_parsed(result)
    # Nothing but separators and whitespace is lost.
    assert "".join(result).replace(" ", "") == "".join(
        c for c in text if c not in ",\r\n" and not c.isspace()
    )


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, database=None)
@given(items=st.lists(st.one_of(st.text(max_size=12), st.integers(), st.none()), max_size=8))
def test_property_arbitrary_lists(items: list[object]) -> None:
    try:
        result = parse_labels(items)  # type: ignore[arg-type]
    except LabelError:
        return
    _check_parsed(result)
    assert len(result) == len(items)  # sequences are never split or merged


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, database=None)
@given(
    labels=st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=10),
                    min_size=1, max_size=6),
)
def test_property_valid_labels_roundtrip(labels: list[str]) -> None:
    cleaned = [" ".join(label.split()) for label in labels]
    if any(not c for c in cleaned) or len({_key(c) for c in cleaned}) != len(cleaned):
        with pytest.raises(LabelError):
            parse_labels(labels)
        return
    assert parse_labels(labels) == cleaned
    assert parse_labels(cleaned) == cleaned  # idempotent


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


def test_label_longer_than_clip_context_warns_and_is_truncated(predictor, emb, caplog):
    """CLIP reads 75 tokens (+ start/end). Policy: warn naming the label and use its first 75
    tokens, as the text encoder can only see those. A warning, not an error: a long description
    still means what its beginning says, and one long label should not stop a batch job. What
    would be wrong silently - two labels that only differ after token 75 - is an error."""
    long = "a photo of a very " + "very " * 100 + "large dog"
    with caplog.at_level("WARNING", "lseg"):  # a log record: the CLI prints it as one `warning:` line
        r = predictor.segment(emb, [long, "cat"])
    assert re.search(r"label 'a photo of a very very very .*'\.\.\. has 107 tokens; CLIP reads only the first 75",
                     caplog.text)
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


@pytest.mark.parametrize(("text", "expected"), [
    (' "x" , y', ["x", "y"]),
    ('"salt, pepper" , sky', ["salt, pepper", "sky"]),
    ('sky ,  "salt, pepper"  ', ["sky", "salt, pepper"]),
    ('"say ""hi""" , x', ['say "hi"', "x"]),
    ('a"b, c', ['a"b', "c"]),
])
def test_spaces_around_a_quoted_label_are_allowed(text, expected):
    assert parse_labels(text) == expected


def test_text_after_a_closing_quote_is_named():
    with pytest.raises(LabelError, match="text after a closing quote in '\"salt\" pepper, sky'"):
        parse_labels('"salt" pepper, sky')
    with pytest.raises(LabelError, match="unbalanced double quote"):
        parse_labels('sky, "salt, pepper')


def test_a_label_or_template_from_bytes_that_are_not_utf8_is_one_line():
    """`lseg segment -l "$(printf 'caf\\xe9')"` (a Latin-1 shell): sys.argv holds a lone surrogate, and
    the text encoder's .encode() was a UnicodeEncodeError traceback after the model had loaded."""
    import sys

    label = b"caf\xe9".decode(sys.getfilesystemencoding(), "surrogateescape")
    with pytest.raises(LabelError, match=r"label 1 'caf\\udce9' is not valid text \(bytes that are not UTF-8\?\)"):
        parse_labels([label, "other"])
    with pytest.raises(LabelError, match="label 2 .* is not valid text"):
        parse_labels(f"other, {label}")
    with pytest.raises(ConfigError, match=r"template 1 'a \\udce9 \{\}' is not valid text"):
        validate_templates([b"a \xe9 {}".decode("utf-8", "surrogateescape")])
    assert parse_labels("café, other") == ["café", "other"]
