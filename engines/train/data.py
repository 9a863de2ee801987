"""Training data: read JSON / JSONL / plain text, detect the format, normalise to chat messages.

Every format becomes a list of `Sample`s: chat messages (role, content and,
for the classics dialogue, the speaker's name) or, for raw text, one document
that the trainer cuts into overlapping windows. A bad record raises a
`DatasetError` naming the file, the line and the problem; with `skip_bad` it
is counted and skipped instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engines.train import DatasetError
from engines.train.textio import read_text

FORMATS = ("cosplay", "alpaca", "sharegpt", "messages", "vicuna", "text")
TEXT_SUFFIXES = (".txt", ".md", ".text")
MAX_NUMBER_DIGITS = 400

# `某某曰：` / `某某笑道：` / `某某说：` at the end of a cosplay context.
_SPEAKER_PREFIX = re.compile(r"([^，。！？；：“”‘’、,.!?;:\s]{1,12}?)(曰|道|说|云|问|答)[：:]\s*$")

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
}


@dataclass
class Sample:
    """One training example: chat messages, or (format `text`) one raw document."""

    messages: list[dict[str, str]] = field(default_factory=list)
    text: str = ""
    speaker: str | None = None
    line: int = 0  # where the record starts in its file (1-based)


@dataclass
class BadRecord:
    line: int
    problem: str


@dataclass
class LoadedData:
    path: Path
    format: str
    samples: list[Sample]
    skipped: list[BadRecord] = field(default_factory=list)

    @property
    def speakers(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for sample in self.samples:
            if sample.speaker:
                counts[sample.speaker] = counts.get(sample.speaker, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    @property
    def main_speaker(self) -> str | None:
        return next(iter(self.speakers), None)


class _BadRecord(Exception):
    """Raised by a record parser; turned into a DatasetError or a skip by the reader."""


def _keys(record: dict) -> str:
    """A record's keys fit for a one-line message (a key may hold a line break)."""
    keys = sorted(record)
    shown = ", ".join(k if k.isprintable() and len(k) <= 40 else repr(k)[:40] for k in keys[:12])
    return (shown + (", …" if len(keys) > 12 else "")) or "none"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- raw records ---------------------------------------------------------------------


def iter_records(path: Path) -> Iterator[tuple[int, object]]:
    """(line, decoded JSON value) for every record of a JSON array or JSONL file.

    A line that is not JSON yields a `_BadRecord` instance as its value, so the
    caller decides whether to stop or skip; a JSON array that does not parse
    cannot be resynchronised and raises at once.
    """
    text = read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _iter_json_array(path, text)
        return
    if stripped.startswith("{") and path.suffix.lower() == ".json":
        try:
            value = _DECODER.decode(text)
        except (ValueError, RecursionError):
            pass  # JSONL that happens to be named .json (or a bad record, reported per line)
        else:
            if isinstance(value, dict) and isinstance(value.get("data"), list):
                for index, item in enumerate(value["data"]):
                    yield index + 1, item
            else:
                yield 1, value
            return
    # JSON Lines are split on "\n" only: str.splitlines would also split inside strings at
    # U+2028/U+2029/U+0085, which valid JSON may hold unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = _DECODER.decode(line)
        except json.JSONDecodeError as exc:
            value = _BadRecord(f"not valid JSON ({exc.msg} at column {exc.colno})")
        except (ValueError, RecursionError) as exc:
            value = _BadRecord(_unusable(exc))
        yield number, value


def _iter_json_array(path: Path, text: str) -> Iterator[tuple[int, object]]:
    decoder = _DECODER
    pos = text.index("[") + 1
    line, counted = 1, 0  # the line number at `counted`, advanced as records are read
    while True:
        pos = _skip_space(text, pos)
        if pos >= len(text):
            raise DatasetError(f"{path} ends inside its JSON array; the file is truncated.")
        if text[pos] == "]":
            return
        line += text.count("\n", counted, pos)  # counts only the new stretch: linear overall
        counted = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); fix the file "
                "(a broken JSON array cannot be skipped record by record)."
            ) from None
        except (ValueError, RecursionError) as exc:
            raise DatasetError(
                f"{path}, line {line}: {_unusable(exc)}; fix the file "
                "(a broken JSON array cannot be skipped record by record)."
            ) from None
        yield line, value
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:  # int() refuses over 4300 digits with a bare ValueError
        raise ValueError(f"a number with {len(text)} digits")
    return int(text)


