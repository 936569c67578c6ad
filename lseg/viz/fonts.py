"""Text in pictures (legends, heatmap titles) for any Unicode label, each character in the first font of
:func:`font_files` that has it (docs/cli.md, "Colours and legends"); without Pillow's raqm layout, put in
visual order here (:func:`_visual_order`): Hebrew reads correctly, Arabic unjoined, Indic scripts unshaped."""

from __future__ import annotations

import bisect
import functools
import importlib.util
import itertools
import unicodedata
from pathlib import Path
from typing import Any

from PIL import ImageDraw, ImageFont, features

__all__ = ["TextRenderer", "font_files", "font_for"]

#: Pillow's raqm layout (shaping and bidirectional text) is available.
_RAQM: bool = bool(features.check("raqm"))

_ELLIPSIS = "\u2026"


def _package_path(package: str, *parts: str) -> Path:
    """A path in an installed package, found without importing it (one that does not exist without it)."""
    spec = importlib.util.find_spec(package)
    roots = [Path(r) for r in (spec.submodule_search_locations or []) if Path(r).is_dir()] if spec else []
    return (roots[0] if roots else Path("/nonexistent")).joinpath(*parts)


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """The font files used, in fallback order: DejaVu Sans (matplotlib's file), Noto Sans and its script
    fonts (``lseg[fonts]``), Noto Sans CJK (``lseg[cjk]``), Noto Sans Symbols and Noto Emoji."""
    ttfs = sorted(_package_path("manimgx_fonts").glob("*.ttf"))
    noto_sans = [p for p in ttfs if p.name.startswith("NotoSans[")]
    last = [p for p in ttfs if p.name.startswith(("NotoSansSymbols", "NotoEmoji"))]
    scripts = [p for p in ttfs if p.name.startswith("NotoSans") and p not in noto_sans and p not in last
               and "Italic" not in p.name]
    dejavu = _package_path("matplotlib", "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
    cjk = _package_path("mplfonts", "fonts", "NotoSansCJKsc-Regular.otf")
    last.sort(key=lambda p: p.name.startswith("NotoEmoji"))  # symbols, then emoji
    candidates = (dejavu, *noto_sans, *scripts, cjk, *last)
    return tuple(p for p in candidates if p.is_file())


@functools.lru_cache(maxsize=64)
def _coverage(path: Path) -> frozenset[int]:
    """Code points that the font at ``path`` has glyphs for (its cmap)."""
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True, fontNumber=0) as font:
        return frozenset(font.getBestCmap() or ())


_ASCII = frozenset(range(32, 127))


def _chain() -> list[Path | None]:
    return list(font_files()) or [None]  # no font package: Pillow's own (ASCII)


def _covers(path: Path | None, cp: int) -> bool:
    """The font at ``path`` (``None``: Pillow's own) has ``cp`` (cmaps are read when first needed)."""
    return cp in (_ASCII if path is None else _coverage(path))


def _sticky(ch: str) -> bool:
    """A character that may stay in the previous character's font: a mark, a joiner, a space, a digit
    or a punctuation sign."""
    return unicodedata.category(ch)[0] in "MZNPC" or unicodedata.category(ch) == "Sk"


def _choose(chain: list[Path | None], text: str, i: int, prev: int | None) -> int | None:
    """Index in ``chain`` of the font that draws ``text[i]`` after a character in font ``prev``: ``prev``
    for a mark it has, and for a space, digit or punctuation sign when the next letter is drawn with it
    too (or none follows); else the first that has it."""
    cp = ord(text[i])
    if prev is not None and _covers(chain[prev], cp) and _sticky(text[i]):
        if unicodedata.category(text[i])[0] == "M":
            return prev
        nxt = next((j for j in range(i + 1, len(text)) if not _sticky(text[j])), None)
        if nxt is None or _choose(chain, text, nxt, None) == prev:
            return prev
    if unicodedata.bidirectional(text[i]) == "AL":  # Arabic letters join: a word's letters in one font
        a, b = text.rfind(" ", 0, i) + 1, (text + " ").find(" ", i)
        word = [ord(c) for c in text[a:b] if unicodedata.bidirectional(c) == "AL"]
        whole = next((k for k, path in enumerate(chain) if all(_covers(path, c) for c in word)), None)
        if whole is not None:
            return whole
    return next((k for k, path in enumerate(chain) if _covers(path, cp)), None)


def font_for(ch: str) -> Path | None:
    """The font file that draws the character ``ch``, or ``None``."""
    chain = _chain()
    i = _choose(chain, ch, 0, None)
    return None if i is None else chain[i]


