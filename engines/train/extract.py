"""Dialogue extraction from a novel: quoted speech, who said it, and the narration before it.

Who says each quote is `speakers.py`'s work (speech verbs and adverbs taken off the name,
one-character names, `A问B曰`, courtesy names through the shipped alias table, pronouns);
this module turns the attributed quotes into training records: the preceding narration plus
`某某曰：` as the context, the quoted speech as the chat, under the speaker's full name.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engines.atomic import written_atomically
from engines.i18n import _
from engines.train import DatasetError
from engines.train.aliases import name_book
from engines.train.chinese_script import ScriptWriter, simplified_view
from engines.train.dialogue_turns import FORMATS, exchange_before
from engines.train.dialogue_turns import record as turn_record
from engines.train.speakers import attribute
from engines.train.textio import read_text_and_encoding

_SENTENCE_END = re.compile(r"[。！？!?][”」]?|\n")

_LEADING = (
    "却说",
    "只见",
    "忽见",
    "但见",
    "于是",
    "原来",
    "当下",
    "随后",
    "此时",
    "那",
    "这",
    "便",
    "乃",
    "遂",
    "因",
    "又",
    "即",
    "却",
    "忽",
    "只",
)
_TRAILING = (
    "冷笑",
    "大笑",
    "微笑",
    "笑",
    "叹息",
    "叹",
    "大怒",
    "大喜",
    "大惊",
    "惊",
    "怒",
    "喜",
    "问",
    "答",
    "回",
    "应",
    "低头",
    "点头",
    "连忙",
    "忙",
    "急",
    "便",
    "又",
    "乃",
    "遂",
    "亦",
    "也",
    "因",
    "却",
    "再",
    "复",
    "皆",
    "都",
    "说",
    "言",
    "自",
    "只",
    "曰",
)
_ADDRESSEE = re.compile(r"^(.{2,4}?)(?:对|谓|向|与|问|告|顾|同|跟)(.{1,4})$")
_ADDRESS_VERBS = set("对谓向与问告顾同跟")
# `又问曰`, `便笑道`: verbs and particles only, no name.
_FUNCTION_CHARS = (
    set("又问答笑道曰便乃遂亦也因却再复皆都说言自只忙急回应叹怒喜惊冷大微") | _ADDRESS_VERBS
)
_PRONOUNS = {"我", "你", "他", "她", "它", "吾", "汝", "尔", "众", "人"}


def _name_span(text: str) -> tuple[int, int]:
    """Where the name is in `text` once connectives before it and verbs after it are gone."""
    start, end = 0, len(text)
    changed = True
    while changed and start < end:
        changed = False
        for word in _LEADING:
            if text.startswith(word, start, end) and end - start > len(word) + 1:
                start, changed = start + len(word), True
        for word in _TRAILING:
            if text.endswith(word, start, end) and end - start > len(word) + 1:
                end, changed = end - len(word), True
    return start, end


def clean_speaker(clause: str) -> str | None:
    """The speaker's name in the clause before a speech verb (`宝玉笑` → 宝玉, `寶玉笑` → 寶玉),
    or None. Read in the simplified view, so traditional verbs (`問`, `說`) come off too."""
    text = re.sub(r"[\s　]", "", clause)
    view = simplified_view(text)
    start, end = _name_span(view)
    name = view[start:end]
    if name[:1] in _ADDRESS_VERBS:  # `问孔明曰`: the speaker is someone unnamed, asking 孔明
        return None
    match = _ADDRESSEE.match(name)
    if match:
        name = match.group(1)
    if not 2 <= len(name) <= 4 or name in _PRONOUNS or set(name) <= _FUNCTION_CHARS:
        return None
    return text[start : start + len(name)]


@dataclass
class Utterance:
    speaker: str
    verb: str
    speech: str  # the quoted words, without quotes
    narration: str  # the text before the attribution, trimmed to whole sentences
    start: int  # offset of the quote in the text
    addressee: str | None = None  # `玄德问孔明曰` → 诸葛亮
    end: int = 0  # after the quote's closing mark

    def record(self) -> dict[str, str]:
        record = {
            "context": f"{self.narration}{self.speaker}{self.verb or '曰'}：",
            "chat": f"“{self.speech}”",
            "speaker": self.speaker,
        }
        if self.addressee:
            record["addressee"] = self.addressee
        return record


@dataclass
class ExtractReport:
    counts: Counter = field(default_factory=Counter)  # every speaker found
    written: int = 0
    encoding: str = ""
    samples: dict[str, list[str]] = field(default_factory=dict)  # speaker → a few lines
    dropped: Counter = field(default_factory=Counter)  # speakers below --min-lines
    unanswered: int = 0  # --dialogue-turns: lines with no other speaker's line before them
    speaker: str | None = None  # --speaker as the full name the records use


def _narration(text: str, end: int, max_chars: int) -> str:
    start = max(0, end - max_chars)
    piece = text[start:end]
    if start > 0:  # begin at a sentence start, not mid-sentence
        cut = _SENTENCE_END.search(piece)
        piece = piece[cut.end() :] if cut and cut.end() < len(piece) else piece
    lines = [line.strip(" \t　") for line in piece.split("\n")]
    return "".join(line for line in lines if line).lstrip("”」，。！？；：,.!?;:")


def extract_dialogue(
    text: str,
    *,
    speaker: str | None = None,
    aliases: Iterable[str] = (),
    context_chars: int = 150,
    alias_table: dict[str, list[str]] | None = None,
) -> list[Utterance]:
    """Every quote of `text` whose speaker the text tells, under the speaker's full name.

    `aliases` are other names of `speaker`; `alias_table` maps more full names to their other
    names (`--alias-file`); the Four Classics' table applies by itself."""
    return _extract(text, speaker, aliases, context_chars, alias_table)[0]


