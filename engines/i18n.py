"""The language Cosplay speaks to its user: one catalogue for every user-facing string.

A string is written in English in the code and shown through `_()`:

    self.notify(_("Saved {path}.", path=path))

The English text is the message id; `engines/locale/zh/*.toml` holds the 简体中文 for each
(`"Saved {path}." = "已保存 {path}。"`; the files are split by area only so they stay
readable — together they are one catalogue). A string defined before it is shown (a table
row, a constant) is marked with `N_()` and translated where it is shown: `_(row.help)`.
`tests/test_i18n.py` fails when a marked string has no translation, when a translation
loses or adds a `{placeholder}`, or when the catalogue keeps a string nothing uses.

The language: `set_language()` — from the config's `ui.language` (the CLI sets it) or
`COSPLAY_LANG`, else the locale (`LC_ALL`, `LC_MESSAGES`, `LANG`, `LANGUAGE`: zh… → 中文),
else English. It lives in `engines/` because every layer shows text (an engine's error is a
user-facing sentence too) and `engines` is the one package all the others may import.
"""

from __future__ import annotations

import os
import tomllib
from functools import cache
from importlib import resources

LANGUAGES = ("en", "zh")
LANGUAGE_VARIABLE = "COSPLAY_LANG"

_language: str | None = None


def N_(text: str) -> str:  # noqa: N802  gettext's name for "mark now, translate when shown"
    """Mark `text` for the catalogue without translating it yet."""
    return text


def _(text: str, /, **values: object) -> str:
    """`text` in the user's language, its `{placeholders}` filled from `values`."""
    if language() != "en":
        text = catalogue(language()).get(text, text)
    return text.format(**values) if values else text


def language() -> str:
    global _language
    if _language is None:
        _language = language_from_environment()
    return _language


def set_language(choice: str | None) -> str:
    """Use `choice` ("en", "zh"; "" or None or "auto": from the environment); the language
    now in use."""
    global _language
    choice = (choice or "").strip().lower()
    _language = _normalized(choice) if choice not in ("", "auto") else language_from_environment()
    return _language


def language_from_environment() -> str:
    chosen = os.environ.get(LANGUAGE_VARIABLE, "").strip()
    if chosen:
        return _normalized(chosen)
    for variable in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = os.environ.get(variable, "").strip()
        if value:
            return _normalized(value)
    return "en"


def _normalized(value: str) -> str:
    """ "zh_CN.UTF-8", "zh-Hans", "zh" → "zh"; anything else → "en"."""
    return "zh" if value.lower().startswith("zh") else "en"


@cache
def catalogue(lang: str) -> dict[str, str]:
    """Every translation of `lang`: English message id → text (read once)."""
    merged: dict[str, str] = {}
    folder = resources.files("engines") / "locale" / lang
    if not folder.is_dir():
        return merged
    for part in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if part.name.endswith(".toml"):
            merged.update(tomllib.loads(part.read_text("utf-8")))
    return merged