@functools.lru_cache(maxsize=256)
def _font(path: Path | None, size: int, raqm: bool) -> Any:
    if path is None:
        return ImageFont.load_default(size=size)
    engine = ImageFont.Layout.RAQM if raqm else ImageFont.Layout.BASIC
    return ImageFont.truetype(str(path), size=size, layout_engine=engine)


def _stand_in(ch: str) -> str:
    """Readable text for a character no font has; '' for invisible modifiers."""
    if unicodedata.category(ch) in ("Mn", "Me", "Cf") or 0xFE00 <= ord(ch) <= 0xFE0F:
        return ""
    name = unicodedata.name(ch, "")
    if name and not name.startswith(("CJK UNIFIED", "HANGUL SYLLABLE")):
        return f"[{name}]"
    return f"[U+{ord(ch):04X}]"


def _joins_previous(text: str, i: int) -> bool:
    """``text[i]`` belongs to the cluster of ``text[i - 1]`` (a mark, a joiner, after a virama)."""
    ch, prev = text[i], text[i - 1]
    return (unicodedata.category(ch)[0] == "M" or ch in "\u200c\u200d" or 0xFE00 <= ord(ch) <= 0xFE0F
            or prev == "\u200d" or unicodedata.combining(prev) == 9)  # 9: virama (conjunct follows)


def _clusters(text: str) -> list[str]:
    """``text`` cut where a line may break (never inside a base letter with its marks)."""
    out: list[str] = []
    for i, ch in enumerate(text):
        if out and _joins_previous(text, i):
            out[-1] += ch
        else:
            out.append(ch)
    return out


#: Bidirectional classes as :func:`_visual_order` groups them: strong right, strong left, number.
_BIDI_KINDS = {"R": "R", "AL": "R", "L": "L", "EN": "EN", "AN": "EN"}


def _bidi_levels(clusters: list[str]) -> list[int] | None:
    """UAX #9 levels of ``clusters`` (rules W/N, no explicit embeddings; the paragraph direction from the
    first strong character); None without right-to-left letters."""
    raw = [unicodedata.bidirectional(c[0]) for c in clusters]
    kinds = [_BIDI_KINDS.get(b, "N") for b in raw]
    if "R" not in kinds:
        return None
    for i in [*range(len(raw)), *range(len(raw) - 1, -1, -1)]:  # W4: 1.5, 1,000; W5: 12% (both sides)
        near = {kinds[j] for j in (i - 1, i + 1) if 0 <= j < len(raw)}
        if (raw[i] == "ET" and "EN" in near) or (raw[i] in ("ES", "CS") and 0 < i < len(raw) - 1
                                                 and kinds[i - 1] == kinds[i + 1] == "EN"):
            kinds[i] = "EN"
    para = next(k for k in kinds if k in "LR")
    strong = []  # a number counts as the strong direction before it when neutrals are resolved
    for kind in kinds:
        strong.append(kind if kind != "EN" else next((k for k in reversed(strong) if k in "LR"), para))
    levels = []
    for i, kind in enumerate(kinds):
        if kind == "EN":  # a number: left to right inside any stretch
            levels.append(2 if strong[i] == "R" or para == "R" else 0)
            continue
        if kind == "N":
            before = next((k for k in reversed(strong[:i]) if k in "LR"), para)
            after = next((k for k in strong[i + 1:] if k in "LR"), para)
            kind = before if before == after else para
        levels.append((1 if kind == "R" else 0) if para == "L" else (1 if kind == "R" else 2))
    return levels


def _display_order(levels: list[int]) -> list[int]:
    """UAX #9 rule L2: the indices of items at ``levels`` in display order (each stretch reversed)."""
    order = list(range(len(levels)))
    for level in range(max(levels, default=0), 0, -1):
        stretches = [list(run) for _, run in itertools.groupby(order, key=lambda i: levels[i] >= level)]
        order = [i for run in stretches for i in (run[::-1] if levels[run[0]] >= level else run)]
    return order


def _visual_order(text: str) -> str:
    """``text`` in display order for Pillow's basic layout (:func:`_bidi_levels`, then rule L2 on clusters)."""
    clusters = _clusters(text)
    levels = _bidi_levels(clusters)
    if levels is None:
        return text
    return "".join(clusters[i].translate(_MIRRORED) if levels[i] % 2 else clusters[i] for i in _display_order(levels))


#: Rule L4: brackets drawn mirrored in right-to-left text.
_MIRRORED = str.maketrans("()[]{}<>«»", ")(][}{><»«")


