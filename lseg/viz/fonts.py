"""Text in pictures (legends, heatmap titles) for any Unicode label, with fonts from pip packages.

Fonts, tried in this order for each character:

1. DejaVu Sans, shipped by matplotlib (a dependency; it is not imported, only its font file is
   read): Latin, Greek, Cyrillic, Armenian, Georgian, Hebrew, Arabic and many symbols;
2. Noto Sans CJK SC, shipped by the ``mplfonts`` package (``pip install 'lseg[cjk]'``; 85 MB):
   Chinese, Japanese kana and kanji, Korean hangul;
3. Pillow's built-in font, if neither is installed (ASCII).

A character that none of them has (emoji, scripts such as Devanagari or Thai without a font) is
written as its Unicode name in brackets (``[CAT FACE]``) or code point (``[U+0E01]``) instead of a
box, so the text stays readable; invisible modifiers (variation selectors, joiners, combining marks
without a glyph) are dropped. The label files (``*_labels.json``, the PNG text chunk) always keep
the exact label text.
"""

from __future__ import annotations

import functools
import importlib.util
import unicodedata
from pathlib import Path
from typing import Any

from PIL import ImageDraw, ImageFont

__all__ = ["TextRenderer", "font_files"]


def _package_file(package: str, *parts: str) -> Path | None:
    """A data file of an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*parts)
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """The font files used, in fallback order (see the module docstring)."""
    candidates = (
        _package_file("matplotlib", "mpl-data", "fonts", "ttf", "DejaVuSans.ttf"),
        _package_file("mplfonts", "fonts", "NotoSansCJKsc-Regular.otf"),
    )
    return tuple(p for p in candidates if p is not None)


@functools.lru_cache(maxsize=8)
def _coverage(path: Path) -> frozenset[int]:
    """Code points that the font at ``path`` has glyphs for (its cmap)."""
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True, fontNumber=0) as font:
        return frozenset(font.getBestCmap() or ())


@functools.lru_cache(maxsize=32)
def _font(path: Path | None, size: int) -> Any:
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(path), size=size)


def _stand_in(ch: str) -> str:
    """Readable text for a character no font has; '' for invisible modifiers."""
    if unicodedata.category(ch) in ("Mn", "Me", "Cf") or 0xFE00 <= ord(ch) <= 0xFE0F:
        return ""
    name = unicodedata.name(ch, "")
    if name and not name.startswith(("CJK UNIFIED", "HANGUL SYLLABLE")):
        return f"[{name}]"
    return f"[U+{ord(ch):04X}]"


class TextRenderer:
    """Measure and draw one line of text at ``size`` pixels with the font fallback chain."""

    def __init__(self, size: int) -> None:
        self.size = max(1, int(size))
        files = font_files()
        self._fonts: list[tuple[Any, frozenset[int] | None]] = [
            (_font(p, self.size), _coverage(p)) for p in files
        ]
        if not self._fonts:  # no font package: Pillow's own (ASCII)
            self._fonts = [(_font(None, self.size), frozenset(range(32, 127)))]

    def runs(self, text: str) -> list[tuple[Any, str]]:
        """``text`` split into ``(font, substring)`` runs; characters without a font replaced."""
        out: list[tuple[Any, str]] = []
        for ch in " ".join(text.split()):
            font = next((f for f, cov in self._fonts if cov is None or ord(ch) in cov), None)
            if font is None:
                ascii_font = self._fonts[0][0]
                piece = _stand_in(ch)
                if not piece:
                    continue
                font, ch = ascii_font, piece
            if out and out[-1][0] is font:
                out[-1] = (font, out[-1][1] + ch)
            else:
                out.append((font, ch))
        return out

    def width(self, text: str) -> int:
        return int(sum(font.getlength(s) for font, s in self.runs(text)) + 0.5)

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
             fill: tuple[int, int, int] = (0, 0, 0)) -> None:
        """Draw ``text`` with its top-left corner at ``xy`` (the runs share a baseline)."""
        x, y = xy
        ascent = max(font.getmetrics()[0] for font, _ in self._fonts)
        for font, s in self.runs(text):
            draw.text((x, y + ascent), s, font=font, fill=fill, anchor="ls")
            x += font.getlength(s)
