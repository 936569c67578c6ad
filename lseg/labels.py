"""Label lists (:func:`parse_labels`; what is accepted: docs/errors-and-limits.md), prompt templates and
the per-label cache of text embeddings (pure Python: no tokenizer, no model)."""

from __future__ import annotations

import contextlib
import numbers
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import Generic, TypeVar

from lseg.errors import ConfigError, LabelError

__all__ = [
    "DEFAULT_TEMPLATES", "NO_TEMPLATE", "LabelCache", "apply_templates", "fill_template", "first_clash", "label_index",
    "parse_labels", "validate_templates",
]

#: The reference LSeg behaviour: the raw label is the prompt.
NO_TEMPLATE: tuple[str, ...] = ("{}",)

#: A prompt ensemble for dense prediction (CLIP's "a photo of a {}." and the scene templates of ViLD and
#: MaskCLIP), its embeddings meant to be averaged per label. Not used by the original LSeg.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)

_SEPARATORS = re.compile(r",|\r\n|\n|\r")


def _split(text: str) -> list[object]:
    """A label string's items: commas and line breaks separate; double quotes group (CSV rules, with
    spaces allowed around a quoted label)."""
    if '"' not in text:
        return list(_SEPARATORS.split(text))
    items: list[object] = []
    for line in text.splitlines() or [""]:
        if line:  # an empty line adds no label (as csv read it)
            items += _split_line(line)
    return items


# A quoted label with the spaces around it; "" inside is one quote.
_QUOTED = re.compile(r'\s*"((?:[^"]|"")*)"\s*')


def _split_line(line: str) -> list[str]:
    """One line's labels (csv's strict mode refuses the space after a closing quote: ' "x" , y')."""
    items, i = [], 0
    while True:
        quoted = _QUOTED.match(line, i)
        if quoted:
            items.append(quoted[1].replace('""', '"'))
            i = quoted.end()
            if i < len(line) and line[i] != ",":
                raise LabelError(f"text after a closing quote in {_describe(line)}: quote a whole label, "
                                 "e.g. '\"salt, pepper\", sky', or read labels from a file with --labels-file")
        elif line[i:].lstrip().startswith('"'):
            raise LabelError(f"unbalanced double quote in {_describe(line)}: quote a whole label, e.g. "
                             "'\"salt, pepper\", sky', or read labels from a file with --labels-file")
        else:
            end = line.find(",", i)
            items.append(line[i:] if end < 0 else line[i:end])
            i = len(line) if end < 0 else end
        if i >= len(line):
            return items
        i += 1  # past the comma


