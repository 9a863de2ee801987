"""Who is who in a novel: courtesy names, titles and nicknames mapped to one full name.

Three sources, later ones winning: the table shipped for the Four Classics
(`engines/train/data/aliases.json`; a novel's names apply when the text mentions at least
three of its characters), what the text itself says (`姓蒋，名干，字子翼` → 子翼 is 蒋干), and
the user's `--alias-file` / `--alias`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from engines.i18n import _
from engines.train import DatasetError

_NOVEL_MIN_CHARACTERS = 3  # characters of a novel the text must mention for its names to apply


@cache
def shipped_table() -> dict:
    """The shipped alias table (novels, surnames), read once."""
    text = resources.files("engines.train").joinpath("data/aliases.json").read_text("utf-8")
    return json.loads(text)


@dataclass
class NameBook:
    """Every known name or alias → its canonical full name, and the surnames that start names."""

    canonical: dict[str, str] = field(default_factory=dict)
    surnames: frozenset[str] = frozenset()
    compound_surnames: tuple[str, ...] = ()

    def add(self, alias: str, full_name: str) -> None:
        alias, full_name = alias.strip(), full_name.strip()
        if alias and full_name:
            self.canonical[alias] = self.canonical.get(full_name, full_name)
            self.canonical.setdefault(full_name, self.canonical[alias])

    def resolve(self, name: str) -> str:
        return self.canonical.get(name, name)

    def surname_length(self, text: str) -> int:
        """How many leading characters of `text` are a surname (0 when none)."""
        if text[:2] in self.compound_surnames:
            return 2
        return 1 if text[:1] in self.surnames else 0

    def looks_like_full_name(self, name: str) -> bool:
        """A surname and a one- or two-character given name (`蒋乾`, `诸葛亮`)."""
        size = self.surname_length(name)
        return size > 0 and 1 <= len(name) - size <= 2


def novels_mentioned(text: str) -> list[str]:
    """The novels of the shipped table whose characters the text mentions (three or more)."""
    found = []
    for novel, people in shipped_table()["novels"].items():
        mentioned = sum(
            1 for full, aliases in people.items() if any(n in text for n in (full, *aliases))
        )
        if mentioned >= _NOVEL_MIN_CHARACTERS:
            found.append(novel)
    return found


# 姓蒋，名干，字子翼 / 复姓诸葛，名亮，字孔明 / 诸葛亮字孔明
_SURNAME_NAME_COURTESY = re.compile(
    r"(?:复)?姓(?P<surname>[\u4e00-\u9fff]{1,2})[，,]?\s*(?:双)?名(?P<given>[\u4e00-\u9fff]{1,2})"
    r"[，,]?\s*(?:表?字(?P<courtesy>[\u4e00-\u9fff]{2}))?"
)
_NAME_COURTESY = re.compile(
    r"(?P<full>[\u4e00-\u9fff]{2,4})[，,]?\s*表?字(?P<courtesy>[\u4e00-\u9fff]{2})"
)


def mined_names(text: str, book: NameBook) -> list[tuple[str, str, int]]:
    """(alias, full name, where) for the names the text introduces: 姓X名Y字Z, 诸葛亮字孔明."""
    found = []
    for match in _SURNAME_NAME_COURTESY.finditer(text):
        full = match["surname"] + match["given"]
        found.append((full, full, match.start()))
        if match["courtesy"]:
            found.append((match["courtesy"], full, match.start()))
            found.append((match["surname"] + match["courtesy"], full, match.start()))
    for match in _NAME_COURTESY.finditer(text):
        full = match["full"]
        # the full name is the tail of the run before 字 that starts with a surname
        for start in range(len(full) - 1):
            if book.looks_like_full_name(full[start:]):
                found.append((match["courtesy"], full[start:], match.start()))
                break
    return found


JSON_EXAMPLE = '{"诸葛亮": ["孔明", "卧龙"]}'  # braces: a value, not a {placeholder}


def read_alias_file(path: str | Path) -> dict[str, list[str]]:
    """The user's aliases: a JSON object {"诸葛亮": ["孔明", "卧龙"]}, or text lines
    `诸葛亮: 孔明, 卧龙` (the first name is the full one; `#` starts a comment)."""
    from engines.train.textio import read_text

    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(_("The alias file {path} does not exist; check the path.", path=path))
    text = read_text(path)
    if path.suffix.lower() == ".json":
        try:
            table = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                _(
                    "The alias file {path} is not valid JSON (line {line}: {problem}); write it "
                    "as {example}.",
                    path=path,
                    line=exc.lineno,
                    problem=exc.msg,
                    example=JSON_EXAMPLE,
                )
            ) from None
        if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(a, str) for a in v)
            for k, v in table.items()
        ):
            raise DatasetError(
                _(
                    "The alias file {path} must map each full name to a list of other names, "
                    "e.g. {example}.",
                    path=path,
                    example=JSON_EXAMPLE,
                )
            )
        return table
    table: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        names = [n for n in re.split(r"[\s:：,，、;；=]+", line) if n]
        if len(names) < 2:
            raise DatasetError(
                _(
                    "Line {number} of the alias file {path} names only {line}; write the full "
                    "name and its other names, e.g. `诸葛亮: 孔明, 卧龙`.",
                    number=number,
                    path=path,
                    line=repr(line),
                )
            )
        table.setdefault(names[0], []).extend(names[1:])
    return table


def name_book(
    text: str,
    *,
    user_aliases: dict[str, list[str]] | None = None,
) -> tuple[NameBook, list[tuple[str, int]]]:
    """The names for `text`, and (full name, where) for names the text itself introduces."""
    table = shipped_table()
    book = NameBook(
        surnames=frozenset(table["surnames"]),
        compound_surnames=tuple(table["compound_surnames"]),
    )
    for novel in novels_mentioned(text):
        for full, aliases in table["novels"][novel].items():
            book.add(full, full)
            for alias in aliases:
                book.add(alias, full)
    introduced = []
    for alias, full, where in mined_names(text, book):
        if alias not in book.canonical:
            book.add(alias, full)
        introduced.append((book.resolve(full), where))
    for full, aliases in (user_aliases or {}).items():
        full = book.resolve(full.strip())  # `--speaker 孔明` is 诸葛亮 when the table knows him
        book.canonical[full] = full
        for alias in aliases:
            if alias.strip():
                book.canonical[alias.strip()] = full
    return book, introduced
