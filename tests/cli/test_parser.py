"""The parser conventions (:mod:`lseg.cli.parser`): one-line usage errors, defaults in the help, options built on first use."""

from __future__ import annotations

import pytest

from lseg.cli.parser import Parser, plain_doc


def test_usage_errors_are_one_line(capsys):
    p = Parser(prog="lseg")
    p.add_argument("--size", type=int, default=480, help="long side")
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--size", "x"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: argument --size: invalid int value: 'x' (see `lseg --help`)\n"
    assert "long side (default: 480)" in p.format_help()


def test_options_are_built_on_first_use_then_the_later_additions():
    calls = []

    def populate(p: Parser) -> None:
        calls.append("populate")
        p.add_argument("--x", type=int, default=1)

    root = Parser(prog="lseg")
    sub = root.add_subparsers(dest="command")
    lazy = sub.add_parser("cmd", populate=populate)
    lazy.when_populated(lambda p: calls.append("after") or p.add_argument("--y", action="store_true"))
    assert calls == []  # building the parser imports nothing the options need
    args = root.parse_args(["cmd", "--x", "3", "--y"])
    assert (args.x, args.y) == (3, True) and calls == ["populate", "after"]
    assert "--x" in lazy.format_help() and calls == ["populate", "after"]  # once
    eager = sub.add_parser("other")
    eager.when_populated(lambda p: calls.append("now"))
    assert calls[-1] == "now"


def test_plain_doc():
    assert plain_doc("Use ``lseg x`` and :class:`~a.B`.\n\nExamples::\n") == "Use lseg x and a.B.\n\nExamples:\n"
