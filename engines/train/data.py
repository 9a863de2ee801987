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

from engines.i18n import N_, _
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
    kind: str = N_("bad record")  # English in the run files, translated where shown


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
        titled = ((N_("trained with warnings"), self.warnings), (N_("skipped"), self.skipped))
        for title, notes in titled:
            if not notes:
                continue
            kinds = ", ".join(
                f"{_(kind)} {n}" for kind, n in Counter(n.kind for n in notes).items()
            )
            lines.append(
                _(
                    "{title}: {count} records ({kinds})",
                    title=_(title),
                    count=len(notes),
                    kinds=kinds,
                )
            )
            lines += [
                "  " + _("line {line}: {problem}", line=note.line, problem=note.problem)
                for note in notes[:limit]
            ]
            if len(notes) > limit:
                lines.append("  " + _("… and {count} more", count=len(notes) - limit))
        return lines


def _keys(record: dict) -> str:
    """A record's keys fit for a one-line message (a key may hold a line break)."""
    keys = sorted(record)
    shown = ", ".join(k if k.isprintable() and len(k) <= 40 else repr(k)[:40] for k in keys[:12])
    return (shown + (", …" if len(keys) > 12 else "")) or _("none")


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
            value = RecordProblem(
                _(
                    "not valid JSON ({problem} at column {column})",
                    problem=exc.msg,
                    column=exc.colno,
                )
            )
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
            raise DatasetError(
                _("{path} ends inside its JSON array; the file is truncated.", path=path)
            )
        if text[pos] == "]":
            return
        line += text.count("\n", counted, pos)  # counts only the new stretch: linear overall
        counted = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                _(
                    "{path}, line {line}: not valid JSON ({problem}); fix the file (a broken "
                    "JSON array cannot be skipped record by record).",
                    path=path,
                    line=exc.lineno,
                    problem=exc.msg,
                )
            ) from None
        except (ValueError, RecursionError) as exc:
            raise DatasetError(
                _(
                    "{path}, line {line}: {problem}; fix the file (a broken JSON array cannot "
                    "be skipped record by record).",
                    path=path,
                    line=line,
                    problem=_unusable(exc),
                )
            ) from None
        yield line, value
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:  # int() refuses over 4300 digits with a bare ValueError
        raise ValueError(_("a number with {count} digits", count=len(text)))
    return int(text)


_DECODER = json.JSONDecoder(parse_int=_parse_int)


def _unusable(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return _("the JSON is nested too deeply")
    return _("the JSON holds {what}, which no record needs", what=exc)


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
            _(
                "Unknown data format '{format}'; use auto or one of: {formats}.",
                format=fmt,
                formats=", ".join(FORMATS),
            )
        )
    if not path.is_file():
        raise DatasetError(
            _("The dataset {path} does not exist; check the path given to --data.", path=path)
        )
    if path.suffix.lower() in TEXT_SUFFIXES and fmt in ("auto", "text"):
        text = read_text(path)
        if not text.strip():
            raise DatasetError(
                _("The text file {path} is empty; give it some text to train on.", path=path)
            )
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
                raise RecordProblem(
                    _(
                        "the record is a JSON {kind}, not an object",
                        kind=type(record).__name__,
                    )
                )
            if detected is None:
                detected = detect_format(record)
                if detected is None:
                    raise RecordProblem(
                        _(
                            "cannot tell the format from its keys ({keys}); pass --format",
                            keys=_keys(record),
                        )
                    )
            sample = PARSERS[detected](record)
        except NothingToTrain as exc:
            skipped.append(BadRecord(line, str(exc), NOTHING_TO_TRAIN))
            continue
        except RecordProblem as exc:
            if not skip_bad:
                raise DatasetError(
                    _(
                        "{path}, line {line}: {problem}; fix the record or pass --skip-bad to "
                        "skip bad records.",
                        path=path,
                        line=line,
                        problem=exc,
                    )
                ) from None
            skipped.append(BadRecord(line, str(exc)))
            continue
        sample.line = line
        samples.append(sample)
        if sample.warning:
            warnings.append(BadRecord(line, sample.warning, sample.warning_kind))
    if not samples:
        if skipped:
            raise DatasetError(
                _(
                    "The dataset {path} holds no usable records ({count} records skipped); "
                    "check the file.",
                    path=path,
                    count=len(skipped),
                )
            )
        raise DatasetError(
            _("The dataset {path} holds no usable records; check the file.", path=path)
        )
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
