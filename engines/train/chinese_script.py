"""Traditional characters read as simplified ones, so that one set of rules reads both scripts.

`data/traditional.json` holds the traditional forms of the characters the extractor reads (the
alias table's names, speech verbs, adverbs, connectives, roles); it is not a general
converter. Each traditional character stands for one simplified character, so a text's
simplified view is as long as the text and every place in one is the same place in the other:
`卻說周瑜問魯肅曰：` is read as `却说周瑜问鲁肃曰：`, and 魯肅 is the table's 鲁肃.

A traditional text's speakers are written back in its own script: as the text spells the name
where it does (`魯肅`), else through the table (`诸葛亮` → `諸葛亮` for a text that only says 孔明).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def _tables() -> tuple[dict[int, str], dict[int, str], dict[int, None], dict[int, None]]:
    """(traditional → simplified, simplified → traditional, and the two sets of characters
    that only one script uses, as str.translate tables that delete them)."""
    text = resources.files("engines.train").joinpath("data/traditional.json").read_text("utf-8")
    table = json.loads(text)
    to_traditional = table["simplified_to_traditional"]
    to_simplified = {t: s for s, t in to_traditional.items()} | table["variants"]
    return (
        str.maketrans(to_simplified),
        str.maketrans(to_traditional),
        dict.fromkeys(map(ord, to_simplified)),
        dict.fromkeys(map(ord, to_traditional)),
    )


def simplified_view(text: str) -> str:
    """`text` with the traditional characters the extractor reads made simplified (same length)."""
    return text.translate(_tables()[0])


def is_traditional(text: str) -> bool:
    """True when `text` uses more of the traditional forms than of the simplified ones."""
    _, _, traditional, simplified = _tables()
    traditional_count = len(text) - len(text.translate(traditional))
    simplified_count = len(text) - len(text.translate(simplified))
    return traditional_count > simplified_count


class ScriptWriter:
    """Names as the text writes them: unchanged for a simplified text; for a traditional one,
    as the text spells the name, else in the table's traditional forms."""

    def __init__(self, text: str, view: str):
        self.text, self.view = text, view
        self.traditional = is_traditional(text)
        self._written: dict[str, str] = {}

    def __call__(self, name: str | None) -> str | None:
        if not name or not self.traditional:
            return name
        if name not in self._written:
            at = self.view.find(name)
            self._written[name] = (
                self.text[at : at + len(name)] if at >= 0 else name.translate(_tables()[1])
            )
        return self._written[name]
