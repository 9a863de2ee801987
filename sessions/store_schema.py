"""What the store's database file is: its schema versions (each migration, run once, in
order, under the write lock), and what SQLite's errors mean to a user (one StoreError
sentence each: only a truly damaged file is called unreadable)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engines.errors import CosplayError
from engines.i18n import _


class StoreError(CosplayError):
    """The database cannot be opened or a record is missing."""


def _migrate_1(db: sqlite3.Connection) -> None:
    for statement in (
        """CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            leaf_id INTEGER,
            persona TEXT NOT NULL DEFAULT '',
            settings TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'complete',
            name TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX messages_session ON messages(session_id)",
        "CREATE INDEX messages_parent ON messages(parent_id)",
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ):
        db.execute(statement)


def _migrate_2(db: sqlite3.Connection) -> None:
    """AUTOINCREMENT ids: a deleted session's (or message's) id is never given out again, so a
    `--session N` kept in a script or a saved KV state file never lands in another chat.
    SQLite cannot alter a key, so both tables are rebuilt (foreign keys are off meanwhile)."""
    session_columns = "id, title, created_at, updated_at, leaf_id, persona, settings"
    message_columns = "id, session_id, parent_id, role, content, status, name, created_at, meta"
    for statement in (
        """CREATE TABLE sessions_v2 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            leaf_id INTEGER,
            persona TEXT NOT NULL DEFAULT '',
            settings TEXT NOT NULL DEFAULT '{}'
        )""",
        f"INSERT INTO sessions_v2 ({session_columns}) SELECT {session_columns} FROM sessions",
        "DROP TABLE sessions",
        "ALTER TABLE sessions_v2 RENAME TO sessions",
        """CREATE TABLE messages_v2 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'complete',
            name TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}'
        )""",
        f"INSERT INTO messages_v2 ({message_columns}) SELECT {message_columns} FROM messages",
        "DROP TABLE messages",
        "ALTER TABLE messages_v2 RENAME TO messages",
        "CREATE INDEX messages_session ON messages(session_id)",
        "CREATE INDEX messages_parent ON messages(parent_id)",
    ):
        db.execute(statement)


def _migrate_3(db: sqlite3.Connection) -> None:
    """Each message's depth in its tree (a root is 0), so a long chat's position and length are
    known without walking it; and token counts per message and tokenizer, so planning a turn
    never re-tokenizes the history it has already counted."""
    db.execute("ALTER TABLE messages ADD COLUMN depth INTEGER NOT NULL DEFAULT 0")
    # Walk down from the roots (a damaged cycle is never reached from one and stays 0).
    db.execute("CREATE TEMP TABLE depths (id INTEGER PRIMARY KEY, depth INTEGER NOT NULL)")
    db.execute(
        """INSERT OR IGNORE INTO depths
        WITH RECURSIVE tree(id, depth) AS (
            SELECT id, 0 FROM messages WHERE parent_id IS NULL
            UNION ALL
            SELECT m.id, tree.depth + 1 FROM messages m JOIN tree ON m.parent_id = tree.id
        ) SELECT id, depth FROM tree"""
    )
    db.execute(
        "UPDATE messages SET depth = (SELECT depth FROM depths WHERE depths.id = messages.id)"
        " WHERE id IN (SELECT id FROM depths)"
    )
    db.execute("DROP TABLE depths")
    db.execute(
        """CREATE TABLE token_counts (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            tokenizer TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            PRIMARY KEY (message_id, tokenizer)
        ) WITHOUT ROWID"""
    )


# --- full-text search (schema 4) ---------------------------------------------------
# An FTS5 index of user and assistant messages' text with the trigram tokenizer (any run of
# 3+ characters matches, Chinese included, case-insensitively). External content: the index
# keeps only the trigrams and reads the text (for snippets) from messages, so nothing is
# stored twice. Triggers keep it in step; a streaming flush re-indexes its reply (about a
# millisecond for a few thousand characters). Without FTS5 or trigram (SQLite < 3.34) there
# is no index and search scans with LIKE. The index is trusted only while all three
# triggers exist: a Cosplay on such an SQLite drops them (else every write would fail with
# "no such module"), and the next one that has FTS5 rebuilds the index from scratch.
SEARCH_TABLE = "messages_fts"
SEARCH_TRIGGERS = ("messages_fts_insert", "messages_fts_delete", "messages_fts_update")
SEARCHED_ROLES = "('user', 'assistant')"


@functools.cache
def fts_available() -> bool:
    """Whether this process's SQLite has FTS5 with the trigram tokenizer."""
    try:
        probe = sqlite3.connect(":memory:")
    except sqlite3.Error:
        return False
    try:
        probe.execute("CREATE VIRTUAL TABLE probe USING fts5(x, tokenize='trigram')")
        return True
    except sqlite3.Error:
        return False
    finally:
        probe.close()


def search_index_ready(db: sqlite3.Connection) -> bool:
    """Whether search may use the FTS index: FTS5 is here and the triggers keep it in step."""
    return fts_available() and _search_triggers(db) == set(SEARCH_TRIGGERS)


def _search_triggers(db: sqlite3.Connection) -> set[str]:
    marks = ", ".join("?" * len(SEARCH_TRIGGERS))
    rows = db.execute(
        f"SELECT name FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})",
        SEARCH_TRIGGERS,
    ).fetchall()
    return {row[0] for row in rows}


