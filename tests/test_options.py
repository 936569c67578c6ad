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
    Flag,
    OptionError,
    add_config_args,
    add_options,
    check_options,
    coerce_value,
    config_from_args,
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


FLAGS = {
    "name": Flag("a name", aliases=("-n",)),
    "size": Flag("long side (0: native)", convert=lambda v: v or None),
    "rate": Flag("a rate"),
    "mode": Flag("how"),
    "scales": Flag("comma-separated factors", name="scale"),
    "verbose": Flag("say more"),
    "flip": Flag("mirror too"),
}


def _parser(flags: dict[str, Flag] = FLAGS) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_config_args(p, Settings, flags)
    return p


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


def test_typed_options_follow_the_annotations():
    p = _parser()
    args = p.parse_args([])
    assert (args.name, args.size, args.rate, args.mode, args.verbose, args.flip) == ("x", 480, 0.5, "fast", False, None)
    assert config_from_args(Settings, args, FLAGS) == Settings()
    args = p.parse_args(["-n", "y", "--size", "0", "--rate", "0.25", "--mode", "slow", "--scale", "1,2",
                         "--verbose", "--no-flip"])
    cfg = config_from_args(Settings, args, FLAGS, {"pair": (1.0, 1.0), "rate": 0.75})
    assert cfg == Settings(name="y", size=None, rate=0.75, mode="slow", scales=(1.0, 2.0), pair=(1.0, 1.0),
                           verbose=True, flip=False)
    with pytest.raises(argparse.ArgumentError, match="invalid int value"):
        p.parse_args(["--size", "abc"])
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        p.parse_args(["--mode", "medium"])
    with pytest.raises(ConfigError, match="--scale must be a number"):
        config_from_args(Settings, p.parse_args(["--scale", "a,b"]), FLAGS)


def test_help_keeps_the_given_text_and_shows_defaults():
    from lseg.cli.parser import HelpFormatter

    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_config_args(p, Settings, {**FLAGS, "name": Flag("a name", required=True),
                                  "scales": Flag("factors (default: all)", default=None)})
    text = " ".join(p.format_help().split())
    assert "--size SIZE long side (0: native) (default: 480)" in text
    assert "--name NAME a name" in text and "(default: x)" not in text  # required: no default shown
    assert "--scales SCALES factors (default: all) --verbose" in text and "--flip, --no-flip mirror too" in text


def test_repeated_options_collect_a_list():
    flags = {"scales": Flag("one factor", name="scale", repeat=True, convert=lambda v: tuple(map(float, v or ())))}
    p = _parser(flags)
    assert p.parse_args([]).scale is None
    assert config_from_args(Settings, p.parse_args(["--scale", "1", "--scale", "2"]), flags).scales == (1.0, 2.0)


def test_override_options_keep_only_what_was_given():
    p = argparse.ArgumentParser()
    add_config_args(p, Settings, overrides=True, aliases={"n": "name"})
    assert overrides_from_args(p.parse_args([])) == {}
    given = overrides_from_args(p.parse_args(["--n", "z", "--size", "null", "--verbose", "--pair", "[1, 2]"]))
    assert given == {"name": "z", "size": None, "verbose": True, "pair": [1, 2]}
    text = " ".join(p.format_help().split())
    assert "--pair PAIR (float,float, default [0.5, 2.0])" in text and "--verbose [BOOL]" in text


@dataclass(frozen=True)
class Run:
    fps: float | None = None
    every_n: int | None = None
    size: tuple[int, ...] = (480,)
    verify: bool = True


RUN_FLAGS = {
    "fps": Flag("frames per second", exclusive="frames"),
    "every_n": Flag("every n-th frame", exclusive="frames"),
    "size": Flag("S or H W", nargs="+", metavar="N"),
    "verify": Flag("do not verify", name="no-verify"),
}


def test_exclusive_groups_several_values_and_off_switches():
    p = argparse.ArgumentParser(exit_on_error=False)
    add_config_args(p, Run, RUN_FLAGS)
    assert config_from_args(Run, p.parse_args([]), RUN_FLAGS) == Run()
    args = p.parse_args(["--every-n", "2", "--size", "64", "96", "--no-verify"])
    assert config_from_args(Run, args, RUN_FLAGS) == Run(every_n=2, size=(64, 96), verify=False)
    with pytest.raises(argparse.ArgumentError, match="not allowed with argument"):
        p.parse_args(["--fps", "1", "--every-n", "2"])


@dataclass(frozen=True)
class Job:
    source: str
    names: tuple[str, ...]
    k: int
    level: Literal[1, 2] | None = None
    checkpoint: str | None = None
    random: str | None = None


JOB_FLAGS = {
    "source": Flag("where from", positional=True),
    "k": Flag("", positional=True),
    "names": Flag("names, or all", positional=True, nargs="+", metavar="NAME"),
    "level": Flag("1 or 2"),
    "checkpoint": Flag("a file", aliases=("-c",), exclusive="model", required=True),
    "random": Flag("a random one", metavar="MODEL", exclusive="model", required=True),
}


def test_positionals_numeric_choices_and_required_exclusive_groups():
    p = argparse.ArgumentParser(prog="x", exit_on_error=False)
    add_config_args(p, Job, JOB_FLAGS)
    args = p.parse_args(["s", "3", "a", "b", "--level", "2", "-c", "f"])
    assert (args.source, args.k, args.names, args.level) == ("s", 3, ["a", "b"], 2)
    assert config_from_args(Job, args, JOB_FLAGS) == Job("s", ("a", "b"), 3, 2, "f", None)
    usage = " ".join(p.format_usage().split())
    assert usage == "usage: x [-h] [--level {1,2}] (--checkpoint CHECKPOINT | --random MODEL) source k NAME [NAME ...]"
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        p.parse_args(["s", "3", "a", "--level", "3", "-c", "f"])
    with pytest.raises(argparse.ArgumentError, match="not allowed with argument"):
        p.parse_args(["s", "3", "a", "-c", "f", "--random", "m"])
    with pytest.raises(SystemExit):  # one of --checkpoint / --random is required
        p.parse_args(["s", "3", "a"])
    with pytest.raises(argparse.ArgumentError, match="invalid int value"):  # k is a number
        p.parse_args(["s", "x", "a", "-c", "f"])


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
