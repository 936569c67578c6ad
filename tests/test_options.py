"""Typed dataclass configs on the command line (:mod:`lseg.options`): values, types, generated options."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from lseg.cli import main
from lseg.errors import ConfigError
from lseg.options import (
    OptionError,
    add_options,
    add_override_options,
    check_options,
    coerce_value,
    field_defaults,
    field_types,
    option,
    options_from_args,
    overrides_from_args,
    parse_value,
    type_name,
)


@dataclass(frozen=True)
class Settings:
    name: str = "x"
    size: int | None = 480
    rate: float = 0.5
    mode: Literal["fast", "slow"] = "fast"
    scales: tuple[float, ...] = (1.0,)
    pair: tuple[float, float] = (0.5, 2.0)
    verbose: bool = False
    flip: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def test_values_parse_with_yaml_rules():
    assert parse_value("4") == 4 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("1e-4") == "1e-4" and coerce_value(parse_value("1e-4"), float) == 1e-4  # YAML 1.1
    assert parse_value("{aug: true}") == {"aug": True} and parse_value("[0.5, 2]") == [0.5, 2]
    assert parse_value("a: b: c") == "a: b: c"  # not YAML: the text itself


def test_coerce_value_checks_and_converts():
    assert coerce_value("4", int) == 4 and coerce_value(4.0, int) == 4 and coerce_value("on", bool) is True
    assert coerce_value("null", int | None) is None and coerce_value("0.5,2", tuple[float, float]) == (0.5, 2.0)
    assert coerce_value("1,2,3", tuple[float, ...]) == (1.0, 2.0, 3.0)
    assert coerce_value("{a: 1}", dict[str, Any]) == {"a": 1}
    with pytest.raises(ConfigError, match="size must be an integer, got True"):
        coerce_value(True, int, "size")
    with pytest.raises(ConfigError, match="mode must be one of 'fast', 'slow'"):
        coerce_value("medium", Literal["fast", "slow"], "mode")
    with pytest.raises(ConfigError, match="list of 2 values"):
        coerce_value("1,2,3", tuple[float, float], "pair")


def test_field_types_defaults_and_type_names():
    types = field_types(Settings)
    assert list(types) == [f for f in Settings.__dataclass_fields__]
    assert field_defaults(Settings)["extra"] == {} and field_defaults(Settings)["size"] == 480
    assert type_name(types["size"]) == "int|null" and type_name(types["mode"]) == "{fast,slow}"
    assert type_name(types["pair"]) == "float,float" and type_name(types["extra"]) == "YAML mapping"



def test_override_options_keep_only_what_was_given():
    p = argparse.ArgumentParser()
    add_override_options(p, Settings, aliases={"n": "name"})
    assert overrides_from_args(p.parse_args([])) == {}
    given = overrides_from_args(p.parse_args(["--n", "z", "--size", "null", "--verbose", "--pair", "[1, 2]"]))
    assert given == {"name": "z", "size": None, "verbose": True, "pair": [1, 2]}
    text = " ".join(p.format_help().split())
    assert "--pair PAIR (float,float, default [0.5, 2.0])" in text and "--verbose [BOOL]" in text


def test_override_options_take_their_help_from_the_class_docstring(capsys):
    """``lseg train --help`` describes every TrainConfig field (first sentence of its docstring
    entry, grouped names and continuation lines included), then its type and default."""
    from lseg.options import field_docs
    from lseg.train.config import TrainConfig

    docs = field_docs(TrainConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert docs["crop_size"] == docs["base_size"] and docs["max_steps"] == docs["epochs"]
    assert docs["stop_after_steps"].startswith("end this invocation after this many optimizer steps of its own")
    assert "``" not in "".join(docs.values()) and ":func:" not in "".join(docs.values())
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--stop-after-steps STOP_AFTER_STEPS end this invocation after this many" in text
    assert "(int|null, default None)" in text


# ---------------------------------------------------------------------- one declaration per option

def _even_not_13(value: int) -> int:
    """A ``check=``: refuses 13, rounds up to even (the value it returns is the field's)."""
    if value == 13:
        raise OptionError("`count` must not be 13")
    return value + value % 2


@dataclass(frozen=True)
class Inner:
    """A nested group.

    Attributes:
        depth: how deep.
    """

    depth: int | None = option(None, min=1)

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class Declared:
    """A command's options, declared once.

    Attributes:
        source: where from.
        names: one or more names.
        size: long side (0 on the command line: native).
        rate: a fraction.
        templates: prompt templates.
        verify: check afterwards.
        count: how many.
        internal: a Python-only field.
        inner: a nested group.
    """

    source: str = option(positional=True)
    names: tuple[str, ...] = option(positional=True, nargs="+", metavar="NAME")
    size: int | None = option(480, min=1, parse=lambda v: v or None)
    rate: float = option(0.5, gt=0, max=1)
    templates: tuple[str, ...] = option((), flag="template", metavar="T", repeat=True)
    verify: bool = option(True, flag="no-verify", help="skip the check")
    count: int = option(2, short="-n", check=_even_not_13)
    internal: int = option(0, cli=False)
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        check_options(self)


def test_declared_options_make_the_command_line_and_check_alike():
    from lseg.cli.parser import HelpFormatter

    p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter, exit_on_error=False)
    add_options(p, Declared)
    text = " ".join(p.format_help().split())
    assert "usage: x [-h] [--size SIZE] [--rate RATE] [--template T] [--no-verify] [--count COUNT] [--depth DEPTH] " \
        "SOURCE NAME [NAME ...]" in text
    assert "SOURCE where from NAME one or more names" in text
    assert "--size SIZE long side (0 on the command line: native) (default: 480)" in text
    assert "--no-verify skip the check --count COUNT, -n COUNT how many (default: 2) --depth DEPTH how deep" in text
    assert "--internal" not in text
    args = p.parse_args(["s", "a", "b", "--size", "0", "--template", "a {}", "--template", "{}!", "--no-verify",
                         "-n", "3", "--depth", "2"])
    got = options_from_args(Declared, args, internal=7)
    assert (got.source, got.names, got.size, got.templates, got.verify, got.count, got.internal, got.inner.depth) == \
        ("s", ("a", "b"), None, ("a {}", "{}!"), False, 4, 7, 2)  # count: the check's normalised value
    assert options_from_args(Declared, p.parse_args(["s", "a"])) == Declared("s", ("a",))
    # A bad value names the option on the command line, the field in Python.
    for extra, message in ((["--rate", "1.5"], "--rate must be in (0, 1], got 1.5"),
                           (["--rate", "0"], "--rate must be in (0, 1], got 0"),
                           (["--size", "-1"], "--size must be at least 1, got -1"),
                           (["-n", "13"], "--count must not be 13"),
                           (["--depth", "0"], "--depth must be at least 1, got 0")):
        with pytest.raises(ConfigError) as e:
            options_from_args(Declared, p.parse_args(["s", "a", *extra]))
        assert str(e.value) == message
    with pytest.raises(ConfigError, match=r"^rate must be in \(0, 1\], got 2$"):
        Declared("s", ("a",), rate=2.0)
    normalised = Declared("s", ["a"], count="5")  # type: ignore[arg-type]
    assert normalised.names == ("a",) and normalised.count == 6


