"""Training data: read JSON / JSONL / plain text and turn every record into a `Sample`.

Every format becomes a list of `Sample`s (engines/train/formats.py parses each record):
chat messages (role, content and, for the classics dialogue, the speaker's name) or, for raw
text, one document that the trainer cuts into overlapping windows. A record that cannot be
read raises a `DatasetError` naming the file, the line and the problem; with `skip_bad` it is
counted and skipped instead. A record with nothing to train is always skipped and counted; one
that trains despite a problem (a cosplay context with no speaker) is counted as a warning.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engines.train import DatasetError
from engines.train.formats import (
    FORMATS,
    NOTHING_TO_TRAIN,
    PARSERS,
    NothingToTrain,
    RecordProblem,
    Sample,
    detect_format,
)
from engines.train.textio import read_text

TEXT_SUFFIXES = (".txt", ".md", ".text")
MAX_NUMBER_DIGITS = 400


@dataclass
class BadRecord:
    """A record skipped (`skipped`) or trained despite a problem (`warnings`), by line."""

    line: int
    problem: str
    kind: str = "bad record"


@dataclass
class LoadedData:
    path: Path
    format: str
    samples: list[Sample]
    skipped: list[BadRecord] = field(default_factory=list)
    warnings: list[BadRecord] = field(default_factory=list)

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

    def problem_counts(self) -> dict[str, dict[str, int]]:
        """{'warnings': {kind: n}, 'skipped': {kind: n}}: what --dry-run and the log report."""
        return {
            "warnings": dict(Counter(note.kind for note in self.warnings)),
            "skipped": dict(Counter(note.kind for note in self.skipped)),
        }

    def problem_lines(self, limit: int = 5) -> list[str]:
        """A summary line per list, then the first `limit` records of each, by line number."""
        lines = []
        for title, notes in (("trained with warnings", self.warnings), ("skipped", self.skipped)):
            if not notes:
                continue
            kinds = ", ".join(f"{kind} {n}" for kind, n in Counter(n.kind for n in notes).items())
            lines.append(f"{title}: {len(notes)} records ({kinds})")
            lines += [f"  line {note.line}: {note.problem}" for note in notes[:limit]]
            if len(notes) > limit:
                lines.append(f"  … and {len(notes) - limit} more")
        return lines


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

    A line that is not JSON yields a `RecordProblem` instance as its value, so the
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
            value = RecordProblem(f"not valid JSON ({exc.msg} at column {exc.colno})")
        except (ValueError, RecursionError) as exc:
            value = RecordProblem(_unusable(exc))
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
    warnings: list[BadRecord] = []
    detected = None if fmt == "auto" else fmt
    for line, record in iter_records(path):
        try:
            if isinstance(record, RecordProblem):
                raise record
            if not isinstance(record, dict):
                raise RecordProblem(f"the record is a JSON {type(record).__name__}, not an object")
            if detected is None:
                detected = detect_format(record)
                if detected is None:
                    raise RecordProblem(
                        f"cannot tell the format from its keys ({_keys(record)}); pass --format"
                    )
            sample = PARSERS[detected](record)
        except NothingToTrain as exc:
            skipped.append(BadRecord(line, str(exc), NOTHING_TO_TRAIN))
            continue
        except RecordProblem as exc:
            if not skip_bad:
                raise DatasetError(
                    f"{path}, line {line}: {exc}; fix the record or pass --skip-bad to skip bad records."
                ) from None
            skipped.append(BadRecord(line, str(exc)))
            continue
        sample.line = line
        samples.append(sample)
        if sample.warning:
            warnings.append(BadRecord(line, sample.warning, sample.warning_kind))
    if not samples:
        detail = f" ({len(skipped)} records skipped)" if skipped else ""
        raise DatasetError(f"The dataset {path} holds no usable records{detail}; check the file.")
    return LoadedData(path, detected or "text", samples, skipped, warnings)


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
