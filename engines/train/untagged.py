"""Lines with no speech verb of their own: who says them, from the narration around them.

A colon after an action (`同桌的刘芳芳忍不住替他解释：“……”`), an action beat between two
lines of one sentence (`“……”林小雨叹了口气，“……”`), a sentence about someone right after
the line (`“……”赵小军的声音更小了。`) or right before it in its paragraph
(`下课后，周老师把赵小军叫到办公室。“……”`), the same speaker going on after their tag, someone
unnamed who is named next (`座上一人问曰：“……”孔明视之，乃虞翻也。`), and turn-taking for a
line alone in its paragraph. `speakers.Attributor` mixes these in; they use its names,
subjects and pronoun resolution.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from engines.train.clauses import (
    LISTENER,
    QUOTE,
    SILENT,
    Clause,
    clauses_ending_at,
    colon_lead,
    earlier_clauses,
    sentence_after,
    sentence_before,
    strip_leading,
)

if TYPE_CHECKING:
    from engines.train.speakers import Attribution

# `孔明视之，乃虞翻也`, `众视其人，乃零陵人，姓黄，名盖`: who the one who just spoke was.
_NAMED_AFTER = re.compile(
    r"[^。！？“”\n]{0,8}视(?:之|其人)，乃(?:[^。，“”\n]{0,6}?人，)?"
    r"(?:姓(?P<surname>[\u4e00-\u9fff])，?名(?P<given>[\u4e00-\u9fff]{1,2})[，。]"
    r"|(?P<words>[^。，“”\n]{2,8}?)也)"
)


class UntaggedLines:
    def _beat(self, found: list[Attribution], index: int, done: list[Attribution]) -> bool:
        """`“……”林小雨叹了口气，站起身来，“……”`: the one the narration between two quotes of a
        sentence starts with says both."""
        quote = found[index]
        for other, gap_start, gap_end in (
            (found[index - 1] if index else None, None, quote.start),
            (found[index + 1] if index + 1 < len(found) else None, quote.end, None),
        ):
            if other is None:
                continue
            start = other.end if gap_start is None else gap_start
            end = other.start if gap_end is None else gap_end
            gap = self.text[start:end]
            if not gap.strip() or re.search("[。！？!?\n]", gap) or not gap.endswith(("，", ",")):
                continue
            stripped, cut = strip_leading(gap)
            hit = self.names.at(stripped, start + cut)
            if hit:
                speaker = self._person(hit.name, start + cut, done)
                if speaker:
                    quote.speaker, quote.how = speaker, "beat"
                    return True
        return False

    def _colon_lead(self, quote: Attribution, done: list[Attribution]) -> bool:
        """`同桌的刘芳芳忍不住替他解释：“……”`, `他咧嘴笑了一下：“……”`: a colon with no speech
        verb before it introduces the line of the one its sentence is about."""
        lead = colon_lead(self.text, quote.start)
        if not lead or lead[1]:  # `纸条上写着：` introduces writing
            return False
        speaker, _ = self._subject_of(lead[0], done, verb=False)
        if speaker:
            quote.speaker, quote.how = speaker, "colon"
        return bool(speaker)

    def _action_after(self, quote: Attribution, done: list[Attribution]) -> bool:
        """`“……”赵小军的声音更小了。`, `“……”沈明走到床边。`: a sentence after the line in its
        paragraph whose subject is a person (not one who listens: `听了`, `愣`)."""
        after = sentence_after(self.text, quote.end)
        if not after or LISTENER.search(after[0]):
            return False
        sentence, start = after
        first = re.split(r"[，,；;：:]", sentence)[0]
        hit, _, at = self._subject(first, start, one_character=self.classical)
        speaker = self._person(hit.name, at, done) if hit else None
        if speaker:
            quote.speaker, quote.how = speaker, "after"
            quote.tag_start, quote.tag_end = start, start + len(sentence)
        return bool(speaker)

    def _action_before(self, quote: Attribution, done: list[Attribution]) -> bool:
        """`下课后，周老师把赵小军叫到办公室。“……”`: the line right after a sentence of
        narration in its paragraph is the line of the one that sentence is about, unless they
        keep quiet (`沈明张了张嘴，最后什么也没说。`)."""
        lead = sentence_before(self.text, quote.start)
        if not lead or SILENT.search(lead[0]) or not lead[0].strip(" \t　"):
            return False
        speaker, _ = self._subject_of(
            clauses_ending_at(self.text, quote.start - 1), done, verb=False
        )
        if speaker:
            quote.speaker, quote.how = speaker, "lead"
        return bool(speaker)

    def _named_after(self, quote: Attribution, clause: Clause) -> None:
        """`座上忽一人抗声问曰：“……”孔明视之，乃虞翻也。`: someone unnamed asks, and the next
        sentence says who it was (`乃汝南程德枢也`, `乃零陵人，姓黄，名盖`)."""
        earlier, _ = earlier_clauses(self.text, clause.start)
        lead = "".join(text for text, _ in earlier) + clause.text
        if not re.search("一人|有人|一将|一员|一个人", lead):
            return
        match = _NAMED_AFTER.match(self.text, quote.end)
        if not match:
            return
        if match["surname"]:
            name = match["surname"] + match["given"]
        else:
            words = match["words"]
            name = next(
                (
                    hit.name
                    for i in range(len(words) - 1)
                    if (hit := self.names.at(words[i:], quote.end))
                    and not hit.is_pronoun
                    and hit.length == len(words) - i
                ),
                None,
            )
        if name:
            quote.speaker, quote.how = self.names.book.resolve(name), "named after"

    def _continued(self, quote: Attribution, done: list[Attribution]) -> bool:
        """`“……”宝玉笑道。“……”`: the quote right after a speaker's tag is theirs."""
        if not done or done[-1].how != "after":
            return False
        gap = self.text[done[-1].tag_end : quote.start]
        if self.paragraph(done[-1].end) == self.paragraph(quote.start) and re.fullmatch(
            r"[^\n“”「」]{0,3}", gap
        ):
            quote.speaker, quote.how = done[-1].speaker, "continued"
            return True
        return False

    def _turn(self, quote: Attribution, done: list[Attribution]) -> bool:
        """An untagged line opening a paragraph answers the line before it: after two speakers
        talking in turn, it is the one who spoke before the last; after a paragraph of
        narration, the one its last sentence is about (unless they keep quiet); else the one
        other person the narration around the last line names."""
        paragraph = self.paragraph(quote.start)
        if self.text[self.line_starts[paragraph] : quote.start].strip(" \t　") or not done:
            return False
        last = done[-1]
        gap = range(self.paragraph(last.end) + 1, paragraph)
        if any(QUOTE.search(self._paragraph_text(p)) for p in gap):
            return False  # someone nobody named spoke in between
        speaker = (
            self._narrated_subject(gap[-1], done) if gap else self._alternating(done, paragraph)
        ) or self._only_other(last, gap, done)
        if speaker:
            quote.speaker, quote.how = speaker, "turn"
        return bool(speaker)

    def _paragraph_text(self, paragraph: int) -> str:
        end = self.line_starts[paragraph + 1] if paragraph + 1 < len(self.line_starts) else None
        return self.text[self.line_starts[paragraph] : end]

    def _alternating(self, done: list[Attribution], paragraph: int) -> str | None:
        """Two paragraphs of two speakers talking in turn: the one who spoke before the last.
        (Not across narration: `第二天上午，沈青给何丽华打电话。` may begin another scene.)"""
        last, before = done[-1], None
        for earlier in reversed(done[:-1]):
            if self.paragraph(earlier.start) < self.paragraph(last.start):
                before = earlier
                break
        if (
            before is None
            or self.paragraph(last.start) != paragraph - 1
            or self.paragraph(before.start) != paragraph - 2
            or before.speaker == last.speaker
        ):
            return None
        return before.speaker

    def _narrated_subject(self, paragraph: int, done: list[Attribution]) -> str | None:
        """`沈明端着两杯豆浆走过来，递给她一杯。`: who the paragraph's last sentence is about."""
        text = self._paragraph_text(paragraph).rstrip()
        start = self.line_starts[paragraph]
        if not text.endswith(("。", "！", "？", "!", "?")):
            return None
        sentence_start = max(text.rfind(mark, 0, len(text) - 1) for mark in "。！？!?\n") + 1
        if SILENT.search(text[sentence_start:]) or LISTENER.search(text[sentence_start:]):
            return None
        speaker, _ = self._subject_of(
            clauses_ending_at(self.text, start + len(text) - 1), done, verb=False
        )
        return speaker

    def _only_other(self, last: Attribution, gap: range, done: list[Attribution]) -> str | None:
        """The one person other than the last speaker that the narration of the last speaker's
        paragraph, of a narration paragraph right before it and of those since names."""
        paragraphs = [self.paragraph(last.start), *gap]
        earlier = paragraphs[0] - 1
        if earlier >= 0 and not QUOTE.search(self._paragraph_text(earlier)):
            paragraphs.append(earlier)
        named = set()
        for paragraph in paragraphs:
            start = self.line_starts[paragraph]
            end = start + len(self._paragraph_text(paragraph))
            named.update(self.names.names_in(self._narration(start, end, done)))
        others = named - {last.speaker}
        return others.pop() if len(others) == 1 else None
