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


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: you "
                                                                "tried to allocate 204800000000 bytes.")])
def test_out_of_memory_is_one_line(monkeypatch, capsys, error):
    import lseg.cli.models

    def exhausted(args):
        raise error

    monkeypatch.setattr(lseg.cli.models, "_cmd_weights", exhausted)  # bound when the parser is built
    assert main(["weights", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory (") and err.count("\n") == 1
