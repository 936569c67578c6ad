"""Label lists and prompt templates (pure Python: no tokenizer, no model).

LSeg segments an image into whatever classes the user names, e.g. ``"dog, grass, sky, other"``.
:func:`parse_labels` turns such input into a clean, validated ``list[str]``; the index of a label
in that list is its class id in the predicted label map.

Normalisation and policy (decided here, once):

* A ``str`` is split on commas and line breaks (``"dog, cat"``, or the lines of a label file);
  double quotes group a label that holds a comma, as in CSV: ``'"salt, pepper", sky'``.
  Surrounding whitespace of the whole string is ignored first, so a trailing newline at the end
  of a file is fine; any other empty entry (``"dog,,cat"``, ``"dog,"``, a blank line between
  labels) is an error naming its position. A sequence of strings is taken item by item (so a
  label may contain a comma there, e.g. ``["person, human", "sky"]``).
* Each label is stripped and inner runs of whitespace are collapsed to one space.
* Duplicates are detected **case-insensitively after Unicode compatibility normalisation (NFKC)**:
  CLIP's tokenizer lower-cases its input and (through ftfy) unfolds ligatures and full-width
  characters, so ``"Dog"``/``"dog"``, ``"ﬁsh"``/``"fish"`` and ``"ＤＯＧ"``/``"dog"`` would get
  identical embeddings and the second could never win the per-pixel argmax. The returned labels
  keep the user's text.
* Unicode and emoji are accepted as-is.

Prompt templates: LSeg (the reference implementation) feeds the raw label text to CLIP, i.e.
:data:`NO_TEMPLATE`. :data:`DEFAULT_TEMPLATES` is an optional prompt ensemble. The one template
path: :func:`validate_templates` checks them (the predictor, the evaluator's config, the CLI) and
:func:`fill_template` fills one (a plain replacement of ``{}``, never ``str.format``: other braces
stay as they are, so ``"a {} {x}"`` gives ``"a dog {x}"``); :func:`apply_templates` expands a label
list into one prompt per template.

:class:`LabelCache` is the LRU cache of per-label text embeddings shared by the torch predictor and
the ONNX runtime.
"""

from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import Generic, TypeVar

from lseg.errors import ConfigError, LabelError

__all__ = [
    "DEFAULT_TEMPLATES",
    "NO_TEMPLATE",
    "LabelCache",
    "apply_templates",
    "fill_template",
    "parse_labels",
    "validate_templates",
]

#: The reference LSeg behaviour: the raw label is the prompt.
NO_TEMPLATE: tuple[str, ...] = ("{}",)

#: A short prompt ensemble for dense prediction: CLIP's basic "a photo of a {}." prompt
#: (Radford et al., 2021) plus the scene-level templates used for open-vocabulary detection and
#: segmentation (ViLD, Gu et al., 2022; MaskCLIP, Zhou et al., 2022). Text embeddings of the
#: prompts of one label are meant to be averaged. Not used by the original LSeg.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)

# Separators inside a single label string: comma or any line break (\r\n counts once).
_SEPARATORS = re.compile(r",|\r\n|\n|\r")


def _split(text: str) -> list[object]:
    """A label string's items: commas and line breaks separate; double quotes group (CSV rules)."""
    if '"' not in text:
        return list(_SEPARATORS.split(text))
    import csv

    items: list[object] = []
    for line in text.splitlines() or [""]:
        try:
            items += next(csv.reader([line], skipinitialspace=True, strict=True), [""])
        except csv.Error:
            raise LabelError(f"unbalanced double quote in {_describe(line)}: quote a whole label, e.g. "
                             "'\"salt, pepper\", sky', or read labels from a file with --labels-file") from None
    return items


def _describe(label: str) -> str:
    """Quote a label for an error message, keeping the message on one line."""
    return repr(label if len(label) <= 60 else label[:57] + "...")


