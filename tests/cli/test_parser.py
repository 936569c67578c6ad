"""The parser conventions (:mod:`lseg.cli.parser`): one-line usage errors, defaults in the help."""

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


def test_plain_doc():
    assert plain_doc("Use ``lseg x`` and :class:`~a.B`.\n\nExamples::\n") == "Use lseg x and a.B.\n\nExamples:\n"


def _parsers(parser, prog=()):
    """Every command's parser of ``lseg``, with its words (``("weights", "download")``)."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prog, name), sub
                yield from _parsers(sub, (*prog, name))


def test_every_option_shows_its_help_and_default_once():
    """No "(default ...)" twice in an option's help, no choices repeated in the usage
    (``--compile {off,on,off,on}``), no "(default: )" for an empty default."""
    import re

    from lseg.cli import build_parser

    seen = set()
    for words, sub in _parsers(build_parser()):
        text = sub.format_help()
        seen.add(words)
        options = re.split(r"\n  (?=-)", text.split("\noptions:\n", 1)[1])
        for entry in options:
            entry = " ".join(entry.split())
            assert len(re.findall(r"\bdefault\b", entry)) <= 1, (words, entry)
            assert "(default: )" not in entry and "(default: [])" not in entry, (words, entry)
        for choices in re.findall(r"\{([^}]*)\}", text.split("\n\n", 1)[0]):
            items = choices.split(",")
            assert len(items) == len(set(items)), (words, choices)
    assert {("segment",), ("features",), ("query",), ("store", "reduce"), ("store", "export"), ("eval",), ("bench",),
            ("train",), ("demo",), ("export", "onnx"), ("weights", "download")} <= seen


def test_no_help_imports_torch():
    """``lseg --help`` and every ``lseg <command> --help`` start in a fraction of a second: their
    options come from torch-free modules (a command imports its heavy modules when it runs)."""
    import subprocess
    import sys

    code = (
        "import argparse, sys, lseg.cli\n"
        "def walk(p):\n"
        "    for a in p._actions:\n"
        "        if isinstance(a, argparse._SubParsersAction):\n"
        "            for sub in a.choices.values():\n"
        "                yield sub\n"
        "                yield from walk(sub)\n"
        "root = lseg.cli.build_parser()\n"
        "n = sum(len(p.format_help()) > 0 for p in [root, *walk(root)])\n"
        "print(n, sorted(m for m in ('torch', 'lightning', 'gradio', 'onnx', 'lseg.eval.evaluate', 'lseg.data')"
        " if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    count, _, loaded = run.stdout.strip().partition(" ")
    assert run.returncode == 0 and int(count) >= 15 and loaded == "[]", run.stdout + run.stderr
