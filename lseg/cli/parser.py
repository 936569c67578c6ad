"""The ``lseg`` parser's conventions: plain help text with defaults and one-line usage errors."""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

__all__ = ["HelpFormatter", "Parser", "plain_doc"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (plain text, no reST); every option shows its default, if it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is None or default is False or default is argparse.SUPPRESS
                or not action.option_strings or action.nargs == 0  # a switch: its default is "not given"
                or isinstance(default, (str, list, tuple, dict)) and not default):  # nothing to show
            return text
        shown = ",".join(map(_shown, default)) if isinstance(default, (list, tuple)) else _shown(default)
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


def _shown(value: Any) -> str:
    """A default as the command line would spell it: ``0.6666666666666666`` -> ``0.666667``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


class Parser(argparse.ArgumentParser):
    """An ``argparse`` parser (and sub-commands) with one-line usage errors (``error: ...``, exit code 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def plain_doc(text: str | None) -> str:
    """A reST docstring as plain help text: ``code`` -> code, :role:`x` -> x, ``::`` -> ``:``."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text or "")
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"::\n", ":\n", text).strip() + "\n"
