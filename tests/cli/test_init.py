"""``lseg`` itself: ``main`` and the command list (``--help``)."""

from __future__ import annotations

import pytest

from lseg.cli import main


def test_random_weights_and_help(photos, tmp_path, capsys):
    assert main(["segment", str(photos / "b.png"), "-l", "a,b", "--random-weights", "lseg_tiny_test",
                 "-o", str(tmp_path / "o"), "-q"]) == 0
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "segment" in capsys.readouterr().out
