"""Typed dataclass configs on the command line: one mechanism for every ``lseg`` command.

A frozen dataclass declares a command's settings (names, types, defaults); :func:`add_config_args`
turns its fields into ``argparse`` options and :func:`config_from_args` builds the dataclass back
from the parsed namespace. What the command line adds to a field (help text, option name, short
alias, how a text such as ``all`` or ``0.5,1`` becomes the field's value) is one :class:`Flag` per
field, kept next to the command that shows it.

Two kinds of options:

* typed options (``lseg eval``, ``segment``...): the option's type, choices and default come from the
  field's annotation and default (``Literal`` -> choices, ``bool`` -> a switch, ``X | None`` -> ``X``);
* override options (``lseg train``, ``overrides=True``): every field is a ``--name VALUE`` option
  that is absent from the namespace unless given, its text parsed with YAML rules, because a recipe
  or config file sits between the field's default and the command line (:func:`overrides_from_args`).

This module is low in the package: it imports no other lseg module but :mod:`lseg.errors`, and
pyyaml (the ``train`` extra) only when a YAML value is parsed.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from lseg.errors import ConfigError

__all__ = [
    "FIELD_DEFAULT",
    "Flag",
    "add_config_args",
    "coerce_value",
    "config_from_args",
    "field_defaults",
    "field_types",
    "overrides_from_args",
    "parse_value",
    "type_name",
]

_NONE_STRINGS = {"none", "null", "~", ""}

#: Namespace prefix of the override options (``--batch-size`` -> ``field_batch_size``): they must not
#: meet the options a command checks by name (``validate_args``), since their values are raw text.
_OVERRIDE_PREFIX = "field_"


# ---------------------------------------------------------------------- values

def parse_value(text: str) -> Any:
    """Parse a command-line value with YAML rules (``4`` -> int, ``0.5`` -> float, ``true``,
    ``[0.5, 2.0]``, ``{aug: true}``); anything else stays a string (YAML 1.1: ``1e-4`` too, which
    :func:`coerce_value` reads as a number for a ``float`` field). Needs pyyaml."""
    import yaml  # the `train` extra; only commands that take YAML values get here

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce_value(value: Any, tp: Any, name: str = "value") -> Any:
    """Check / convert ``value`` to the annotated type ``tp`` (the subset of types the configs use).

    Strings are accepted for numbers and booleans (``"4"``, ``"true"``), ``"none"``/``"null"`` for
    optional fields, ``"0.5,2.0"`` or a list for tuples (``tuple[float, float]`` or
    ``tuple[float, ...]``). Raises :class:`ConfigError` otherwise.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        none_like = value is None or (isinstance(value, str) and value.strip().lower() in _NONE_STRINGS)
        if none_like and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce_value(value, arg, name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
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
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if origin is tuple:
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
    """A dataclass's field name -> resolved type annotation, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def field_defaults(cls: type) -> dict[str, Any]:
    """A dataclass's field name -> default value (``default_factory`` called)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def field_docs(cls: type) -> dict[str, str]:
    """A dataclass's field name -> the first sentence of its entry in the class docstring (Google
    style: ``name: text`` or ``a, b: text`` / ``a / b: text`` under a section header, continuation
    lines indented deeper), RST literals unquoted. Fields without an entry are absent."""
    names = {f.name for f in dataclasses.fields(cls)}
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        indent = len(line) - len(line.lstrip())
        m = re.fullmatch(r" {4}([\w ,/]+): (.*)", line)
        if m and all(n.strip() in names for n in re.split(r"[,/]", m.group(1))):
            current = [m.group(2)]
            for n in re.split(r"[,/]", m.group(1)):
                entries[n.strip()] = current
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


# ---------------------------------------------------------------------- options

class _FieldDefault:
    def __repr__(self) -> str:
        return "FIELD_DEFAULT"


#: :attr:`Flag.default` when the option's default is the field's.
FIELD_DEFAULT: Any = _FieldDefault()


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one config field shows on the command line; its type and default come from the field.

    Attributes:
        help: the option's help text (typed options show the default after it, see ``HelpFormatter``).
        name: the option's name when it is not the field's (``fold`` for the field ``folds``).
        aliases: more option strings (``("-d",)``).
        metavar: the value's name in the help.
        default: what the namespace holds when the option is absent, when that is not the field's
            default: ``None`` for "derived" (``--protocol``) or "the field's default", as
            :func:`config_from_args` leaves ``None`` out for a field that cannot be ``None``.
        required: the option must be given; for an ``exclusive`` option: one of its group must be.
        exclusive: options with the same name here form one mutually exclusive group.
        positional: a positional argument named by the field (or ``name``), not an option.
        repeat: the option may be given several times (a list of texts in the namespace; ``None``
            when absent).
        nargs: several values after one option (``"+"``) for a ``tuple[X, ...]`` field.
        convert: the parsed option -> the field's value (``all`` -> ``(0, 1, 2, 3)``); default:
            :func:`coerce_value` to the field's type.
    """

    help: str
    name: str | None = None
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    default: Any = FIELD_DEFAULT
    required: bool = False
    exclusive: str | None = None
    positional: bool = False
    repeat: bool = False
    nargs: str | None = None
    convert: Callable[[Any], Any] | None = None

    def dest(self, field: str) -> str:
        """The namespace attribute of the option (argparse's: the option name with ``_``)."""
        return (self.name or field).replace("-", "_")


def add_config_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    flags: Mapping[str, Flag] | None = None,
    *,
    overrides: bool = False,
    aliases: Mapping[str, str] | None = None,
) -> None:
    """Add one option per field of the dataclass ``cls`` to ``parser`` (or an argument group).

    Typed options (default): the fields named in ``flags``, in its order, each as its :class:`Flag`
    says (a positional argument for :attr:`Flag.positional`); the option's type (``int``, ``float``,
    ``str``), choices (``Literal``, of that type for numbers) and switch
    (``bool``: ``--x`` for a ``False`` default, ``--x/--no-x`` for ``None``, the option named by the
    :class:`Flag` turning a ``True`` default off) follow the annotation.

    ``overrides=True``: every field (or those in ``flags``), ``--field-name VALUE`` with the raw
    text kept, absent from the namespace unless given, help ``<description> (<type>, default
    <value>)`` (the description from the class docstring: :func:`field_docs`); ``aliases`` maps
    more option names to fields (``{"lr": "base_lr"}``). Read them back with
    :func:`overrides_from_args`.
    """
    hints = field_types(cls)
    defaults = field_defaults(cls)
    docs = field_docs(cls) if overrides else {}
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for name in list(flags) if flags is not None else list(hints):
        tp = hints[name]
        if overrides:
            spec = (flags or {}).get(name)
            options = ["--" + name.replace("_", "-")]
            options += ["--" + a for a, target in (aliases or {}).items() if target == name]
            extra: dict[str, Any] = {"nargs": "?", "const": "true"} if tp is bool else {}
            parser.add_argument(
                *options, dest=_OVERRIDE_PREFIX + name, default=argparse.SUPPRESS,
                metavar="BOOL" if tp is bool else name.upper(),
                help=spec.help if spec else (f"{docs[name]} " if name in docs else "")
                + f"({type_name(tp)}, default {_shown(defaults[name])!r})", **extra,
            )
            continue
        assert flags is not None
        spec = flags[name]
        if spec.positional:
            options = [spec.dest(name)]  # argparse names a positional by its namespace attribute
        else:
            options = ["--" + (spec.name or name).replace("_", "-"), *spec.aliases]
        default = defaults.get(name) if spec.default is FIELD_DEFAULT else spec.default
        kwargs: dict[str, Any] = {"help": spec.help, "default": default}
        if spec.positional and spec.nargs not in ("?", "*"):
            kwargs.pop("default")  # always given: argparse refuses required= for a positional
        elif spec.required and spec.exclusive:
            kwargs["default"] = None  # the group is required, not each of its options
        elif spec.required:
            kwargs.update(required=True, default=None)  # no default to show
        if spec.metavar:
            kwargs["metavar"] = spec.metavar
        base = _non_none(tp)
        if spec.repeat:
            # absent: None (argparse would append to a default list); the field's default then applies
            kwargs.update(action="append", default=None)
        elif base is bool:
            # False: a switch that turns it on; True: one that turns it off (named so: --no-verify);
            # None (three states: on, off, decided by another setting): --x / --no-x
            kwargs["action"] = (argparse.BooleanOptionalAction if default is None else
                                "store_false" if default else "store_true")
        elif spec.nargs:
            kwargs.update(nargs=spec.nargs, type=typing.get_args(base)[0])
        elif typing.get_origin(base) is Literal:
            kwargs["choices"] = typing.get_args(base)
            kinds = {type(c) for c in kwargs["choices"]}
            if len(kinds) == 1 and kinds <= {int, float}:
                kwargs["type"] = kinds.pop()  # "1" on the command line is the choice 1
        elif base in (int, float, str):
            kwargs["type"] = base  # argparse's own one-line message for a bad number
        # tuples and mappings stay text: `convert` or coerce_value reads them
        target = parser
        if spec.exclusive:
            if spec.exclusive not in exclusive:
                exclusive[spec.exclusive] = parser.add_mutually_exclusive_group(required=spec.required)
            target = exclusive[spec.exclusive]
        target.add_argument(*options, **kwargs)


def _shown(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value  # as in YAML: [0.5, 2.0]


def _non_none(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def config_from_args(
    cls: type, args: argparse.Namespace, flags: Mapping[str, Flag], computed: Mapping[str, Any] | None = None
) -> Any:
    """Build the dataclass ``cls`` from the typed options of ``flags`` in ``args``, and ``computed``.

    Each option's value goes through its :attr:`Flag.convert` (or :func:`coerce_value`); ``None``
    for a field that cannot be ``None`` is left out (the field's default applies). ``computed`` holds
    the fields the command works out itself (``protocol`` from the dataset); they win over the options.
    """
    hints = field_types(cls)
    kwargs: dict[str, Any] = dict(computed or {})
    for name, spec in flags.items():
        if name in kwargs:
            continue
        value = getattr(args, spec.dest(name))
        if spec.convert is not None:
            value = spec.convert(value)
        elif value is not None:
            value = coerce_value(value, hints[name], "--" + spec.dest(name).replace("_", "-"))
        if value is None and type(None) not in typing.get_args(hints[name]):
            continue
        kwargs[name] = value
    return cls(**kwargs)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The override options given (:func:`add_config_args` with ``overrides=True``): field -> value,
    texts parsed with YAML rules (:func:`parse_value`)."""
    return {
        key[len(_OVERRIDE_PREFIX):]: parse_value(value) if isinstance(value, str) else value
        for key, value in vars(args).items() if key.startswith(_OVERRIDE_PREFIX)
    }
