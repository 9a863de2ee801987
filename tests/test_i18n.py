"""The UI's two languages: every string marked with `_()`/`N_()` in the code has its 简体中文
in the catalogue (engines/locale/zh/*.toml) with the same placeholders, and the catalogue
keeps nothing the code no longer shows."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from engines import i18n
from engines.i18n import _, catalogue, set_language

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tui", "engines", "sessions")


def marked_strings() -> dict[str, str]:
    """Every literal passed to `_()` or `N_()` in the packages, with where it is."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text("utf-8"), str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("_", "N_")
                    and node.args
                ):
                    first = node.args[0]
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    assert not isinstance(first, (ast.JoinedStr, ast.BinOp)), (
                        f"{where}: _() takes a literal string (the message id), with "
                        "{placeholders} filled from keyword arguments, not an f-string"
                    )
                    if isinstance(first, ast.Constant) and isinstance(first.value, str):
                        found.setdefault(first.value, where)
                    # else _(row.help): a string marked with N_() where it was defined
    return found


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.fixture
def chinese():
    set_language("zh")
    yield
    set_language("en")


def test_every_marked_string_has_its_chinese_with_the_same_placeholders():
    zh = catalogue("zh")
    marked = marked_strings()
    assert marked, "nothing is marked for translation"
    missing = [f"{where}: {text!r}" for text, where in marked.items() if text not in zh]
    assert not missing, "no 简体中文 in engines/locale/zh/*.toml for:\n" + "\n".join(missing)
    wrong = [
        f"{text!r} → {zh[text]!r}"
        for text in marked
        if placeholders(text) != placeholders(zh[text])
    ]
    assert not wrong, "placeholders differ:\n" + "\n".join(wrong)
    empty = [text for text in marked if not zh[text].strip()]
    assert not empty, f"empty translations: {empty}"


def test_the_catalogue_keeps_only_strings_the_code_shows():
    stale = sorted(set(catalogue("zh")) - set(marked_strings()))
    assert not stale, "translations nothing uses (delete them):\n" + "\n".join(stale)


def test_translations_are_chinese():
    latin_only = [
        text
        for text, translated in catalogue("zh").items()
        if not re.search(r"[\u4e00-\u9fff]", translated) and re.search(r"[A-Za-z]{4}", text)
    ]
    assert not latin_only, f"left in English: {latin_only}"


def test_the_language_comes_from_the_choice_then_the_environment(monkeypatch):
    for variable in ("COSPLAY_LANG", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(variable, raising=False)
    assert set_language(None) == "en"
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert set_language("auto") == "zh"
    assert set_language("en") == "en"
    monkeypatch.setenv("COSPLAY_LANG", "en")
    assert set_language("") == "en"
    assert set_language("zh-Hans") == "zh"
    set_language("en")


def test_a_string_is_shown_in_the_language_chosen(chinese, monkeypatch):
    monkeypatch.setattr(i18n, "catalogue", lambda lang: {"Saved {path}.": "已保存 {path}。"})
    assert _("Saved {path}.", path="a.json") == "已保存 a.json。"
    assert _("Not in the catalogue") == "Not in the catalogue"
    set_language("en")
    assert _("Saved {path}.", path="a.json") == "Saved a.json."


def test_no_error_a_user_sees_is_raised_in_english_only():
    """An error of ours (a CosplayError and its kin, not Python's own ValueError…) raised with a
    literal sentence or an f-string bypasses the catalogue: it must go through `_()`."""
    import builtins

    untranslated = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
                if not isinstance(node, ast.Raise) or not isinstance(node.exc, ast.Call):
                    continue
                func = node.exc.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if not name.endswith("Error") or hasattr(builtins, name) or not node.exc.args:
                    continue
                first = node.exc.args[0]
                parts = first.values if isinstance(first, ast.JoinedStr) else [first]
                words = [
                    part.value
                    for part in parts
                    if isinstance(part, ast.Constant) and isinstance(part.value, str)
                ]
                if any(re.search(r"[A-Za-z]{2}", word) for word in words):
                    untranslated.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not untranslated, untranslated
