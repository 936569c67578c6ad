"""Options, declared once (docs/development.md): a frozen dataclass field is the option's name, type and
default, its ``Attributes:`` entry in the class docstring the help, :func:`option` metadata its range
and command-line shape. Imports pyyaml only when a YAML value is parsed."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from lseg.errors import ConfigError

__all__ = [
    "CheckedOptions", "OptionError", "Precision", "add_options", "add_override_options", "check_compile", "check_options", "coerce_value", "field_defaults",
    "field_docs", "field_types", "option", "options_from_args", "overrides_from_args", "parse_value", "type_name",
]

#: The image path's precision, one type for every option that takes it (:mod:`lseg.models.precision`).
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]


def check_compile(compile: bool, precisions: tuple[str, ...]) -> None:
    """Refuse ``compile`` with ``int8`` (prepacked oneDNN kernels, which ``torch.compile`` cannot freeze)."""
    if compile and "int8" in precisions:
        raise OptionError("`compile` does not apply to precision int8 (its layers are prepacked kernels)")

_NONE_STRINGS = {"none", "null", "~", ""}

#: Namespace prefix of the override options (``--batch-size`` -> ``field_batch_size``): raw text, kept
#: apart from the options a command reads by name.
_OVERRIDE_PREFIX = "field_"


def parse_value(text: str) -> Any:
    """A command-line value by YAML rules (``4``, ``true``, ``[0.5, 2.0]``, ``{aug: true}``); else the text."""
    import yaml  # the `train` extra; only commands that take YAML values get here

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce_value(value: Any, tp: Any, name: str = "value") -> Any:
    """``value`` checked / converted to the annotated type ``tp``, or :class:`ConfigError`; text is accepted
    for numbers, booleans, ``None`` (``"null"``) and tuples (``"0.5,2.0"``)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        none_like = value is None or (isinstance(value, str) and value.strip().lower() in _NONE_STRINGS)
        if none_like and type(None) in args:
            return None
        errors = []
        for arg in [a for a in args if a is not type(None)]:
            try:
                return coerce_value(value, arg, name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])  # the first member's message
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.strip().lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return tp(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and (
                tp is float or isinstance(value, int) or value.is_integer()):
            return tp(value)
        raise ConfigError(f"{name} must be {'an integer' if tp is int else 'a number'}, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float, os.PathLike)) and not isinstance(value, bool):
            return os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if origin is tuple:
        if isinstance(value, str) and args[0] is str:  # free text (templates, paths) may hold commas
            raise ConfigError(f"{name} must be a list of strings, not one string; use [{value!r}]")
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        variadic = len(args) == 2 and args[1] is Ellipsis
        if not isinstance(value, (list, tuple)) or not variadic and len(value) != len(args):
            what = f"list of {args[0].__name__} values" if variadic else f"list of {len(args)} values"
            raise ConfigError(f"{name} must be a {what}, got {value!r}")
        return tuple(coerce_value(v, args[0] if variadic else a, name) for v, a in zip(value, args * len(value)))
    if origin is dict:
        if isinstance(value, str):
            value = parse_value(value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    raise ConfigError(f"{name}: unsupported config type {tp!r}")  # pragma: no cover - config bug


@typing.no_type_check
def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's field name -> resolved type annotation."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def field_defaults(cls: type) -> dict[str, Any]:
    """A dataclass's field name -> default value."""
    missing = dataclasses.MISSING
    return {f.name: f.default if f.default is not missing else f.default_factory()
            for f in dataclasses.fields(cls) if f.default is not missing or f.default_factory is not missing}


def field_docs(cls: type) -> dict[str, str]:
    """A dataclass's field name -> the first sentence of its docstring entry (``name: text``, ``a, b: text``
    or ``a / b: text``, continuation lines indented deeper), reST markup removed."""
    names = {f.name for f in dataclasses.fields(cls)}
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        indent = len(line) - len(line.lstrip())
        m = re.fullmatch(r" {4}([\w ,/]+): (.*)", line)
        keys = [n.strip() for n in re.split(r"[,/]", m.group(1))] if m else []
        if m and set(keys) <= names:
            current = [m.group(2)]
            entries.update(dict.fromkeys(keys, current))
        elif current is not None and indent > 4 and line.strip():
            current.append(line.strip())
        else:
            current = None
    docs = {}
    for name, parts in entries.items():
        text = re.sub(r":\w+:`~?([^`]+)`", r"\1", " ".join(parts)).replace("``", "").replace("**", "")
        docs[name] = re.split(r"(?<=[a-z0-9)])\. (?=[A-Z`(])", text, maxsplit=1)[0].rstrip(".")
    return docs


def type_name(tp: Any) -> str:
    """A short readable name of an annotation: ``{sgd,adam}``, ``int|null``, ``float,float``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if args and type(None) in args:
        return "|".join(type_name(a) for a in args if a is not type(None)) + "|null"
    if origin is tuple:
        return ",".join(type_name(a) for a in args if a is not Ellipsis) + (",..." if Ellipsis in args else "")
    if origin is dict:
        return "YAML mapping"
    return getattr(tp, "__name__", str(tp))


def add_override_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                         aliases: Mapping[str, str] | None = None) -> None:
    """Every field of ``cls`` as ``--field-name VALUE`` (raw text, absent unless given; ``aliases``: more
    names, ``{"lr": "base_lr"}``), read back by :func:`overrides_from_args`."""
    hints, defaults, docs = field_types(cls), field_defaults(cls), field_docs(cls)
    for name, tp in hints.items():
        options = ["--" + name.replace("_", "-")]
        options += ["--" + a for a, target in (aliases or {}).items() if target == name]
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if tp is bool else {}
        default = defaults[name]
        shown = list(default) if isinstance(default, tuple) else default  # as in YAML: [0.5, 2.0]
        text = (f"{docs[name]} " if name in docs else "") + f"({type_name(tp)}, default {shown!r})"
        parser.add_argument(*options, dest=_OVERRIDE_PREFIX + name, default=argparse.SUPPRESS,
                            metavar="BOOL" if tp is bool else name.upper(), help=text.replace("%", "%%"), **extra)


def _non_none(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The override options given: field -> value, parsed with YAML rules."""
    return {
        key[len(_OVERRIDE_PREFIX):]: parse_value(value) if isinstance(value, str) else value
        for key, value in vars(args).items() if key.startswith(_OVERRIDE_PREFIX)
    }


_META = "lseg_option"


@dataclasses.dataclass(frozen=True)
class Option:
    """What :func:`option` adds to a field's type and default.

    Attributes:
        flag: the option's name when it is not the field's (``template`` for ``templates``).
        repeat: the option may be given several times (``--template A --template B``).
        min, max: inclusive bounds of a number (of each number of a tuple); gt: exclusive lower bound.
        parse: command-line text -> value, where the type alone cannot say (``0`` -> ``None``).
        check: value -> normalised value, or :class:`ConfigError`; for the Python API and command line alike.
        exclusive, required: options with the same ``exclusive`` name form one mutually exclusive
            group; ``required``: the option (or one of its group) must be given.
        help: the help when the class docstring has no entry for the field.
        cli: ``False``: a Python-only field, no command-line option."""

    flag: str | None = None
    short: str | None = None
    metavar: str | None = None
    positional: bool = False
    nargs: str | None = None
    repeat: bool = False
    min: float | None = None
    max: float | None = None
    gt: float | None = None
    parse: Callable[[Any], Any] | None = None
    check: Callable[[Any], Any] | None = None
    exclusive: str | None = None
    required: bool = False
    help: str | None = None
    cli: bool = True


def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           **settings: Any) -> Any:
    """A dataclass field (as :func:`dataclasses.field`) with :class:`Option` ``settings``."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_META: Option(**settings)})


def _meta(f: dataclasses.Field) -> Option:
    return f.metadata.get(_META) or Option()


class OptionError(ConfigError):
    """A bad option value, field names marked in backticks (```stride` must be ...``): ``str()`` shows
    the field name, :meth:`named` the command line's ``--stride``."""

    def __init__(self, marked: str) -> None:
        self.marked = marked
        super().__init__(re.sub(r"`(\w+)`", r"\1", marked))

    def named(self, names: Mapping[str, str]) -> str:
        return re.sub(r"`(\w+)`", lambda m: names.get(m.group(1), m.group(1)), self.marked)


def _bounds(name: str, value: Any, opt: Option) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if not math.isfinite(value) and (opt.min, opt.gt, opt.max) != (None, None, None):
        raise OptionError(f"`{name}` must be a finite number, got {value}")
    low_ok = (opt.min is None or value >= opt.min) and (opt.gt is None or value > opt.gt)
    if low_ok and (opt.max is None or value <= opt.max):
        return
    if opt.min is not None and opt.max is not None:
        what = f"in [{opt.min:g}, {opt.max:g}]"
    elif opt.gt is not None and opt.max is not None:
        what = f"in ({opt.gt:g}, {opt.max:g}]"
    elif opt.gt is not None:
        what = "positive" if opt.gt == 0 else f"above {opt.gt:g}"
    elif opt.min is not None:
        what = f"at least {opt.min:g}"
    else:
        what = f"at most {opt.max:g}"
    raise OptionError(f"`{name}` must be {what}, got {value:g}")


def check_options(obj: Any) -> None:
    """Check and normalise (``"4"`` -> 4, a list -> a tuple) every field of the dataclass ``obj`` against
    its type and :func:`option` settings."""
    hints = field_types(type(obj))
    for f in dataclasses.fields(obj):
        tp, opt, value = hints[f.name], _meta(f), getattr(obj, f.name)
        if dataclasses.is_dataclass(_non_none(tp)) or value is None and type(None) in typing.get_args(tp):
            continue
        try:
            new = coerce_value(value, tp, f"`{f.name}`")
        except ConfigError as e:
            raise OptionError(str(e)) from None
        for v in new if isinstance(new, tuple) else (new,):
            _bounds(f.name, v, opt)
        if opt.check is not None:
            new = opt.check(new)
        if new is not value:
            object.__setattr__(obj, f.name, new)


class CheckedOptions:
    """Base of an option dataclass whose fields :func:`check_options` checks on construction."""

    def __post_init__(self) -> None:
        check_options(self)


def _cli_name(f: dataclasses.Field, opt: Option) -> str:
    """``--crop-size``, or a positional's ``STORE``."""
    return (opt.metavar or f.name).upper() if opt.positional else "--" + (opt.flag or f.name).replace("_", "-")


def _flag_names(cls: type) -> dict[str, str]:
    """Field name -> :func:`_cli_name`, nested dataclasses' fields too."""
    names: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        tp = _non_none(field_types(cls)[f.name])
        if dataclasses.is_dataclass(tp):
            names.update(_flag_names(tp))
        else:
            names[f.name] = _cli_name(f, _meta(f))
    return names


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                skip: tuple[str, ...] = ()) -> None:
    """One ``argparse`` option (or positional) per field of the dataclass ``cls`` (nested dataclasses'
    fields too) but those named in ``skip`` (a command they do not apply to: their default)."""
    hints, defaults, docs = field_types(cls), field_defaults(cls), field_docs(cls)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in dataclasses.fields(cls):
        opt, base = _meta(f), _non_none(hints[f.name])
        if not opt.cli or f.name in skip:
            continue
        if dataclasses.is_dataclass(base):
            add_options(parser, base)
            continue
        text = opt.help or docs.get(f.name, "")
        kwargs: dict[str, Any] = {"help": text.replace("%", "%%"), "dest": f.name}  # argparse formats %
        default = defaults.get(f.name)
        if opt.positional:
            names = [f.name]
            kwargs.pop("dest")
            kwargs["metavar"] = _cli_name(f, opt)
            if opt.nargs:
                kwargs["nargs"] = opt.nargs
        else:
            names = [_cli_name(f, opt), *([opt.short] if opt.short else [])]
            kwargs["default"] = None if opt.required else default
            if opt.metavar:
                kwargs["metavar"] = opt.metavar
            if opt.required and not opt.exclusive:
                kwargs["required"] = True
        if opt.repeat:
            kwargs.update(action="append", default=None)
        elif base is bool and not opt.positional:
            kwargs["action"] = (argparse.BooleanOptionalAction if default is None
                                else "store_false" if default else "store_true")
        elif opt.nargs and typing.get_origin(base) is tuple:
            kwargs.update(nargs=opt.nargs, type=typing.get_args(base)[0])
        elif typing.get_origin(base) is Literal and opt.parse is None:
            kwargs["choices"] = typing.get_args(base)
            kinds = {type(c) for c in kwargs["choices"]}
            if len(kinds) == 1 and kinds <= {int, float}:
                kwargs["type"] = kinds.pop()
        elif base in (int, float):
            kwargs["type"] = base  # argparse's own one-line message for a bad number
        if opt.exclusive and opt.exclusive not in groups:
            groups[opt.exclusive] = parser.add_mutually_exclusive_group(required=opt.required)
        (groups[opt.exclusive] if opt.exclusive else parser).add_argument(*names, **kwargs)


def options_from_args(cls: type, args: argparse.Namespace, **computed: Any) -> Any:
    """The dataclass ``cls`` from the options :func:`add_options` made, ``computed`` fields winning; a bad
    value is a :class:`ConfigError` naming the option."""
    hints = field_types(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        opt, base = _meta(f), _non_none(hints[f.name])
        if f.name in computed:
            kwargs[f.name] = computed[f.name]
        elif dataclasses.is_dataclass(base) and opt.cli:
            kwargs[f.name] = options_from_args(base, args)
        elif opt.cli and hasattr(args, f.name):
            value = getattr(args, f.name)
            if value == "" or isinstance(value, list) and "" in value:  # `-o "$UNSET"`: not the current folder
                raise ConfigError(f"{_cli_name(f, opt)} is empty ('')")
            if value is not None and opt.parse is not None:
                value = opt.parse(value)
            if value is None and type(None) not in typing.get_args(hints[f.name]):
                continue  # absent: the field's default
            kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except OptionError as e:
        raise ConfigError(e.named(_flag_names(cls))) from None
