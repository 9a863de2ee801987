"""Which character a name at the start of a clause means.

`瑜` is 周瑜 once 周瑜 has appeared (the classics' way with a person already introduced),
`乾` is 蒋干 through his table alias 蒋乾, `玄德` is 刘备 through the alias table, `牛金奋然进`
starts with the new name 牛金 (a surname and a given name), `他`/`她` are pronouns for
`speakers.py` to resolve.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from dataclasses import dataclass

from engines.train.aliases import NameBook
from engines.train.clauses import speech_word_at

PRONOUNS = ("他", "她")
# Characters that do not follow a surname in a name (`高声`, `马上`, `何人`, `方才`…).
_NOT_GIVEN = set(
    "的了着过是在有不也又都就便乃遂亦皆将把被对向与和同跟问答曰道说笑叫喝叹声上下来去里中外前后"
    "时候然而之其此彼些个们这那么什怎样得地见听闻看走出起坐回到至于以为已要会能可人兴才众暗佯忙急怒惊喜叹开"
)
# A one-character name is never one of these (`众皆`, `人曰`…).
_NOT_ONE_CHAR_NAME = set(
    "我你他她之其此彼众人有无不是在于以而则乃遂便又亦也皆都将把被对向与和同小老大一二三"
)
_LONGER_NAME_SHARE = 0.7  # `孔乙己`, not `孔乙`, when most 孔乙 are followed by 己


@dataclass
class NameHit:
    name: str  # the canonical name, or a pronoun (他/她)
    length: int  # characters of the clause it covers

    @property
    def is_pronoun(self) -> bool:
        return self.name in PRONOUNS


class NameFinder:
    """Names at the start of clauses, and every mention of a known name in the text."""

    def __init__(self, text: str, book: NameBook, introduced: list[tuple[str, int]]):
        self.text, self.book = text, book
        self.introduced = introduced
        self._mentions: dict[str, list[int]] | None = None
        self._pattern: re.Pattern | None = None
        self._spelled: dict[str, dict[str, list[int]]] = {}
        self._given: dict[str, set[str]] | None = None
        self._counts: dict[str, int] = {}

    def count(self, word: str) -> int:
        """How often `word` occurs in the text (remembered: a novel asks for the same words
        many times)."""
        if word not in self._counts:
            self._counts[word] = self.text.count(word)
        return self._counts[word]

    def learn(self, name: str) -> None:
        """A name found at the start of a clause (`孔乙己`): known from now on."""
        if name not in self.book.canonical:
            self.book.canonical[name] = name
            self._mentions = self._pattern = self._given = None

    # ----- mentions -----
    def pattern(self) -> re.Pattern | None:
        if self._pattern is None:
            names = sorted((n for n in self.book.canonical if len(n) >= 2), key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, names))) if names else None
        return self._pattern

    def mentions(self) -> dict[str, list[int]]:
        """Canonical name → where the text mentions it (any of its names of 2+ characters)."""
        if self._mentions is None:
            found: dict[str, list[int]] = defaultdict(list)
            pattern = self.pattern()
            for match in pattern.finditer(self.text) if pattern else ():
                found[self.book.resolve(match.group())].append(match.start())
            for name, where in self.introduced:
                bisect.insort(found[name], where)
            self._mentions = dict(found)
        return self._mentions

    def names_in(self, piece: str) -> list[str]:
        """The canonical names mentioned in `piece`, in order."""
        pattern = self.pattern()
        return [self.book.resolve(m.group()) for m in pattern.finditer(piece)] if pattern else []

    def _latest_mention(self, candidates: dict[str, list[int]], before: int) -> str | None:
        """The candidate mentioned last before `before` (candidates: name → sorted places)."""
        best, best_at = None, -1
        for name, places in candidates.items():
            index = bisect.bisect_left(places, before)
            if index and places[index - 1] > best_at:
                best, best_at = name, places[index - 1]
        return best

    # ----- a name at the start of a clause -----
    def at(self, clause: str, where: int) -> NameHit | None:
        """The name `clause` starts with (`where` is its place in the text), or None."""
        if not clause:
            return None
        if clause[0] in PRONOUNS:
            return None if clause[1:2] == "们" else NameHit(clause[0], 1)
        pattern = self.pattern()
        known = pattern.match(clause) if pattern else None
        if known:
            return NameHit(self.book.resolve(known.group()), known.end())
        short = self._short_name(clause, where)
        if short:
            return short
        new = self.new_name(clause)
        return NameHit(self.book.resolve(new), len(new)) if new else None

    def _short_name(self, clause: str, where: int) -> NameHit | None:
        """`瑜` → 周瑜, `乾` → 蒋干, `小雨` → 林小雨: the last full name mentioned before
        `where` that the clause's first one or two characters end."""
        mentions = self.mentions()
        for size in (2, 1):
            part = clause[:size]
            if len(part) < size or (size == 1 and part in _NOT_ONE_CHAR_NAME):
                continue
            candidates = {
                name: mentions.get(name, []) for name in self._given_names().get(part, ())
            }
            known = set(candidates)
            if size == 1:
                for name, places in self._surname_then(part).items():
                    candidates[name] = sorted({*candidates.get(name, []), *places})
            chosen = self._latest_mention(candidates, where)
            if chosen:
                return NameHit(chosen, size)
            # not introduced before (an excerpt): the one full name the table or user knows
            if len(known) == 1:
                return NameHit(known.pop(), size)
        return None

    def _given_names(self) -> dict[str, set[str]]:
        """Given name → the full names (canonical) that end in it: `瑜` → {周瑜}."""
        if self._given is None:
            self._given = {}
            for name in self.book.canonical:
                if self.book.looks_like_full_name(name):
                    given = name[self.book.surname_length(name) :]
                    self._given.setdefault(given, set()).add(self.book.resolve(name))
        return self._given

    def _surname_then(self, char: str) -> dict[str, list[int]]:
        """Names the text spells as a surname then `char` (`周瑜` for `瑜`), with their places."""
        if char not in self._spelled:
            found: dict[str, list[int]] = defaultdict(list)
            for match in re.finditer(re.escape(char), self.text):
                at = match.start()
                for size in (2, 1):
                    name = self.text[max(0, at - size) : at + 1]
                    if len(name) == size + 1 and self.book.surname_length(name) == size:
                        longer = self.text[at - size : at + 2]
                        if longer not in self.book.canonical:  # 赵小军 is not 赵小
                            found[self.book.resolve(name)].append(at - size)
                        break
            self._spelled[char] = dict(found)
        return self._spelled[char]

    def new_name(self, clause: str) -> str | None:
        """A name the table does not know: a surname and a given name (`牛金`, `孔乙己`)."""
        size = self.book.surname_length(clause)
        if not size or len(clause) <= size or clause[size] in _NOT_GIVEN:
            return None
        short = clause[: size + 1]
        longer = clause[: size + 2] if len(clause) >= size + 2 else ""
        # `牛金奋然进`: 牛金, not 牛金奋; a name never ends in a speech verb or adverb
        if not longer or longer[-1] in _NOT_GIVEN or speech_word_at(clause, size + 1):
            return short
        if clause == longer or self.count(longer) >= _LONGER_NAME_SHARE * self.count(short):
            return longer
        return short