def test_an_empty_value_on_the_command_line_is_refused_not_the_current_folder():
    """`lseg segment "$IN" -o "$OUT" -c "$CKPT"` with unset variables: Path("") is ".", and an empty
    checkpoint read as none took the default weights."""
    p = argparse.ArgumentParser(prog="x", exit_on_error=False)
    add_options(p, Declared)
    for argv, message in ((["", "a"], "SOURCE is empty ('')"), (["s", "a", ""], "NAME is empty ('')"),
                          (["s", "a", "--template", ""], "--template is empty ('')")):
        with pytest.raises(ConfigError) as e:
            options_from_args(Declared, p.parse_args(argv))
        assert str(e.value) == message
    assert main(["segment", "a.png", "-l", "a, b", "-c", ""]) == 2


@dataclass(frozen=True)
class Choices:
    """Choices, three-state switches, comma lists and exclusive groups.

    Attributes:
        mode: how.
        level: 1 or 2.
        flip: mirror too.
        scales: comma-separated factors.
        checkpoint: a file.
        random: a random one.
    """

    mode: Literal["fast", "slow"] = "fast"
    level: Literal[1, 2] | None = None
    flip: bool | None = None
    scales: tuple[float, ...] = option((1.0,), gt=0)
    checkpoint: str | None = option(None, short="-c", exclusive="model", required=True)
    random: str | None = option(None, metavar="MODEL", exclusive="model", required=True)

    def __post_init__(self) -> None:
        check_options(self)


def test_choices_switches_lists_and_exclusive_groups():
    p = argparse.ArgumentParser(prog="x", exit_on_error=False)
    add_options(p, Choices)
    usage = " ".join(p.format_usage().split())
    assert usage == ("usage: x [-h] [--mode {fast,slow}] [--level {1,2}] [--flip | --no-flip] [--scales SCALES] "
                     "(--checkpoint CHECKPOINT | --random MODEL)")
    args = p.parse_args(["--mode", "slow", "--level", "2", "--no-flip", "--scales", "0.5,2", "-c", "f"])
    assert options_from_args(Choices, args) == Choices("slow", 2, False, (0.5, 2.0), "f", None)
    assert options_from_args(Choices, p.parse_args(["--random", "m"])).flip is None
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        p.parse_args(["--level", "3", "-c", "f"])
    with pytest.raises(argparse.ArgumentError, match="not allowed with argument"):
        p.parse_args(["-c", "f", "--random", "m"])
    with pytest.raises(SystemExit):  # one of --checkpoint / --random is required
        p.parse_args([])
    with pytest.raises(ConfigError, match="^--scales must be a number"):
        options_from_args(Choices, p.parse_args(["--scales", "a,b", "-c", "f"]))
    with pytest.raises(ConfigError, match="^--scales must be positive, got -1"):
        options_from_args(Choices, p.parse_args(["--scales", "1,-1", "-c", "f"]))
    with pytest.raises(ConfigError, match="^--scales must be a finite number, got inf$"):  # no traceback later
        options_from_args(Choices, p.parse_args(["--scales", "1,inf", "-c", "f"]))
    with pytest.raises(ConfigError, match="^mode must be one of 'fast', 'slow', got 'medium'"):
        Choices(mode="medium")  # type: ignore[arg-type]


def test_paths_and_one_string_for_a_list_of_strings():
    from pathlib import Path

    import lseg
    from lseg.inference.options import PredictorOptions

    assert lseg.SegmentOptions(out=Path("seg")).out == "seg"  # a path-like for a str option
    with pytest.raises(ConfigError, match=r"not one string; use \['a photo of a \{\}, in the wild'\]"):
        PredictorOptions(templates="a photo of a {}, in the wild")  # never split at the comma
    assert PredictorOptions(templates=["a {}.", "the {}"]).templates == ("a {}.", "the {}")
