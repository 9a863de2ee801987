"""Who says each quote of a novel, as a reader of the classics would have it.

In order of trust, for each quote:

1. the clause before it (`瑜大笑曰：`, `玄德问孔明曰：`, `乾曰；`, `他说：`) or after it
   (`“……”她笑道。`): the name it starts with, else — for a clause with no name of its own
   (`又问曰`, `笑谓诸将曰`, `便唤：`) — the subject earlier in the sentence, the speaker of the
   quote just before (`答曰` is the one asked), or the subject of the sentence before;
2. an action beat between two quotes (`“……”林小雨叹了口气，“……”`);
3. the same speaker going on after their tag (`“……”宝玉笑道。“……”`);
4. turn-taking: an untagged line opening a paragraph answers the line before it.

Pronouns (`他`, `她`) become the last person named in the narration before them when one
sentence names exactly one, else a recent speaker the pronoun fits; otherwise the quote is
left out. Names are canonical (`names.py`, `aliases.py`).
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from dataclasses import dataclass

from engines.train.aliases import NameBook
from engines.train.clauses import (
    CLAUSE_STOP,
    KIN,
    MODIFIER,
    NOBODY,
    QUOTE,
    ROLES,
    Clause,
    bare_name,
    clause_after,
    clause_before,
    continues_subject,
    earlier_clauses,
    previous_sentence_clauses,
    starts_with_verb,
    strip_leading,
)
from engines.train.names import PRONOUNS, NameFinder, NameHit
from engines.train.untagged import UntaggedLines

_PRONOUN_WINDOW = 300  # characters of narration looked back through for a pronoun's person
_RECENT_SPEAKERS = 4
_CAUSATIVE = re.compile("[令命教使让].")  # with someone told to speak: not `操传令曰`
_NARRATED_NAME_MENTIONS = 2  # a new name seen only in narration must recur to be learned
_BARE_NAME_TAGS = 2  # `宝玉笑道` twice: 宝玉 is a name even with no surname the table knows
_UNNAMED = (*NOBODY, *sorted(ROLES, key=len, reverse=True))


@dataclass
class Attribution:
    start: int  # the quote's opening mark
    end: int  # after its closing mark
    speech: str
    speaker: str | None = None
    verb: str = ""
    addressee: str | None = None
    tag_start: int = -1  # the attribution clause, when there is one
    tag_end: int = -1
    how: str = ""  # before / after / beat / continued / turn


def quotes(text: str) -> list[Attribution]:
    return [
        Attribution(m.start(), m.end(), (m.group(1) or m.group(2) or "").strip())
        for m in QUOTE.finditer(text)
    ]


class Attributor(UntaggedLines):
    def __init__(self, text: str, book: NameBook, introduced: list[tuple[str, int]]):
        self.text = text
        self.names = NameFinder(text, book, introduced)
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.gender: dict[str, str] = {}
        self.uses_she = "她" in text
        # classical prose (`瑜曰`) calls people by one character; modern prose does not, and
        # there `明天` is no 沈明
        self.classical = text.count("曰") >= max(3, len(QUOTE.findall(text)) // 5)

    def paragraph(self, at: int) -> int:
        return bisect.bisect_right(self.line_starts, at) - 1

    # ----- pass 1: learn the names that start attribution clauses -----
    def learn_names(self, found: list[Attribution]) -> None:
        """Names the table does not know, from where speakers are named: the clauses of the
        sentence that leads into a quote, the clause after it, the narration between quotes."""
        pattern = self.names.pattern()
        subjects: Counter = Counter()
        for index, quote in enumerate(found):
            pieces = []
            clause = clause_before(self.text, quote.start)
            tag = clause.text if clause else None
            if clause:
                pieces.append(clause.text)
                pieces += [text for text, _ in earlier_clauses(self.text, clause.start)[0]]
            clause = clause_after(self.text, quote.end)
            if clause:
                pieces.append(clause.text)
                tag = tag or clause.text
            if index + 1 < len(found):
                pieces.append(self.text[quote.end : found[index + 1].start])
            # the narration leading up to the quote: people a pronoun may stand for
            lead_start = max(found[index - 1].end if index else 0, quote.start - _PRONOUN_WINDOW)
            narrated = [
                piece
                for piece in re.split(f"[{CLAUSE_STOP}]", self.text[lead_start : quote.start])
                if piece.strip()
            ]
            for piece in narrated:
                stripped, _ = strip_leading(piece)
                new = self.names.new_name(stripped)
                if new and self.names.count(new) >= _NARRATED_NAME_MENTIONS:
                    pieces.append(stripped)
            for piece in pieces:
                stripped, _ = strip_leading(piece)
                if pattern and pattern.match(stripped):
                    continue
                new = self.names.new_name(stripped)
                if new:
                    self.names.learn(new)
                    pattern = self.names.pattern()
            if tag:
                bare = bare_name(strip_leading(tag)[0])
                if bare:
                    subjects[bare] += 1
        for name, count in subjects.items():
            if count >= _BARE_NAME_TAGS and not (pattern and pattern.match(name)):
                self.names.learn(name)

    # ----- pass 2 -----
    def attribute(self, found: list[Attribution]) -> None:
        self.learn_names(found)
        done: list[Attribution] = []
        for index, quote in enumerate(found):
            before = clause_before(self.text, quote.start)
            after = None if before else clause_after(self.text, quote.end)
            clause = before or after
            if clause:
                speaker = self._from_clause(clause, done)
                if speaker:
                    quote.speaker, quote.verb, quote.how = (
                        speaker,
                        clause.verb,
                        ("after" if clause.after_quote else "before"),
                    )
                    quote.tag_start, quote.tag_end = clause.start, clause.end
                    quote.addressee = self._addressee(clause)
            if not quote.speaker and clause and not clause.after_quote:
                self._named_after(quote, clause)
            if not quote.speaker and not clause:
                (
                    self._colon_lead(quote, done)
                    or self._beat(found, index, done)
                    or self._action_after(quote, done)
                    or self._continued(quote, done)
                    or self._action_before(quote, done)
                    or self._turn(quote, done)
                )
            if quote.speaker:
                done.append(quote)

    def _addressee(self, clause: Clause) -> str | None:
        word = clause.addressee_word
        if not word:
            return None
        hit = self.names.at(word, clause.start)
        if hit and not hit.is_pronoun and hit.length == len(word):
            return hit.name
        return word

    def _from_clause(self, clause: Clause, done: list[Attribution]) -> str | None:
        hit, unnamed, at = self._subject(clause.text, clause.start)
        if unnamed:
            return None
        if hit and _CAUSATIVE.search(self.text, at + hit.length, clause.start + len(clause.text)):
            return None  # `孔明令军士齐声叫曰`: the soldiers speak, not 孔明
        if hit:
            return self._person(hit.name, at, done)
        if clause.after_quote:
            return None
        # No name of its own: the subject earlier in the sentence…
        earlier, before = earlier_clauses(self.text, clause.start)
        speaker, decided = self._subject_of(earlier, done)
        if decided:
            return speaker
        # (`次日至馆驿中见孔明，又嘱曰`: a sentence that starts with its verb has no subject)
        subjectless = bool(earlier) and starts_with_verb(earlier[-1][0])
        if (earlier and not subjectless) or not continues_subject(clause.text):
            return None
        # …the speaker just before (the one asked, for an answer)…
        if before in "”」" and before and done:
            if "答" in clause.verb or "答" in clause.text:
                return self._answerer(done)
            return done[-1].speaker
        # …or the subject of the sentence before (the paragraph's last, for a subjectless one).
        previous = previous_sentence_clauses(self.text, clause.start, across_paragraphs=subjectless)
        for text, start in previous:
            stripped, cut = strip_leading(text)
            hit = self.names.at(stripped, start + cut)
            if hit:
                return self._person(hit.name, start + cut, done)
        return None

    def _subject(
        self, clause: str, where: int, *, one_character: bool = True
    ) -> tuple[NameHit | None, bool, int]:
        """The person `clause` (at `where` in the text) starts with, past connectives, titles,
        a modifier ending in 的 (`坐在后排的赵小军`) and a pronoun's kin (`她哥哥沈明`): the
        name, whether it starts with somebody unnamed instead (`有人`, `护士`, `他父亲`), and
        where the name is."""
        stripped, cut = strip_leading(clause)
        modifier = MODIFIER.match(stripped)
        if modifier:
            hit = self.names.at(stripped[modifier.end() :], where + cut + modifier.end())
            if hit and not hit.is_pronoun:
                return hit, False, where + cut + modifier.end()
        hit = self.names.at(stripped, where + cut)
        if hit and hit.is_pronoun:
            rest = stripped[1:].removeprefix("的")
            kin = next((word for word in KIN if rest.startswith(word)), None)
            if kin:  # `她哥哥沈明`: 沈明; `他父亲`: somebody unnamed
                rest = rest[len(kin) :]
                named = self.names.at(rest, where + len(clause) - len(rest))
                if named and not named.is_pronoun:
                    return named, False, where + len(clause) - len(rest)
                return None, True, where
        if hit and (one_character or hit.length > 1 or hit.is_pronoun):
            return hit, False, where + cut
        return None, stripped.startswith(_UNNAMED), where

    def _subject_of(
        self, clauses: list[tuple[str, int]], done: list[Attribution], *, verb: bool = True
    ) -> tuple[str | None, bool]:
        """The speaker from the nearest of `clauses` that starts with somebody, and whether
        one did (a clause starting with somebody unnamed decides: nobody). With no speech
        verb (`verb=False`) a one-character name (`瑜`) is trusted only in classical prose."""
        for text, start in clauses:
            hit, unnamed, at = self._subject(text, start, one_character=verb or self.classical)
            if unnamed:
                return None, True
            if hit:
                return self._person(hit.name, at, done), True
        return None, False

    def _answerer(self, done: list[Attribution]) -> str | None:
        """`答曰`: the one the last question was put to, when the text names them."""
        for quote in reversed(done[-3:]):
            if quote.addressee:
                return quote.addressee if quote.addressee in self.names.book.canonical else None
        return None

    # ----- pronouns -----
    def _person(self, name: str, where: int, done: list[Attribution]) -> str | None:
        if name not in PRONOUNS:
            return name
        person = (
            self._last_named(where, done)
            or self._other_named(where, done)
            or self._recent_speaker(name, where, done)
        )
        if person is None and self.uses_she:
            person = self._last_fitting(name, where, done)
        if person and self.uses_she:
            self.gender.setdefault(person, "f" if name == "她" else "m")
        return person

    def _last_named(self, where: int, done: list[Attribution]) -> str | None:
        """The one person named by the last sentence that names anybody, in the narration since
        the last line of speech, then in the paragraph; None when there are two or none."""
        since = done[-1].end if done else 0
        since = max(since, done[-1].tag_end if done else 0, where - _PRONOUN_WINDOW)
        paragraph_start = self.line_starts[self.paragraph(where)]
        for start in (since, min(since, paragraph_start)):
            narration = self._narration(start, where, done)
            for sentence in reversed(re.split("[。！？!?\n]", narration)):
                named = set(self.names.names_in(sentence))
                if len(named) == 1:
                    return named.pop()
                if len(named) > 1:
                    return None
        return None

    def _narration(self, start: int, end: int, done: list[Attribution]) -> str:
        """The text from `start` to `end` without quotes and attribution clauses."""
        piece = list(self.text[start:end])
        spans = [(q.start, q.end) for q in quotes(self.text[start:end])]
        spans = [(a + start, b + start) for a, b in spans]
        for quote in reversed(done):
            if quote.end < start - _PRONOUN_WINDOW:
                break
            if quote.tag_start >= 0:
                spans.append((quote.tag_start, quote.tag_end))
        for a, b in spans:
            for i in range(max(a, start), min(b, end)):
                piece[i - start] = "，"
        return "".join(piece)

    def _last_fitting(self, pronoun: str, where: int, done: list[Attribution]) -> str | None:
        """The last person named in the narration before `where` whom the pronoun fits."""
        wrong = "f" if pronoun == "他" else "m"
        narration = self._narration(max(0, where - _PRONOUN_WINDOW), where, done)
        for name in reversed(self.names.names_in(narration)):
            if self.gender.get(name) != wrong:
                return name
        return None

    def _other_named(self, where: int, done: list[Attribution]) -> str | None:
        """In a paragraph after the last speaker's: the last other person named in the
        narration of the last speaker's paragraph (`刘芳芳…见赵小军出来，问：“……”` /
        `“……”他摇摇头` is 赵小军)."""
        if not done or self.paragraph(done[-1].start) >= self.paragraph(where):
            return None
        paragraph = self.paragraph(done[-1].start)
        start = self.line_starts[paragraph]
        end = self.line_starts[paragraph + 1] if paragraph + 1 < len(self.line_starts) else where
        named = [n for n in self.names.names_in(self._narration(start, end, [])) if n]
        others = [n for n in named if n != done[-1].speaker]
        return others[-1] if others else None

    def _recent_speaker(self, pronoun: str, where: int, done: list[Attribution]) -> str | None:
        """The most recent speaker the pronoun fits (他 is not a woman's, 她 not a man's); in
        a new paragraph, not the one who spoke last."""
        wrong = "f" if pronoun == "他" else "m"
        seen = []
        if done and self.paragraph(done[-1].start) < self.paragraph(where):
            seen.append(done[-1].speaker)
            done = [q for q in done if q.speaker != done[-1].speaker]
        for quote in reversed(done):
            if quote.speaker not in seen:
                seen.append(quote.speaker)
            if len(seen) > _RECENT_SPEAKERS:
                break
        skip = 1 if seen and done and seen[0] not in {q.speaker for q in done} else 0
        for name in seen[skip:_RECENT_SPEAKERS]:
            if not self.uses_she or self.gender.get(name) != wrong:
                return name
        return None


def attribute(text: str, book: NameBook, introduced: list[tuple[str, int]]) -> list[Attribution]:
    """Every quote of `text`, with its speaker where the text tells (None where it does not)."""
    found = quotes(text)
    Attributor(text, book, introduced).attribute(found)
    return found
