"""What every ``giraffe`` sub-command shares: one-line refusals, help that shows defaults and
examples, and argument types that refuse a bad value before any work starts.

A user who mistypes a flag should read one line saying which flag and why, with exit status 2,
not a usage block or a traceback minutes into a run. Every sub-parser inherits this behaviour
because argparse builds sub-parsers with the class of their parent (:class:`Parser`).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

USAGE_ERROR = 2


class HelpFormatter(argparse.HelpFormatter):
    """Prose wrapped to the terminal, indented lines (examples) kept as written, and every
    option's default after its help, except where there is none worth showing (None, False)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for line in text.splitlines():
            if not line.strip() or line[0].isspace():
                out.append(indent + line)
            else:
                out.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent))
        return "\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "%(default)" in text
            or default in (None, False, argparse.SUPPRESS)
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return text
        if isinstance(default, (tuple, list)):
            shown = ",".join(str(v) for v in default).replace("%", "%%")
            return f"{text} (default: {shown})".strip()
        return f"{text} (default: %(default)s)".strip()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``giraffe <command>: <what is wrong>`` and exit 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE_ERROR, f"{self.prog}: {message.removeprefix('argument ')}\n")


def refuse(command: str, message: str) -> int:
    """Print the one line of a refused request on stderr; the exit status to return."""
    print(f"giraffe {command}: {message}", file=sys.stderr, flush=True)
    return USAGE_ERROR


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), for ``giraffe --version``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("giraffe-vlm")
    except PackageNotFoundError:
        return "unknown (giraffe-vlm is not installed: pip install -e .)"


# -- argument types: each raises ArgumentTypeError, which Parser.error prints as one line -------------


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None


def writable_dir(text: str) -> str:
    """A folder we may create or write in: it is a directory, or its nearest existing parent is
    a writable directory (checked now, so a typo fails before a run, not at its first write)."""
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text} is not writable")
        return text
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot create {text}: {parent} is not a writable folder")
    return text


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="show the libraries' progress bars and known-harmless warnings (datasets, transformers, "
        "DeepSpeed, Dagster preview notices), here and in the training job",
    )
