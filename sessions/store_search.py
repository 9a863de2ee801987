"""Full-text search over every session's messages, as a part of the Store (a mixin): words of
three or more characters through the FTS5 trigram index (sessions/store_schema.py keeps it in
step with the messages), shorter ones (曹操, 孔) as LIKE filters on its hits, and a scan where
there is no index; each hit with a one-line snippet and the spans of its matches."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from sessions.models import Role, SearchHit
from sessions.store_schema import (
    SEARCH_TABLE,
    SEARCHED_ROLES,
    as_number,
    as_text,
    search_index_ready,
)


class StoreSearch:
    """Needs from the Store: `_guard()` and `_db`."""

    def search(self, query: str, limit: int = 50, session_id: int | None = None) -> list[SearchHit]:
        """User and assistant messages holding every word of `query` (split at spaces; each a
        literal substring, case-insensitive for English: no operator or wildcard is special),
        newest first, each with a one-line snippet around the match. Words of 3+ characters
        are looked up in the trigram index; shorter ones (曹操, 孔) cannot be, so they filter
        its hits with LIKE, and a query of short words only scans the messages (so does every
        query where SQLite has no FTS5)."""
        words = _search_words(query)
        if not words or limit < 1:
            return []
        long_words = [w for w in words if len(w) >= 3]
        with self._guard():
            if long_words and search_index_ready(self._db):
                short_words = [w for w in words if len(w) < 3]
                return self._search_index(long_words, short_words, limit, session_id)
            return self._search_scan(words, limit, session_id)

    def _search_index(
        self, long_words: list[str], short_words: list[str], limit: int, session_id: int | None
    ) -> list[SearchHit]:
        # Each word a quoted phrase ("" for a quote inside): FTS5 syntax stays literal text.
        phrases = " ".join('"' + word.replace('"', '""') + '"' for word in long_words)
        filters, args = _search_filters(short_words, session_id)
        ids = [
            row[0]
            for row in self._db.execute(
                f"SELECT m.id FROM {SEARCH_TABLE} JOIN messages m ON m.id = {SEARCH_TABLE}.rowid"
                f" WHERE {SEARCH_TABLE} MATCH ?{filters}"
                " ORDER BY m.created_at DESC, m.id DESC LIMIT ?",
                (phrases, *args, limit),
            )
        ]
        if not ids:
            return []
        # Snippets for these rows only. `rowid IN (…)` alone would run the MATCH once per id
        # (50 ids: ~80 ms for common words); a range plus a filter (+) runs it once (~1 ms).
        found = {}
        for batch in _batches(ids):
            for row in self._db.execute(
                f"""SELECT {_HIT_COLUMNS},
                    snippet({SEARCH_TABLE}, 0, ?, ?, '…', {_SNIPPET_TOKENS}) AS snippet
                FROM {SEARCH_TABLE} JOIN messages m ON m.id = {SEARCH_TABLE}.rowid
                    LEFT JOIN sessions s ON s.id = m.session_id
                WHERE {SEARCH_TABLE} MATCH ? AND {SEARCH_TABLE}.rowid BETWEEN ? AND ?
                    AND +{SEARCH_TABLE}.rowid IN ({", ".join("?" * len(batch))})
                """,
                (_OPEN, _CLOSE, phrases, min(batch), max(batch), *batch),
            ):
                found[row["id"]] = row
        hits = []
        for message_id in ids:  # newest first, as the first query ordered them
            if message_id in found:
                row = found[message_id]
                text, spans = _marked_snippet(as_text(row["snippet"]))
                spans += _occurrences(text, short_words, 0, len(text))
                hits.append(_search_hit(row, text, spans))
        return hits

    def _search_scan(self, words: list[str], limit: int, session_id: int | None) -> list[SearchHit]:
        filters, args = _search_filters(words, session_id)
        ids = [
            row[0]
            for row in self._db.execute(
                f"SELECT m.id FROM messages m WHERE m.role IN {SEARCHED_ROLES}{filters}"
                " ORDER BY m.created_at DESC, m.id DESC LIMIT ?",
                (*args, limit),
            )
        ]
        if not ids:
            return []
        found = {}
        for batch in _batches(ids):
            for row in self._db.execute(
                f"""SELECT {_HIT_COLUMNS}, m.content
                FROM messages m LEFT JOIN sessions s ON s.id = m.session_id
                WHERE m.id IN ({", ".join("?" * len(batch))})""",
                batch,
            ):
                found[row["id"]] = row
        hits = []
        for message_id in ids:
            if message_id in found:
                row = found[message_id]
                text, spans = _scan_snippet(as_text(row["content"]), words)
                hits.append(_search_hit(row, text, spans))
        return hits


# --- full-text search: the query's words, the LIKE filters, one-line snippets -------------

_HIT_COLUMNS = "m.id, m.session_id, m.role, m.name, m.created_at, m.depth, s.title"
_SNIPPET_TOKENS = 32  # trigrams: about as many characters of context around the match
_SNIPPET_CHARS = 36  # the scan's own snippets, to look the same
_OPEN, _CLOSE = "\ufdd0", "\ufdd1"  # match markers: Unicode noncharacters, never in text
_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _batches(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    """A long --limit's ids in pieces: SQLite takes at most 32,766 parameters a statement."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _search_words(query: str) -> list[str]:
    """The query's words, split at any space (an ideographic one too), control characters
    dropped, each once."""
    words: list[str] = []
    for word in query.split():
        word = "".join(c for c in word if not _is_control(c))
        if word and word not in words:
            words.append(word)
    return words