_DECODER = json.JSONDecoder(parse_int=_parse_int)


def _unusable(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "the JSON is nested too deeply"
    return f"the JSON holds {exc}, which no record needs"


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


# --- format detection ------------------------------------------------------------------


def detect_format(record: object) -> str | None:
    """The format a decoded record looks like, or None."""
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if {"context", "chat"} <= keys:
        return "cosplay"
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if isinstance(record.get("input"), list) and isinstance(record.get("output"), list):
        return "vicuna"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "text" in keys:
        return "text"
    return None


# --- per-format parsers: record -> Sample (or raise _BadRecord) ------------------------------


def _string(record: dict, key: str, *, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _BadRecord(f'"{key}" must be a string' + ("" if key in record else " and is missing"))
    if required and not value.strip():
        raise _BadRecord(f'"{key}" is empty')
    return value


def parse_speaker(context: str) -> tuple[str, str] | None:
    """(narration, speaker) from a context ending in `某某曰：`, else None."""
    from engines.train.extract import clean_speaker

    match = _SPEAKER_PREFIX.search(context)
    if not match:
        return None
    clause = match.group(1).strip()
    # A clause that is not a clean name (`upon孔明`) still ends with one: take its last two characters.
    speaker = clean_speaker(clause) or clause[-2:]
    start = match.start(1) + match.group(1).rfind(speaker) if speaker in clause else match.start()
    return context[:start].rstrip(), speaker


def parse_cosplay(record: dict) -> Sample:
    context = _string(record, "context")
    chat = _string(record, "chat")
    parsed = parse_speaker(context)
    if parsed is None:
        raise _BadRecord('"context" does not end with a speaker prefix such as 曹洪曰：')
    narration, speaker = parsed
    messages = [{"role": "system", "content": narration}] if narration else []
    messages.append({"role": "assistant", "name": speaker, "content": chat.strip()})
    return Sample(messages=messages, speaker=speaker)


def parse_alpaca(record: dict) -> Sample:
    instruction = _string(record, "instruction")
    extra = _string(record, "input", required=False)
    output = _string(record, "output")
    messages = []
    system = _string(record, "system", required=False)
    if system.strip():
        messages.append({"role": "system", "content": system})
    history = record.get("history") or []
    if not isinstance(history, list):
        raise _BadRecord('"history" must be a list of [question, answer] pairs')
    for pair in history:
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(isinstance(x, str) for x in pair)
        ):
            raise _BadRecord('"history" must be a list of [question, answer] pairs')
        messages += [
            {"role": "user", "content": pair[0]},
            {"role": "assistant", "content": pair[1]},
        ]
    user = f"{instruction}\n{extra}" if extra.strip() else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return Sample(messages=messages)


def _check_turns(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise _BadRecord("the conversation has no assistant reply to learn from")
    return messages


def parse_sharegpt(record: dict) -> Sample:
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise _BadRecord('"conversations" must be a non-empty list')
    messages = []
    system = record.get("system")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise _BadRecord(f"conversation turn {index + 1} is not an object")
        speaker = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        role = _SHAREGPT_ROLES.get(str(speaker).lower())
        if role is None:
            raise _BadRecord(f'conversation turn {index + 1} has unknown "from": {speaker!r}')
        if not isinstance(value, str):
            raise _BadRecord(f'conversation turn {index + 1} has no string "value"')
        messages.append({"role": role, "content": value})
    return Sample(messages=_check_turns(messages))


def parse_messages(record: dict) -> Sample:
    turns = record.get("messages")
    if not isinstance(turns, list) or not turns:
        raise _BadRecord('"messages" must be a non-empty list')
    messages = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise _BadRecord(f"message {index + 1} is not an object")
        role, content = turn.get("role"), turn.get("content")
        if role not in ("system", "user", "assistant"):
            raise _BadRecord(
                f"message {index + 1} has role {role!r}; use system, user or assistant"
            )
        if not isinstance(content, str):
            raise _BadRecord(f'message {index + 1} has no string "content"')
        message = {"role": role, "content": content}
        if isinstance(turn.get("name"), str) and turn["name"]:
            message["name"] = turn["name"]
        messages.append(message)
    return Sample(messages=_check_turns(messages))


def parse_vicuna(record: dict) -> Sample:
    inputs, outputs = record.get("input"), record.get("output")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise _BadRecord('"input" and "output" must be lists of turns')
    if len(inputs) != len(outputs) or not inputs:
        raise _BadRecord(
            f'"input" has {len(inputs)} turns but "output" has {len(outputs)}; they must pair up'
        )
    if not all(isinstance(x, str) for x in inputs + outputs):
        raise _BadRecord('every "input" and "output" turn must be a string')
    messages = []
    system = record.get("instruction")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    for question, answer in zip(inputs, outputs, strict=True):
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    return Sample(messages=_check_turns(messages))


def parse_text(record: dict) -> Sample:
    return Sample(text=_string(record, "text"))


PARSERS = {
    "cosplay": parse_cosplay,
    "alpaca": parse_alpaca,
    "sharegpt": parse_sharegpt,
    "messages": parse_messages,
    "vicuna": parse_vicuna,
    "text": parse_text,
}


# --- the reader -----------------------------------------------------------------------------


def load_dataset(path: str | Path, *, fmt: str = "auto", skip_bad: bool = False) -> LoadedData:
    """Read a dataset file; `fmt` forces a format, `skip_bad` counts bad records instead of failing."""
    path = Path(path).expanduser()
    if fmt not in ("auto", *FORMATS):
        raise DatasetError(
            f"Unknown data format {fmt!r}; use auto or one of: {', '.join(FORMATS)}."
        )
    if not path.is_file():
        raise DatasetError(f"The dataset {path} does not exist; check the path given to --data.")
    if path.suffix.lower() in TEXT_SUFFIXES and fmt in ("auto", "text"):
        text = read_text(path)
        if not text.strip():
            raise DatasetError(f"The text file {path} is empty; give it some text to train on.")
        return LoadedData(path, "text", [Sample(text=text, line=1)])

    samples: list[Sample] = []
    skipped: list[BadRecord] = []
    detected = None if fmt == "auto" else fmt
    for line, record in iter_records(path):
        try:
            if isinstance(record, _BadRecord):
                raise record
            if not isinstance(record, dict):
                raise _BadRecord(f"the record is a JSON {type(record).__name__}, not an object")
            if detected is None:
                detected = detect_format(record)
                if detected is None:
                    raise _BadRecord(
                        f"cannot tell the format from its keys ({_keys(record)}); pass --format"
                    )
            sample = PARSERS[detected](record)
        except _BadRecord as exc:
            if not skip_bad:
                raise DatasetError(
                    f"{path}, line {line}: {exc}; fix the record or pass --skip-bad to skip bad records."
                ) from None
            skipped.append(BadRecord(line, str(exc)))
            continue
        sample.line = line
        samples.append(sample)
    if not samples:
        detail = f" ({len(skipped)} bad records skipped)" if skipped else ""
        raise DatasetError(f"The dataset {path} holds no usable records{detail}; check the file.")
    return LoadedData(path, detected or "text", samples, skipped)


def chunk_ids(ids: list[int], size: int, overlap: int) -> list[list[int]]:
    """Cut a long token sequence into windows of `size` tokens that overlap by `overlap`."""
    if size <= 0:
        raise ValueError("size must be positive")
    overlap = max(0, min(overlap, size - 1))
    if len(ids) <= size:
        return [ids] if ids else []
    step = size - overlap
    chunks = []
    for start in range(0, len(ids), step):
        chunks.append(ids[start : start + size])
        if start + size >= len(ids):
            break
    return chunks