def _extract(
    text: str,
    speaker: str | None,
    aliases: Iterable[str],
    context_chars: int,
    alias_table: dict[str, list[str]] | None,
) -> tuple[list[Utterance], str | None]:
    """The utterances, and `speaker` as the full name they are reported under.

    Names are found in the text's simplified view (`chinese_script`), so 魯肅 is 鲁肃; a
    traditional text's speakers are written in traditional characters, its words as they are."""
    view = simplified_view(text)
    written = ScriptWriter(text, view)
    table: dict[str, list[str]] = {}
    for full, names in (alias_table or {}).items():
        table.setdefault(simplified_view(full), []).extend(map(simplified_view, names))
    if speaker:
        speaker = simplified_view(speaker)
        table.setdefault(speaker, []).extend(simplified_view(a.strip()) for a in aliases)
    book, introduced = name_book(view, user_aliases=table)
    found = []
    for quote in attribute(view, book, introduced):
        speech = text[quote.start + 1 : quote.end - 1].strip()
        if not quote.speaker or not speech:
            continue
        narration_end = quote.tag_start if quote.how == "before" else quote.start
        verb = text[quote.tag_end - len(quote.verb) : quote.tag_end] if quote.verb else ""
        found.append(
            Utterance(
                written(quote.speaker),
                verb,
                speech,
                _narration(text, narration_end, context_chars),
                quote.start,
                written(quote.addressee),
                quote.end,
            )
        )
    return found, written(book.resolve(speaker)) if speaker else None


def extract_file(
    novel: str | Path,
    out: str | Path,
    *,
    speaker: str | None = None,
    aliases: Iterable[str] = (),
    alias_table: dict[str, list[str]] | None = None,
    context_chars: int = 150,
    min_chars: int = 2,
    min_lines: int = 0,
    dialogue_turns: bool = False,
    fmt: str = "cosplay",
    samples: int = 3,
) -> ExtractReport:
    """Write records for `speaker` (all speakers with `min_lines` lines or more when None) to
    the JSONL file `out`, in `fmt` (dialogue_turns.FORMATS)."""
    novel, out = Path(novel).expanduser(), Path(out).expanduser()
    if not novel.is_file():
        raise DatasetError(_("The novel {novel} does not exist; check the path.", novel=novel))
    if out.exists() and out.resolve() == novel.resolve():
        raise DatasetError(
            _("--out {out} is the novel itself; write the records to another file.", out=out)
        )
    if out.is_dir():
        raise DatasetError(_("--out {out} is a directory; give a .jsonl file name.", out=out))
    if fmt not in FORMATS:
        raise DatasetError(
            _(
                "Unknown format '{format}'; choose one of {formats}.",
                format=fmt,
                formats=", ".join(FORMATS),
            )
        )
    text, encoding = read_text_and_encoding(novel)
    utterances, speaker = _extract(text, speaker, aliases, context_chars, alias_table)
    report = ExtractReport(Counter(u.speaker for u in utterances), encoding=encoding)
    for utterance in utterances:
        lines = report.samples.setdefault(utterance.speaker, [])
        if len(lines) < samples:
            lines.append(utterance.speech)
    kept = {name for name, count in report.counts.items() if count >= min_lines}
    report.dropped = Counter({n: c for n, c in report.counts.items() if n not in kept})
    if speaker and speaker not in report.counts:
        seen = ", ".join(name for name, _count in report.counts.most_common(8)) or _("nobody")
        raise DatasetError(
            _(
                "No quoted speech by {speaker} was found in {novel} (speakers found: {seen}); "
                "check the name or add --alias.",
                speaker=speaker,
                novel=novel,
                seen=seen,
            )
        )
    if speaker and speaker not in kept:
        raise DatasetError(
            _(
                "{speaker} has {count} lines in {novel}, fewer than --min-lines {min_lines}; "
                "lower --min-lines.",
                speaker=speaker,
                count=report.counts[speaker],
                novel=novel,
                min_lines=min_lines,
            )
        )
    records = []
    for index, utterance in enumerate(utterances):
        if utterance.speaker not in kept or (speaker and utterance.speaker != speaker):
            continue
        if len(utterance.speech) < min_chars:
            continue
        history = exchange_before(utterances, index) if dialogue_turns else []
        if dialogue_turns and not history:
            report.unanswered += 1
            continue
        records.append(turn_record(utterance, history, fmt))
    with written_atomically(out) as partial, open(partial, "w", encoding="utf-8") as handle:
        for item in records:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    report.written = len(records)
    report.speaker = speaker
    return report
