"""Dialogue extraction from a novel: quoted speech, who said it, and the narration before it.

Two attributions are recognised, as in the classics and modern fiction:

* speaker first — `曹洪曰：“……”`, `宝玉笑道：“……”`, `他说：“……”`;
* speaker after — `“……”宝玉笑道。`, `“……”孔明曰。`

Each utterance becomes a `cosplay`-format record: the preceding narration plus
`某某曰：` as the context, the quoted speech as the chat. Aliases map onto one
canonical name (`--speaker 诸葛亮 --alias 孔明,卧龙`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engines.atomic import written_atomically
from engines.train import DatasetError
from engines.train.textio import read_text

_QUOTE = re.compile(r"“([^“”]+)”|「([^「」]+)」")
_BOUNDARY = "。！？；，：”」\n!?;,:"
_VERB = r"(曰|道|说|云)"
_BEFORE = re.compile(rf"([^{_BOUNDARY}“「]{{1,16}}?){_VERB}[：:]\s*$")
_AFTER = re.compile(rf"^([^{_BOUNDARY}“「]{{1,16}}?){_VERB}(?=[。，！？；,.!?;\s]|$)")
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


def _strip_clause(clause: str) -> str:
    name = re.sub(r"[\s　]", "", clause)
    changed = True
    while changed and name:
        changed = False
        for word in _LEADING:
            if name.startswith(word) and len(name) > len(word) + 1:
                name, changed = name[len(word) :], True
        for word in _TRAILING:
            if name.endswith(word) and len(name) > len(word) + 1:
                name, changed = name[: -len(word)], True
    return name


def clean_speaker(clause: str) -> str | None:
    """The speaker's name in the clause before a speech verb (`宝玉笑` → 宝玉), or None."""
    name = _strip_clause(clause)
    if name[:1] in _ADDRESS_VERBS:  # `问孔明曰`: the speaker is someone unnamed, asking 孔明
        return None
    match = _ADDRESSEE.match(name)
    if match:
        name = match.group(1)
    if not 2 <= len(name) <= 4 or name in _PRONOUNS or set(name) <= _FUNCTION_CHARS:
        return None
    return name


@dataclass
class Utterance:
    speaker: str
    verb: str
    speech: str  # the quoted words, without quotes
    narration: str  # the text before the attribution, trimmed to whole sentences
    start: int  # offset of the quote in the text

    def record(self) -> dict[str, str]:
        return {
            "context": f"{self.narration}{self.speaker}{self.verb}：",
            "chat": f"“{self.speech}”",
            "speaker": self.speaker,
        }


@dataclass
class ExtractReport:
    counts: Counter = field(default_factory=Counter)  # every speaker found
    written: int = 0
    encoding_note: str = ""


def _alias_map(speaker: str | None, aliases: Iterable[str]) -> dict[str, str]:
    if not speaker:
        return {}
    names = {speaker: speaker}
    for alias in aliases:
        alias = alias.strip()
        if alias:
            names[alias] = speaker
    return names


def _known_name(clause: str, names: dict[str, str]) -> str | None:
    """The canonical name when the clause starts with a known name or alias (`孔明笑` → 诸葛亮)."""
    stripped = _strip_clause(clause)
    for alias in sorted(names, key=len, reverse=True):
        if stripped.startswith(alias):
            return names[alias]
    return None


def _narration(text: str, end: int, max_chars: int) -> str:
    start = max(0, end - max_chars)
    piece = text[start:end]
    if start > 0:  # begin at a sentence start, not mid-sentence
        cut = _SENTENCE_END.search(piece)
        piece = piece[cut.end() :] if cut and cut.end() < len(piece) else piece
    lines = [line.strip(" \t　") for line in piece.split("\n")]
    return "".join(line for line in lines if line).lstrip("”」，。！？；：,.!?;:")


def extract_dialogue(
    text: str, *, speaker: str | None = None, aliases: Iterable[str] = (), context_chars: int = 150
) -> list[Utterance]:
    """Every attributed quote in `text`; aliases of `speaker` are reported under `speaker`."""
    names = _alias_map(speaker, aliases)
    found: list[Utterance] = []
    for quote in _QUOTE.finditer(text):
        speech = (quote.group(1) or quote.group(2) or "").strip()
        if not speech:
            continue
        before = _BEFORE.search(text, max(0, quote.start() - 24), quote.start())
        if before:
            clause, verb, clause_start = before.group(1), before.group(2), before.start()
        else:
            after = _AFTER.match(text[quote.end() : quote.end() + 24])
            if not after:
                continue
            clause, verb, clause_start = after.group(1), after.group(2), quote.start()
        name = _known_name(clause, names) or clean_speaker(clause)
        if not name:
            continue
        found.append(
            Utterance(
                name, verb, speech, _narration(text, clause_start, context_chars), quote.start()
            )
        )
    return found


def extract_file(
    novel: str | Path,
    out: str | Path,
    *,
    speaker: str | None = None,
    aliases: Iterable[str] = (),
    context_chars: int = 150,
    min_chars: int = 2,
) -> ExtractReport:
    """Write `cosplay` records for `speaker` (all speakers when None) to the JSONL file `out`."""
    novel, out = Path(novel).expanduser(), Path(out).expanduser()
    if not novel.is_file():
        raise DatasetError(f"The novel {novel} does not exist; check the path.")
    if out.exists() and out.resolve() == novel.resolve():
        raise DatasetError(f"--out {out} is the novel itself; write the records to another file.")
    if out.is_dir():
        raise DatasetError(f"--out {out} is a directory; give a .jsonl file name.")
    utterances = extract_dialogue(
        read_text(novel), speaker=speaker, aliases=aliases, context_chars=context_chars
    )
    report = ExtractReport(Counter(u.speaker for u in utterances))
    chosen = [
        u
        for u in utterances
        if (speaker is None or u.speaker == speaker) and len(u.speech) >= min_chars
    ]
    if speaker and not chosen:
        seen = ", ".join(name for name, _ in report.counts.most_common(8)) or "nobody"
        raise DatasetError(
            f"No quoted speech by {speaker} was found in {novel} (speakers found: {seen}); "
            "check the name or add --alias."
        )
    with written_atomically(out) as partial, open(partial, "w", encoding="utf-8") as handle:
        for utterance in chosen:
            handle.write(json.dumps(utterance.record(), ensure_ascii=False) + "\n")
    report.written = len(chosen)
    return report
