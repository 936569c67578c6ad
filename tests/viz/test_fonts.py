"""Tests for lseg.viz.fonts (issue 23, item 19): fonts for the scripts people use, bidirectional text,
wrapping; and the legend drawing a share apart from its label."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from PIL import ImageDraw

import lseg.viz.fonts
from lseg.viz import overlay
from lseg.viz.fonts import TextRenderer, _visual_order, font_files, font_for

# One letter per script and the Noto font that must draw it (lseg[fonts], in the dev extra).
SCRIPTS = {
    "ह": "NotoSansDevanagari", "ก": "NotoSansThai", "ক": "NotoSansBengali", "த": "NotoSansTamil",
    "త": "NotoSansTelugu", "ગ": "NotoSansGujarati", "ਗ": "NotoSansGurmukhi", "ಕ": "NotoSansKannada",
    "മ": "NotoSansMalayalam", "ଓ": "NotoSansOriya", "ස": "NotoSansSinhala", "ក": "NotoSansKhmer",
    "မ": "NotoSansMyanmar", "አ": "NotoSansEthiopic", "🐶": "NotoEmoji",
}


@pytest.mark.parametrize(("ch", "family"), SCRIPTS.items())
def test_a_font_covers_the_script(ch: str, family: str) -> None:
    path = font_for(ch)  # was None: drawn as [DEVANAGARI LETTER HA], [THAI CHARACTER KO KAI], ...
    assert path is not None and path.name.startswith(family), (unicodedata.name(ch), path)


def test_latin_arabic_hebrew_cjk_keep_their_fonts() -> None:
    assert font_for("a").name == "DejaVuSans.ttf" and font_for("م").name == "DejaVuSans.ttf"
    assert font_for("ש").name == "DejaVuSans.ttf"
    assert font_for("猫") is None or font_for("猫").name.startswith("NotoSansCJK")  # lseg[cjk]
    assert font_files()[0].name == "DejaVuSans.ttf"


@pytest.mark.parametrize("text", ["नमस्ते दुनिया", "สวัสดีชาวโลก", "हाथी, 12"])
def test_a_word_is_drawn_in_one_font(text: str) -> None:
    """Marks, spaces and digits stay in the script's font, so raqm shapes the words whole."""
    runs = TextRenderer(20).runs(text)
    assert len(runs) == 1 and runs[0][1] == text
    assert "Noto" in runs[0][0].path


def test_emoji_with_a_word_keeps_normal_spacing() -> None:
    runs = TextRenderer(20).runs("🐶 dog")
    assert [s for _, s in runs] == ["🐶", " dog"]  # the space in DejaVu, not the wide emoji space
    assert runs[0][0].path.endswith("NotoEmoji[wght].ttf")


def test_visual_order_without_raqm() -> None:
    assert _visual_order("abc") == "abc"
    assert _visual_order("שלום עולם") == "םלוע םולש"
    assert _visual_order("קט 12") == "12 טק"  # the number stays left to right, left of the word
    assert _visual_order("cat קט dog") == "cat טק dog"
    assert _visual_order("שלום!") == "!םולש"  # a right-to-left paragraph ends on the left


def test_runs_in_visual_order_only_without_raqm(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "שלום"
    monkeypatch.setattr(lseg.viz.fonts, "_RAQM", True)
    assert "".join(s for _, s in TextRenderer(20).runs(text)) == text  # raqm reorders when drawing
    monkeypatch.setattr(lseg.viz.fonts, "_RAQM", False)
    renderer = TextRenderer(20)
    assert "".join(s for _, s in renderer.runs(text)) == "םולש"  # basic layout: reordered here
    assert all(font.layout_engine == lseg.viz.fonts.ImageFont.Layout.BASIC for font, _ in renderer.runs(text))


def test_wrap_two_lines_then_ellipsis() -> None:
    r = TextRenderer(12)
    text = "a red bicycle leaning against a weathered brick wall beside a green door " * 5
    lines = r.wrap(text, 120)
    assert len(lines) == 2 and lines[-1].endswith("\u2026") and all(r.width(line) <= 120 for line in lines)
    assert text.startswith(lines[0] + " ")  # broken at a space
    assert r.wrap("short", 120) == ["short"] and r.fit("x" * 100, 40).endswith("\u2026")
    thai = r.wrap("สวัสดีชาวโลก" * 10, 80)  # no spaces: broken between letters, never before a mark
    assert len(thai) == 2 and all(unicodedata.category(line[0])[0] != "M" for line in thai)
    assert all(r.width(line) <= 80 for line in thai)


def test_share_and_label_drawn_as_separate_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """An Arabic label's share was drawn '%0 مرحبا' (one run, reordered right to left)."""
    drawn: list[str] = []
    original = TextRenderer.draw

    def record(self: TextRenderer, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
               fill: tuple[int, int, int] = (0, 0, 0)) -> None:
        drawn.append(text)
        original(self, draw, xy, text, fill)

    monkeypatch.setattr(TextRenderer, "draw", record)
    ids = np.zeros((30, 40), np.int64)
    ids[:, 20:] = 1
    overlay(np.full((30, 40, 3), 90, np.uint8), ids, ["مرحبا", "قطة كبيرة"])
    assert sorted(drawn) == sorted(["50%", "مرحبا", "50%", "قطة كبيرة"])


@pytest.mark.skipif(not lseg.viz.fonts._RAQM, reason="needs Pillow's raqm layout")
def test_right_to_left_text_in_several_fonts_is_drawn_in_display_order() -> None:
    """Urdu 'سڑک کے کنارے' (ے is not in DejaVu Sans) was drawn 'ے کنارےسڑک ک': the fonts' runs left to right
    in logical order, a word split between two fonts (unjoined); 'כלב 🐶' had the emoji on the right."""
    if font_for("ے") is None or font_for("ے") == font_for("س"):
        pytest.skip("needs lseg[fonts] (Noto Sans Arabic)")
    runs = TextRenderer(20).runs("سڑک کے کنارے")
    assert [s for _, s in runs] == ["کے کنارے", "سڑک "]  # each word in one font; the first word on the right
    assert [s for _, s in TextRenderer(20).runs("כלב 🐶")] == ["🐶", "כלב "]
    assert [s for _, s in TextRenderer(20).runs("قطة")] == ["قطة"]


def test_visual_order_keeps_numbers_whole_and_mirrors_brackets() -> None:
    """Without raqm, 'מחיר 1.5' was drawn '5.1 ריחמ', 'חתול 12%' '%12 לותח' and 'חתול (גדול)' ')לודג( לותח'."""
    assert _visual_order("מחיר 1.5") == "1.5 ריחמ"
    assert _visual_order("גודל 1,000") == "1,000 לדוג"
    assert _visual_order("חתול 12%") == "12% לותח"
    assert _visual_order("חתול (גדול)") == "(לודג) לותח"
    assert _visual_order("a (b) c") == "a (b) c"