def _dedup_key(label: str) -> str:
    # CLIP lower-cases text and its tokenizer's ftfy unfolds ligatures and full-width forms (NFKC
    # covers both) -> these collide.
    return unicodedata.normalize("NFKC", label).lower()


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """Parse and validate a list of class names.

    Args:
        labels: Either one string with labels separated by commas and/or line breaks
            (``"dog, grass, sky, other"``), or a sequence of strings (one label each; commas are
            kept). Sets are refused because label order defines class ids.

    Returns:
        Labels in input order, each stripped with inner whitespace runs collapsed to a single
        space, non-empty, and unique ignoring case. ``result[i]`` is class id ``i``.

    Raises:
        LabelError: No labels; a label that is empty or whitespace-only (the message gives its
            1-based position); a non-string item; two labels that are equal after NFKC
            normalisation, ignoring case (both positions are named).
    """
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
            raise LabelError(f"label {position} of {len(items)} is empty{hint}; remove it or give it "
                             "a name")
        key = _dedup_key(label)
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
    """Check prompt templates: a non-empty sequence of strings, each with exactly one ``{}``.

    Args:
        templates: E.g. :data:`DEFAULT_TEMPLATES` or :data:`NO_TEMPLATE`. Other braces are
            allowed (substitution is a plain replacement of ``{}``, not ``str.format``).

    Returns:
        The templates as a tuple.

    Raises:
        ConfigError: Empty, a bare string instead of a sequence, a non-string item, a template
            without exactly one ``{}``, or duplicate templates.
    """
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
        count = template.count("{}")
        if count != 1:
            raise ConfigError(f"template {position} {_describe(template)} must contain exactly one '{{}}' "
                              f"placeholder for the label, found {count}; e.g. 'a photo of a {{}}.'")
    if len(set(items)) != len(items):
        duplicate = next(t for i, t in enumerate(items) if t in items[:i])
        raise ConfigError(f"template {_describe(duplicate)} is given twice; remove the duplicate")
    return items


def apply_templates(labels: str | Sequence[str], templates: Sequence[str] = NO_TEMPLATE) -> list[list[str]]:
    """Expand each label into one prompt per template.

    Args:
        labels: Anything :func:`parse_labels` accepts (it is parsed and validated first).
        templates: Templates with exactly one ``{}`` each (see :func:`validate_templates`).
            The default :data:`NO_TEMPLATE` reproduces LSeg (raw labels).

    Returns:
        ``prompts[i][j]`` = template ``j`` filled with label ``i``; shape
        ``len(labels) x len(templates)``.

    Raises:
        LabelError: Invalid labels.
        ConfigError: Invalid templates.
    """
    parsed = parse_labels(labels)
    checked = validate_templates(templates)
    return [[fill_template(template, label) for template in checked] for label in parsed]


def fill_template(template: str, label: str) -> str:
    """The prompt for ``label``: ``template`` with its ``{}`` replaced (plainly: other braces, and braces
    in the label, are kept; ``str.format`` would raise ``KeyError`` on ``"a {} {x}"``)."""
    return template.replace("{}", label)


V = TypeVar("V")


class LabelCache(Generic[V]):
    """LRU cache of per-label values (text embeddings), at most ``capacity`` entries (0: keeps nothing).

    Keys are ``(scope, label)``: the torch predictor scopes by the model's device, dtype and numerics,
    so moving or casting the model never returns embeddings computed for another state.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[Hashable, str], V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[Hashable, str]]:
        """The ``(scope, label)`` keys, least recently used first."""
        return iter(self._items)

    def get(self, labels: Sequence[str], encode: Callable[[list[str]], Iterable[V]], scope: Hashable = ()) -> list[V]:
        """The values of ``labels`` (in order; repeats allowed); ``encode(missing)`` computes the ones
        not cached, once each. Least recently used entries beyond ``capacity`` are dropped after the
        lookup (so a request larger than the cache still gets all its values)."""
        missing = [lb for lb in dict.fromkeys(labels) if (scope, lb) not in self._items]
        if missing:
            for label, value in zip(missing, encode(missing), strict=True):
                self._items[(scope, label)] = value
        out = []
        for label in labels:
            self._items.move_to_end((scope, label))
            out.append(self._items[(scope, label)])
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return out
