"""Options, declared once: a frozen dataclass field is the option's name, type and default; its
entry in the class docstring (``Attributes:``) is the help; :func:`option` metadata adds the range
and what the command line needs (short alias, positional, how a text becomes the value).

* :func:`check_options` (called by the dataclass's ``__post_init__``) checks types, choices and
  ranges the same way for the Python API and the command line: a bad value is a one-line
  :class:`~lseg.errors.ConfigError` naming the field (``stride must be ...``);
* :func:`add_options` turns the fields into ``argparse`` options and :func:`options_from_args` builds
  the dataclass back, naming the option in errors instead (``--stride must be ...``);
* override options (``lseg train``, :func:`add_config_args` with ``overrides=True``): every field is a
  ``--name VALUE`` option, absent unless given, its text parsed with YAML rules, because a recipe
  or config file sits between the field's default and the command line.

This module is low in the package: it imports no other lseg module but :mod:`lseg.errors`, and
pyyaml (the ``train`` extra) only when a YAML value is parsed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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
    "add_options",
    "check_options",
    "coerce_value",
    "config_from_args",
    "field_defaults",
    "field_types",
    "option",
    "options_from_args",
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


# ---------------------------------------------------------------------- one declaration per option

_META = "lseg_option"


@dataclasses.dataclass(frozen=True)
class Option:
    """What :func:`option` adds to a field's type and default (see there)."""

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


def option(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    flag: str | None = None,
    short: str | None = None,
    metavar: str | None = None,
    positional: bool = False,
    nargs: str | None = None,
    repeat: bool = False,
    min: float | None = None,
    max: float | None = None,
    gt: float | None = None,
    parse: Callable[[Any], Any] | None = None,
    check: Callable[[Any], Any] | None = None,
    exclusive: str | None = None,
    required: bool = False,
    help: str | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with its range and command-line shape (its help: the class docstring).

    Args:
        default, default_factory: as :func:`dataclasses.field`.
        flag: the option's name when it is not the field's (``template`` for ``templates``).
        short: a short alias (``-o``).
        metavar: the value's name in the help.
        positional: a positional argument, not an option.
        nargs: several values after one option or positional (``"+"``).
        repeat: the option may be given several times (``--template A --template B``).
        min, max: inclusive bounds of a number (of each number of a tuple); gt: exclusive lower bound.
        parse: command-line text -> value, where the type alone cannot say (``0`` -> ``None``).
        check: value -> value (normalised), raising :class:`ConfigError` for a bad one; runs for the
            Python API and the command line alike.
        exclusive, required: options with the same ``exclusive`` name form one mutually exclusive
            group; ``required``: the option (or one of its group) must be given.
        help: the help when the class docstring has no entry for the field.
        cli: ``False``: a Python-only field, no command-line option.
    """
    meta = Option(flag, short, metavar, positional, nargs, repeat, min, max, gt, parse, check, exclusive, required,
                  help, cli)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_META: meta})


def _meta(f: dataclasses.Field) -> Option:
    return f.metadata.get(_META) or Option()


class OptionError(ConfigError):
    """A bad option value. The message marks field names in backticks (```stride` must be ...``):
    ``str()`` shows the field name (Python), :meth:`named` the command line's ``--stride``."""

    def __init__(self, marked: str) -> None:
        self.marked = marked
        super().__init__(re.sub(r"`(\w+)`", r"\1", marked))

    def named(self, names: Mapping[str, str]) -> str:
        return re.sub(r"`(\w+)`", lambda m: names.get(m.group(1), m.group(1)), self.marked)


def _bounds(name: str, value: Any, opt: Option) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
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
    """Check (and normalise: ``"4"`` -> 4, a list -> a tuple) every field of the dataclass ``obj``
    against its type, choices and :func:`option` range; call it first in ``__post_init__``."""
    hints = field_types(type(obj))
    for f in dataclasses.fields(obj):
        tp, opt, value = hints[f.name], _meta(f), getattr(obj, f.name)
        if dataclasses.is_dataclass(_non_none(tp)) or value is None and type(None) in typing.get_args(tp):
            continue
        try:
            new = coerce_value(value, tp, f"`{f.name}`")
        except OptionError:
            raise
        except ConfigError as e:
            raise OptionError(str(e)) from None
        for v in new if isinstance(new, tuple) else (new,):
            _bounds(f.name, v, opt)
        if opt.check is not None:
            new = opt.check(new)
        if new is not value:
            object.__setattr__(obj, f.name, new)


def _flag_names(cls: type) -> dict[str, str]:
    """Field name -> its option as the command line shows it (``--crop-size``; a positional: ``STORE``)."""
    names: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        opt = _meta(f)
        tp = _non_none(field_types(cls)[f.name])
        if dataclasses.is_dataclass(tp):
            names.update(_flag_names(tp))
        elif opt.positional:
            names[f.name] = (opt.metavar or f.name).upper()
        else:
            names[f.name] = "--" + (opt.flag or f.name).replace("_", "-")
    return names


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                exclude: tuple[str, ...] = ()) -> None:
    """One ``argparse`` option (or positional) per field of the dataclass ``cls`` (nested dataclass
    fields: their own fields), in field order; the help is the field's docstring entry. Read them
    back with :func:`options_from_args`."""
    hints, defaults, docs = field_types(cls), field_defaults(cls), field_docs(cls)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in dataclasses.fields(cls):
        opt, tp = _meta(f), hints[f.name]
        base = _non_none(tp)
        if f.name in exclude or not opt.cli:
            continue
        if dataclasses.is_dataclass(base):
            add_options(parser, base, exclude)
            continue
        kwargs: dict[str, Any] = {"help": opt.help or docs.get(f.name, ""), "dest": f.name}
        default = defaults.get(f.name)
        if opt.positional:
            names = [f.name]
            kwargs.pop("dest")
            kwargs["metavar"] = (opt.metavar or f.name).upper()
            if opt.nargs:
                kwargs["nargs"] = opt.nargs
        else:
            names = ["--" + (opt.flag or f.name).replace("_", "-"), *([opt.short] if opt.short else [])]
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
        target: Any = parser
        if opt.exclusive:
            if opt.exclusive not in groups:
                groups[opt.exclusive] = parser.add_mutually_exclusive_group(required=opt.required)
            target = groups[opt.exclusive]
        target.add_argument(*names, **kwargs)


def options_from_args(cls: type, args: argparse.Namespace, **computed: Any) -> Any:
    """The dataclass ``cls`` from the options :func:`add_options` made (``computed``: fields the
    command works out itself; they win). A bad value is a :class:`ConfigError` naming the option."""
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
            if value is not None and opt.parse is not None:
                value = opt.parse(value)
            if value is None and type(None) not in typing.get_args(hints[f.name]):
                continue  # absent: the field's default
            kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except OptionError as e:
        raise ConfigError(e.named(_flag_names(cls))) from None


@functools.cache
def _docs(cls: type) -> dict[str, str]:
    return field_docs(cls)