def _is_unicode(text: str) -> bool:
    """False for text holding lone surrogates (``sys.argv``'s undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe(label: str) -> str:
    return repr(label if len(label) <= 60 else label[:57] + "...")


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """Class names from one string (split at commas and line breaks; double quotes group, as in CSV) or
    a sequence of strings, stripped, inner whitespace collapsed; ``result[i]`` is class id ``i``.
    :class:`LabelError` for no labels, an empty or non-string one, an unbalanced quote (or text after a
    closing one), or two equal
    after NFKC normalisation, ignoring case."""
    if isinstance(labels, str):
        text = labels.strip()
        if not text:
            raise LabelError("no labels given; pass class names separated by commas, e.g. "
                             "'dog, grass, sky, other'")
        items: list[object] = _split(text)
    elif isinstance(labels, (bytes, bytearray)):
        raise LabelError("labels must be text, not bytes; decode them first, e.g. labels.decode('utf-8')")
    elif isinstance(labels, AbstractSet):
        raise LabelError("labels must be an ordered sequence (list/tuple), not a set: the order of "
                         "labels defines the class ids")
    elif isinstance(labels, Iterable):
        items = list(labels)
    else:
        raise LabelError(f"labels must be a string or a list of strings, got {type(labels).__name__}")
    if not items:
        raise LabelError("no labels given; pass at least one class name, e.g. ['dog', 'sky']")

    result: list[str] = []
    seen: dict[str, int] = {}  # dedup key -> index in result
    for position, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise LabelError(f"label {position} is a {type(item).__name__} ({_describe(str(item))}), "
                             "not a string; pass class names as text")
        label = " ".join(item.split())
        if not label:
            hint = " (trailing or doubled separator?)" if isinstance(labels, str) else ""
            raise LabelError(f"label {position} of {len(items)} is empty{hint}; remove it or give it a name")
        if not _is_unicode(label):  # from bytes that are not UTF-8 (a Latin-1 shell): CLIP cannot read it
            raise LabelError(f"label {position} {_describe(label)} is not valid text (bytes that are not UTF-8?); "
                             "pass it as UTF-8")
        # CLIP lower-cases text and its tokenizer unfolds ligatures and full-width forms (NFKC): these collide
        key = unicodedata.normalize("NFKC", label).lower()
        if key in seen:
            first = seen[key]
            if result[first] == label:
                how = ""
            elif result[first].lower() == label.lower():
                how = " ignoring case (CLIP lower-cases text)"
            else:
                how = (" after Unicode compatibility normalisation (NFKC, which unfolds ligatures and "
                       "full-width letters as CLIP's tokenizer does) and ignoring case")
            raise LabelError(f"duplicate label {_describe(label)} at position {position}: same as "
                             f"{_describe(result[first])} at position {first + 1}{how}; remove one")
        seen[key] = len(result)
        result.append(label)
    return result


def validate_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """Prompt templates as a tuple, checked: a non-empty sequence of distinct strings each with exactly
    one ``{}``, else :class:`ConfigError`."""
    if isinstance(templates, str):
        raise ConfigError(f"templates must be a list of strings, not one string; use [{templates!r}]")
    try:
        items = tuple(templates)
    except TypeError:
        raise ConfigError(f"templates must be a list of strings, got {type(templates).__name__}") from None
    if not items:
        raise ConfigError("templates is empty; use NO_TEMPLATE ('{}',) to use the raw labels")
    for position, template in enumerate(items, start=1):
        if not isinstance(template, str):
            raise ConfigError(f"template {position} is a {type(template).__name__}, not a string")
        if not _is_unicode(template):
            raise ConfigError(f"template {position} {_describe(template)} is not valid text (bytes that are not "
                              "UTF-8?); pass it as UTF-8")
        count = template.count("{}")
        if count != 1:
            raise ConfigError(f"template {position} {_describe(template)} must contain exactly one '{{}}' "
                              f"placeholder for the label, found {count}; e.g. 'a photo of a {{}}.'")
    if len(set(items)) != len(items):
        duplicate = next(t for i, t in enumerate(items) if t in items[:i])
        raise ConfigError(f"template {_describe(duplicate)} is given twice; remove the duplicate")
    return items


def apply_templates(labels: str | Sequence[str], templates: Sequence[str] = NO_TEMPLATE) -> list[list[str]]:
    """``prompts[i][j]``: template ``j`` filled with label ``i`` (both checked)."""
    parsed = parse_labels(labels)
    checked = validate_templates(templates)
    return [[fill_template(template, label) for template in checked] for label in parsed]


def fill_template(template: str, label: str) -> str:
    """``template`` with its ``{}`` replaced by ``label`` (not ``str.format``: other braces are kept)."""
    return template.replace("{}", label)


V = TypeVar("V")


_ABSENT = object()


class LabelCache(Generic[V]):
    """LRU cache of per-label values (text embeddings), at most ``capacity`` entries, keyed by
    ``(scope, label)`` (the torch predictor's scope: the model's device, dtype and numerics)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[Hashable, str], V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[Hashable, str]]:
        """The ``(scope, label)`` keys, least recently used first."""
        return iter(self._items)

    def get(self, labels: Sequence[str], encode: Callable[[list[str]], Iterable[V]], scope: Hashable = ()) -> list[V]:
        """The values of ``labels`` (repeats allowed), ``encode(missing)`` computing those not cached; safe
        from several threads (each step is one dict operation: another thread may evict any entry)."""
        unique = list(dict.fromkeys(labels))
        found = {lb: v for lb in unique if (v := self._items.get((scope, lb), _ABSENT)) is not _ABSENT}
        missing = [lb for lb in unique if lb not in found]
        if missing:
            found.update(zip(missing, encode(missing), strict=True))
        for label in unique:  # to the most recently used end
            self._items.pop((scope, label), None)
            self._items[(scope, label)] = found[label]
        while len(self._items) > self.capacity:
            with contextlib.suppress(KeyError):  # emptied by another thread meanwhile
                self._items.popitem(last=False)
        return [found[lb] for lb in labels]


def label_index(labels: Sequence[str], label: str | int) -> int:
    """The position of ``label`` in ``labels``: an index, or a name (spaces collapsed; an exact match,
    else a case-insensitive one); :class:`IndexError` / :class:`KeyError` naming the labels otherwise."""
    if isinstance(label, numbers.Integral) and not isinstance(label, bool):  # numpy's integers too
        if not 0 <= label < len(labels):
            raise IndexError(f"label index {label} out of range for {len(labels)} labels")
        return int(label)
    key = " ".join(str(label).split())
    matches = [i for i, lb in enumerate(labels) if lb == key] or \
        [i for i, lb in enumerate(labels) if lb.casefold() == key.casefold()]
    if not matches:
        raise KeyError(f"{label!r} is not one of the labels: {', '.join(map(repr, labels))}")
    return matches[0]


def first_clash(keys: Iterable[Hashable]) -> tuple[int, int] | None:
    """``(j, i)``: the first position ``i`` whose key equals an earlier one's (at ``j``); None if all differ."""
    seen: dict[Hashable, int] = {}
    for i, key in enumerate(keys):
        if (j := seen.setdefault(key, i)) != i:
            return j, i
    return None
