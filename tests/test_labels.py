"""Tests for lseg.labels: label parsing policy, prompt templates, and property-based checks."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
