"""SQLite store for sessions and their message trees.

Every write commits at once (autocommit, WAL), so a crash or `kill -9` loses
nothing that was written. Messages form a tree: regenerating or editing adds a
sibling, and a session points at its current leaf, so no reply is overwritten.
One connection is shared by the UI thread and the generation worker, guarded
by a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engines.base import CosplayError
from sessions.kvstates import state_path
from sessions.models import Message, Role, Session, Status


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


# Ordered: MIGRATIONS[i] takes the schema from version i to i + 1. Append only; each runs
# inside one transaction (so use db.execute, not executescript, which commits on its own).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_1]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"The database was written by a newer Cosplay (schema {version} > {SCHEMA_VERSION}); "
            "upgrade Cosplay to open it."
        )
    for target in range(version, SCHEMA_VERSION):
        db.execute("BEGIN")
        try:
            MIGRATIONS[target](db)
            db.execute(f"PRAGMA user_version = {target + 1}")
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            raise


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            migrate(self._db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a readable Cosplay database ({exc}); "
                "move it aside and Cosplay will start a new one."
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- sessions -------------------------------------------------------------

    def create_session(
        self, title: str = "New chat", persona: str = "", settings: dict | None = None
    ) -> Session:
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO sessions (title, created_at, updated_at, persona, settings)"
                " VALUES (?, ?, ?, ?, ?)",
                (title, now, now, persona, json.dumps(settings or {}, ensure_ascii=False)),
            )
            return self.get_session(cur.lastrowid)

    def get_session(self, session_id: int) -> Session:
        rows = self._query("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            raise StoreError(
                f"There is no session {session_id}; `cosplay sessions list` shows the ids."
            )
        return _session(rows[0])

    def list_sessions(self) -> list[Session]:
        """Most recently used first."""
        return [
            _session(r)
            for r in self._query("SELECT * FROM sessions ORDER BY updated_at DESC, id DESC")
        ]

    def update_session(self, session_id: int, **fields: Any) -> Session:
        allowed = {"title", "leaf_id", "persona", "settings"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update session fields {sorted(unknown)}")
        if "settings" in fields:
            fields["settings"] = json.dumps(fields["settings"], ensure_ascii=False)
        fields["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(
                f"UPDATE sessions SET {assignments} WHERE id = ?", (*fields.values(), session_id)
            )
        return self.get_session(session_id)

    def delete_session(self, session_id: int) -> None:
        self.get_session(session_id)
        with self._transaction() as db:
            db.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
            db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        state_path(self.path.parent, session_id).unlink(missing_ok=True)  # its saved KV cache

    # --- messages ---------------------------------------------------------------

    def add_message(
        self,
        session_id: int,
        role: Role | str,
        content: str,
        *,
        parent_id: int | None = None,
        status: Status | str = Status.COMPLETE,
        name: str = "",
        meta: dict | None = None,
        make_leaf: bool = True,
    ) -> Message:
        """Append a message under `parent_id` and (by default) make it the session's leaf."""
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO messages (session_id, parent_id, role, content, status, name,"
                " created_at, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    parent_id,
                    Role(role).value,
                    content,
                    Status(status).value,
                    name,
                    now,
                    json.dumps(meta or {}, ensure_ascii=False),
                ),
            )
            message_id = cur.lastrowid
            if make_leaf:
                db.execute(
                    "UPDATE sessions SET leaf_id = ?, updated_at = ? WHERE id = ?",
                    (message_id, now, session_id),
                )
        return self.get_message(message_id)

    def update_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        status: Status | str | None = None,
        meta: dict | None = None,
    ) -> None:
        """Flush a growing reply, or finish it with its status and metadata."""
        fields: dict[str, Any] = {}
        if content is not None:
            fields["content"] = content
        if status is not None:
            fields["status"] = Status(status).value
        if meta is not None:
            fields["meta"] = json.dumps(meta, ensure_ascii=False)
        if not fields:
            return
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(
                f"UPDATE messages SET {assignments} WHERE id = ?", (*fields.values(), message_id)
            )

    def get_message(self, message_id: int) -> Message:
        rows = self._query("SELECT * FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise StoreError(f"There is no message {message_id}.")
        return _message(rows[0])

    def branch(self, session_id: int, leaf_id: int | None = None) -> list[Message]:
        """The transcript: messages from the root down to the leaf (the session's current one)."""
        if leaf_id is None:
            leaf_id = self.get_session(session_id).leaf_id
        if leaf_id is None:
            return []
        # The depth bound stops a damaged tree (a parent_id cycle) from looping forever: a
        # branch is never longer than the session has messages.
        rows = self._query(
            """
            WITH RECURSIVE path(id, parent_id, depth) AS (
                SELECT id, parent_id, 0 FROM messages WHERE id = ? AND session_id = ?
                UNION ALL
                SELECT m.id, m.parent_id, path.depth + 1
                FROM messages m JOIN path ON m.id = path.parent_id
                WHERE path.depth < (SELECT COUNT(*) FROM messages WHERE session_id = ?)
            )
            SELECT messages.* FROM path JOIN messages ON messages.id = path.id
            ORDER BY path.depth
            """,
            (leaf_id, session_id, session_id),
        )
        branch, seen = [], set()
        for row in rows:  # leaf first; a cycle ends at its first repeat
            if row["id"] in seen:
                break
            seen.add(row["id"])
            branch.append(_message(row))
        return branch[::-1]

    def siblings(self, message: Message) -> list[Message]:
        """All versions of this message (same parent, same session), oldest first."""
        if message.parent_id is None:
            rows = self._query(
                "SELECT * FROM messages WHERE session_id = ? AND parent_id IS NULL ORDER BY id",
                (message.session_id,),
            )
        else:
            rows = self._query(
                "SELECT * FROM messages WHERE parent_id = ? ORDER BY id", (message.parent_id,)
            )
        return [_message(r) for r in rows]

    def deepest_leaf(self, message_id: int) -> int:
        """Follow the newest child down from a message: where a switched-to branch ends."""
        current, seen = message_id, {message_id}
        while True:
            rows = self._query(
                "SELECT id FROM messages WHERE parent_id = ? ORDER BY id DESC LIMIT 1", (current,)
            )
            if not rows or rows[0]["id"] in seen:  # a leaf, or a damaged tree's cycle
                return current
            current = rows[0]["id"]
            seen.add(current)

    def all_messages(self, session_id: int) -> list[Message]:
        rows = self._query("SELECT * FROM messages WHERE session_id = ? ORDER BY id", (session_id,))
        return [_message(r) for r in rows]

    # --- settings ---------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value, ensure_ascii=False)),
            )


def _session(row: sqlite3.Row) -> Session:
    return Session(
        id=row["id"],
        title=row["title"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        leaf_id=row["leaf_id"],
        persona=row["persona"],
        settings=json.loads(row["settings"]),
    )


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        session_id=row["session_id"],
        parent_id=row["parent_id"],
        role=Role(row["role"]),
        content=row["content"],
        status=Status(row["status"]),
        name=row["name"],
        created_at=row["created_at"],
        meta=json.loads(row["meta"]),
    )
