"""The language of the command line, chosen before the parser is built (its help texts are
translated as they are added): the config's `ui.language`, else `COSPLAY_LANG` or the locale
(engines/i18n.py).

The config file is found the way every command finds it (`--home`, `$COSPLAY_HOME`,
`$COSPLAY_CONFIG`; sessions/config.py) and read with tomllib only: nothing heavy is imported,
so `cosplay --help` stays fast. A config that cannot be read leaves the choice to the
environment; the command that reads it says what is wrong with it.

argparse's own words ("usage:", "options", its error messages) go through the same catalogue:
argparse looks each up with its module's `_`, which `install_argparse_translation` points at
ours.
"""

from __future__ import annotations

import argparse
import os
import re
import unicodedata
from pathlib import Path

from engines.i18n import N_, _, set_language

# argparse's sentences the user reads (Python 3.11's argparse.py), for the catalogue.
ARGPARSE_TEXTS = (
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("show this help message and exit"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("unrecognized arguments: %s"),
    N_("the following arguments are required: %s"),
    N_("one of the arguments %s is required"),
    N_("not allowed with argument %s"),
    N_("ignored explicit argument %r"),
    N_("expected one argument"),
    N_("expected at most one argument"),
    N_("expected at least one argument"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("invalid %(type)s value: %(value)r"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("can't open '%(filename)s': %(error)s"),
)


def _argparse_text(text: str) -> str:
    return _(text)


def install_argparse_translation() -> None:
    """argparse's own words in the language in use (looked up when the parser is built and
    when it reports an error)."""
    argparse._ = _argparse_text  # argparse's gettext hook: `from gettext import gettext as _`


# Never at the start of a line: it stays on the line before, one cell past the width if need be.
_CLOSING = frozenset("，。、：；！？）」』】》…")
# Never at the end of a line: it moves down to the line it opens.
_OPENING = frozenset("（「『【《“")


def _cells(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def wrap_cells(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` terminal cells (a Chinese character takes two);
    Chinese breaks between characters, other text between words."""
    words = re.findall(r"\s+|[\u2e80-\uffef]|[^\s\u2e80-\uffef]+", " ".join(text.split()))
    lines, line = [], ""
    for word in words:
        if word.isspace():
            line += " " if line else ""
            continue
        if line and _cells(line + word) > width and word not in _CLOSING:
            carried = line[-1] if line[-1] in _OPENING and len(line) > 1 else ""
            lines.append(line[: len(line) - len(carried)].rstrip())
            line = carried
        line += word
    return [*lines, line.rstrip()] if line.strip() else lines


class CellWidthHelpFormatter(argparse.HelpFormatter):
    """argparse's help, wrapped by terminal cells when it holds Chinese (argparse counts
    characters, so a Chinese line would run twice as wide as the terminal)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        if _cells(text) == len(text):
            return super()._split_lines(text, width)
        return wrap_cells(text, width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if _cells(text) == len(text):
            return super()._fill_text(text, width, indent)
        return "\n".join(indent + line for line in wrap_cells(text, width - len(indent)))


def home_from_argv(argv: list[str]) -> str | None:
    """`--home DIR` or `--home=DIR` before the command's own arguments, else None."""
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg.startswith("--home="):
            return arg.partition("=")[2]
        if arg == "--home" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def configured_language(argv: list[str]) -> str | None:
    """The config's `ui.language` ("auto" when unset), or None when the file cannot say."""
    from sessions.config import config_path, load_config

    home = home_from_argv(argv) or os.environ.get("COSPLAY_HOME") or None
    try:
        if home is not None and home.strip():
            path = config_path(Path(home).expanduser(), default_root=False)
        else:
            path = config_path(Path(), default_root=True)
        language = load_config(path).get("ui.language")
    except (OSError, ValueError):  # a path the OS refuses: the command itself reports it
        return None
    return language if isinstance(language, str) else None


def choose_language(argv: list[str]) -> str:
    """Set the CLI's language from the config, else the environment; the language in use."""
    language = set_language(configured_language(argv))
    install_argparse_translation()
    return language