class TextRenderer:
    """Measure, wrap and draw one line of text at ``size`` pixels with the font fallback chain."""

    def __init__(self, size: int) -> None:
        self.size = max(1, int(size))
        self._raqm = _RAQM
        self._chain = _chain()
        #: Baseline below the top of a line: the first font's ascent (the one most text is in).
        self.ascent = self.font(0).getmetrics()[0]

    def font(self, index: int) -> Any:
        """The Pillow font of ``font_files()[index]`` at this size."""
        return _font(self._chain[index], self.size, self._raqm)

    def runs(self, text: str) -> list[tuple[Any, str]]:
        """``text`` as ``(font, substring)`` runs in drawing order, characters without a font replaced."""
        text = " ".join(text.split())
        if not self._raqm:
            text = _visual_order(text)
        pieces: list[tuple[int, str]] = []  # (font, character) in logical order
        for i, ch in enumerate(text):
            index = _choose(self._chain, text, i, pieces[-1][0] if pieces else None)
            if index is None:
                index, ch = 0, _stand_in(ch)
            pieces.append((index, ch))
        clusters = _clusters(text) if self._raqm and len({f for f, _ in pieces}) > 1 else None
        levels = None if clusters is None else _bidi_levels(clusters)
        # raqm orders each run; runs of several fonts in right-to-left text are put in display order here
        keys = [0] * len(text) if levels is None else [lv for c, lv in zip(clusters or (), levels) for _ in c]
        out: list[tuple[int, int, str]] = []
        for (index, ch), level in zip(pieces, keys):
            if out and out[-1][:2] == (index, level):
                out[-1] = (index, level, out[-1][2] + ch)
            elif ch:
                out.append((index, level, ch))
        order = _display_order([lv for _, lv, _ in out]) if levels is not None else range(len(out))
        return [(self.font(out[i][0]), out[i][2]) for i in order]

    def width(self, text: str) -> int:
        return int(sum(font.getlength(s) for font, s in self.runs(text)) + 0.5)

    def wrap(self, text: str, max_width: int, max_lines: int = 2) -> list[str]:
        """``text`` in at most ``max_lines`` lines of at most ``max_width`` pixels, broken at spaces (else
        between clusters); what does not fit is cut with '…'."""
        text = " ".join(text.split())
        if self.width(text) <= max_width or max_width <= 0:
            return [text]
        lines: list[str] = []
        rest = text
        while rest and len(lines) < max_lines - 1:
            line, rest = self._take_line(rest, max_width)
            lines.append(line)
        if rest:
            lines.append(rest if self.width(rest) <= max_width else self._ellipsized(rest, max_width))
        return lines

    def fit(self, text: str, max_width: int) -> str:
        """``text`` on one line of at most ``max_width`` pixels (cut with an ellipsis if longer)."""
        return self.wrap(text, max_width, 1)[0]

    @staticmethod
    def _longest_prefix(clusters: list[str], fits: Any) -> int:
        """The most clusters ``n`` (at least 1) for which ``fits(''.join(clusters[:n]))`` holds."""
        return 1 + bisect.bisect_left(range(2, len(clusters) + 1), True,
                                      key=lambda n: not fits("".join(clusters[:n])))

    def _take_line(self, text: str, max_width: int) -> tuple[str, str]:
        """The first line of ``text`` (at most ``max_width``) and the rest."""
        words = text.split(" ")
        line = ""
        for i, word in enumerate(words):
            candidate = f"{line} {word}" if line else word
            if self.width(candidate) <= max_width:
                line = candidate
                continue
            if line:  # break at the space before this word
                return line, " ".join(words[i:])
            clusters = _clusters(word)  # one word wider than the line: break inside it
            n = self._longest_prefix(clusters, lambda s: self.width(s) <= max_width)
            return "".join(clusters[:n]), " ".join(["".join(clusters[n:]), *words[i + 1:]]).strip()
        return line, ""

    def _ellipsized(self, text: str, max_width: int) -> str:
        clusters = _clusters(text)
        n = self._longest_prefix(clusters, lambda s: self.width(s.rstrip() + _ELLIPSIS) <= max_width)
        return "".join(clusters[:n]).rstrip() + _ELLIPSIS

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
             fill: tuple[int, int, int] = (0, 0, 0)) -> None:
        """Draw ``text`` with its top-left corner at ``xy`` (the runs share a baseline)."""
        x, y = xy
        for font, s in self.runs(text):
            draw.text((x, y + self.ascent), s, font=font, fill=fill, anchor="ls")
            x += font.getlength(s)
