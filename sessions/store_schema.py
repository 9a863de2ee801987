"""What the store's database file is: its schema versions (each migration, run once, in
order, under the write lock), and what SQLite's errors mean to a user (one StoreError
sentence each: only a truly damaged file is called unreadable)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from engines.base import CosplayError


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


# Ordered: MIGRATIONS[i] takes the schema from version i to i + 1. Append only; each runs
# inside one transaction (so use db.execute, not executescript, which commits on its own),
# with foreign keys off (a rebuilt table's DROP would otherwise cascade to its children).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_1, _migrate_2, _migrate_3]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"The database was written by a newer Cosplay (schema {version} > {SCHEMA_VERSION}); "
            "upgrade Cosplay to open it."
        )
    if version == SCHEMA_VERSION:
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


def store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """One sentence for an SQLite error, by its result code: only a damaged file is called
    unreadable (a locked, read-only or full one is healthy and must not be moved aside)."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return StoreError(
            f"The database {path} is locked by another Cosplay process; close it and retry."
        )
    if code.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return StoreError(
            f"The database {path} is read-only (its file, folder or disk); Cosplay cannot "
            "save to it: check the permissions, or give --home a writable folder."
        )
    if code == "SQLITE_FULL" or "is full" in text:
        return StoreError(
            f"The disk holding {path} is full; free some space and retry "
            "(what was saved before is intact)."
        )
    if code.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return StoreError(
            f"Cannot open the database {path}; check that its folder exists and is writable."
        )
    if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or (
        "not a database" in text or "malformed" in text
    ):
        return StoreError(
            f"{path} is not a readable Cosplay database ({exc}); "
            "move it aside and Cosplay will start a new one."
        )
    if code.startswith("SQLITE_IOERR") or "i/o error" in text:
        return StoreError(
            f"Reading or writing the database {path} failed ({exc}); check the disk and retry."
        )
    return StoreError(f"The database {path} failed ({exc}).")