def _build_search_index(db: sqlite3.Connection) -> None:
    """(Re)create the index from the messages as they are, and its triggers."""
    for name in SEARCH_TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
    db.execute(f"DROP TABLE IF EXISTS {SEARCH_TABLE}")
    for statement in (
        f"""CREATE VIRTUAL TABLE {SEARCH_TABLE} USING fts5(
            content, content='messages', content_rowid='id', tokenize='trigram'
        )""",
        f"""INSERT INTO {SEARCH_TABLE} (rowid, content)
            SELECT id, content FROM messages WHERE role IN {SEARCHED_ROLES}""",
        # An external-content index forgets a row by being told the exact values it indexed:
        # old.* is that, as long as these triggers have always been there (see above).
        f"""CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
            WHEN new.role IN {SEARCHED_ROLES} BEGIN
                INSERT INTO {SEARCH_TABLE} (rowid, content) VALUES (new.id, new.content);
            END""",
        f"""CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
            WHEN old.role IN {SEARCHED_ROLES} BEGIN
                INSERT INTO {SEARCH_TABLE} ({SEARCH_TABLE}, rowid, content)
                    VALUES ('delete', old.id, old.content);
            END""",
        # Only a change of text (or role, or id) re-indexes: a status or meta update is free.
        f"""CREATE TRIGGER messages_fts_update AFTER UPDATE OF id, role, content ON messages
            WHEN old.content IS NOT new.content OR old.role IS NOT new.role
                OR old.id IS NOT new.id BEGIN
                INSERT INTO {SEARCH_TABLE} ({SEARCH_TABLE}, rowid, content)
                    SELECT 'delete', old.id, old.content WHERE old.role IN {SEARCHED_ROLES};
                INSERT INTO {SEARCH_TABLE} (rowid, content)
                    SELECT new.id, new.content WHERE new.role IN {SEARCHED_ROLES};
            END""",
    ):
        db.execute(statement)


def _migrate_4(db: sqlite3.Connection) -> None:
    """The full-text search index, filled from the existing messages. Without FTS5 the
    version still moves on (search scans instead); sync_search_index builds the index
    whenever a Cosplay with FTS5 opens the file."""
    if fts_available():
        _build_search_index(db)


def sync_search_index(db: sqlite3.Connection) -> None:
    """Run at every open, after the migrations: with FTS5, (re)build an index whose triggers
    are missing (written meanwhile by a Cosplay without FTS5); without it, drop the
    triggers, which would make every write fail. One cheap query when all is in order."""
    if db.execute("PRAGMA user_version").fetchone()[0] < 4:
        return
    wanted = set(SEARCH_TRIGGERS) if fts_available() else set()
    if _search_triggers(db) == wanted:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if _search_triggers(db) != wanted:  # another process may have done it meanwhile
            if wanted:
                _build_search_index(db)
            else:
                for name in SEARCH_TRIGGERS:
                    db.execute(f"DROP TRIGGER IF EXISTS {name}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


# Ordered: MIGRATIONS[i] takes the schema from version i to i + 1. Append only; each runs
# inside one transaction (so use db.execute, not executescript, which commits on its own),
# with foreign keys off (a rebuilt table's DROP would otherwise cascade to its children).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_1,
    _migrate_2,
    _migrate_3,
    _migrate_4,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            _(
                "The database was written by a newer Cosplay (schema {version} > {known}); "
                "upgrade Cosplay to open it.",
                version=version,
                known=SCHEMA_VERSION,
            )
        )
    if version == SCHEMA_VERSION:
        sync_search_index(db)
        return
    db.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: set it before
    try:
        for target in range(version, SCHEMA_VERSION):
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("PRAGMA user_version").fetchone()[0] != target:
                    db.execute("ROLLBACK")  # another process migrated it meanwhile
                    continue
                MIGRATIONS[target](db)
                db.execute(f"PRAGMA user_version = {target + 1}")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
    finally:
        db.execute("PRAGMA foreign_keys=ON")
    sync_search_index(db)


def store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """One sentence for an SQLite error, by its result code: only a damaged file is called
    unreadable (a locked, read-only or full one is healthy and must not be moved aside)."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return StoreError(
            _(
                "The database {path} is locked by another Cosplay process; close it and retry.",
                path=path,
            )
        )
    if code.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return StoreError(
            _(
                "The database {path} is read-only (its file, folder or disk); Cosplay cannot "
                "save to it: check the permissions, or give --home a writable folder.",
                path=path,
            )
        )
    if code == "SQLITE_FULL" or "is full" in text:
        return StoreError(
            _(
                "The disk holding {path} is full; free some space and retry "
                "(what was saved before is intact).",
                path=path,
            )
        )
    if code.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return StoreError(
            _(
                "Cannot open the database {path}; check that its folder exists and is writable.",
                path=path,
            )
        )
    if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or (
        "not a database" in text or "malformed" in text
    ):
        return StoreError(
            _(
                "{path} is not a readable Cosplay database ({problem}); "
                "move it aside and Cosplay will start a new one.",
                path=path,
                problem=exc,
            )
        )
    if code.startswith("SQLITE_IOERR") or "i/o error" in text:
        return StoreError(
            _(
                "Reading or writing the database {path} failed ({problem}); check the disk and "
                "retry.",
                path=path,
                problem=exc,
            )
        )
    return StoreError(_("The database {path} failed ({problem}).", path=path, problem=exc))


# --- reading a stored value: a damaged or foreign row degrades, it never fails ------------------


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def as_number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
