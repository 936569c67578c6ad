"""The package's front door: every exported name imports and is documented."""

from __future__ import annotations

import re
from pathlib import Path

import lseg

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_exported_name_imports_and_is_documented() -> None:
    """ViTConfig, TextEncoderConfig and read_state_dict were exported but named on no docs page."""
    assert set(lseg.__all__) == set(lseg._EXPORTS) and set(lseg.__all__) <= set(dir(lseg))
    docs = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    for name in lseg.__all__:
        assert getattr(lseg, name) is not None
    assert [n for n in lseg.__all__ if not re.search(rf"(`|\blseg\.){n}\b", docs)] == []