def _is_control(char: str) -> bool:
    return char < " " or "\x7f" <= char <= "\x9f" or char in (_OPEN, _CLOSE)


def _search_filters(words: list[str], session_id: int | None) -> tuple[str, list[Any]]:
    """SQL conditions on `m`: each word a LIKE substring (% _ \\ escaped; ASCII letters
    match either case, as the trigram index does), and the session if one is given."""
    filters, args = "", []
    for word in words:
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        filters += " AND m.content LIKE ? ESCAPE '\\'"
        args.append(f"%{escaped}%")
    if session_id is not None:
        filters += " AND m.session_id = ?"
        args.append(session_id)
    return filters, args


def _marked_snippet(snippet: str) -> tuple[str, list[tuple[int, int]]]:
    """FTS5's snippet with its match markers taken out, as text and spans."""
    text, spans, start = [], [], None
    for char in snippet:
        if char == _OPEN:
            start = len(text)
        elif char == _CLOSE:
            if start is not None and start < len(text):
                spans.append((start, len(text)))
            start = None
        else:
            text.append(char)
    return "".join(text), spans


def _occurrences(text: str, words: list[str], begin: int, end: int) -> list[tuple[int, int]]:
    """Where the words occur in text[begin:end] (ASCII letters in either case)."""
    folded = text.translate(_ASCII_FOLD)
    spans = []
    for word in words:
        word = word.translate(_ASCII_FOLD)
        at = folded.find(word, begin, end)
        while at >= 0:
            spans.append((at, at + len(word)))
            at = folded.find(word, at + 1, end)
    return spans


def _scan_snippet(content: str, words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """About _SNIPPET_CHARS characters of `content` centred on the first match of a word."""
    folded = content.translate(_ASCII_FOLD)
    first, length = 0, 0
    for word in words:
        at = folded.find(word.translate(_ASCII_FOLD))
        if at >= 0 and (length == 0 or at < first):
            first, length = at, len(word)
    begin = max(0, first - max(0, _SNIPPET_CHARS - length) // 2)
    end = min(len(content), max(begin + _SNIPPET_CHARS, first + length))
    begin = max(0, min(begin, end - _SNIPPET_CHARS))
    spans = _occurrences(content, words, begin, end)
    prefix = "…" if begin > 0 else ""
    text = prefix + content[begin:end] + ("…" if end < len(content) else "")
    shift = len(prefix) - begin
    return text, [(start + shift, stop + shift) for start, stop in spans]


def _one_line(text: str, spans: list[tuple[int, int]]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The snippet on one line (each run of spaces, line breaks and control characters one
    space, none at the ends) and its match spans, merged and moved to match."""
    out: list[str] = []
    place: list[int] = []  # place[i]: where text[i] went in out
    for char in text:
        if char.isspace() or _is_control(char):
            if not out or out[-1] != " ":
                out.append(" ")
        else:
            out.append(char)
        place.append(len(out) - 1)
    place.append(len(out))
    lead = 1 if out[:1] == [" "] else 0
    line = "".join(out).strip(" ")
    moved = []
    for start, stop in sorted(spans):
        if not 0 <= start < stop <= len(text):
            continue
        start = min(max(place[start] - lead, 0), len(line))
        stop = min(max(place[stop - 1] + 1 - lead, 0), len(line))
        if start >= stop:
            continue
        if moved and start <= moved[-1][1]:
            moved[-1] = (moved[-1][0], max(moved[-1][1], stop))
        else:
            moved.append((start, stop))
    return line, tuple(moved)


def _search_hit(row: sqlite3.Row, text: str, spans: list[tuple[int, int]]) -> SearchHit:
    try:
        role = Role(row["role"])
    except ValueError:
        role = Role.ASSISTANT
    line, highlights = _one_line(text, spans)
    return SearchHit(
        message_id=row["id"],
        session_id=row["session_id"],
        session_title=as_text(row["title"]),
        role=role,
        name=as_text(row["name"]),
        snippet=line,
        created_at=as_number(row["created_at"]),
        depth=row["depth"] if isinstance(row["depth"], int) else 0,
        highlights=highlights,
    )


# A session row with its leaf checked: a leaf that is gone, or that belongs to another
# session (a damaged row), falls back to the session's newest message.
