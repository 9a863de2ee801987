"""SQLite store for sessions and their message trees.

Every write commits at once (autocommit, WAL), so a crash or `kill -9` loses
nothing that was written. Messages form a tree: regenerating or editing adds a
sibling, and a session points at its current leaf, so no reply is overwritten.
One connection is shared by the UI thread and the generation worker, guarded
by a lock. Several processes may share the file (two `cosplay ask` loops): every
write transaction takes SQLite's write lock first (BEGIN IMMEDIATE), so
appending to the current leaf (`parent_id=LEAF`) reads and moves the leaf
atomically and turns chain instead of forking.

SQLite's errors become one StoreError sentence each: locked by another process,
read-only, disk full, cannot open, and only a truly damaged file is "not a
readable Cosplay database". A damaged or newer row degrades alone (an unknown
status reads as error, bad JSON as {}); it never stops list/show/branch.

The Store is one class made of parts: sessions, settings, whole trees and the connection here;
single messages and token counts in sessions/store_messages.py; reading a branch, versions and
replies in sessions/store_branch.py; search in sessions/store_search.py; rows read back as
Session and Message in sessions/store_rows.py; the schema and its migrations, and what
SQLite's errors mean, in sessions/store_schema.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engines.i18n import _
from sessions.kvstates import state_path
from sessions.models import Role, Session, Status
from sessions.store_branch import StoreBranch
from sessions.store_messages import LEAF, StoreMessages
from sessions.store_rows import SESSIONS_QUERY, session_from_row
from sessions.store_schema import (
    SEARCH_TABLE,
    StoreError,
    migrate,
    search_index_ready,
    store_error,
)
from sessions.store_search import StoreSearch

__all__ = ["BUSY_TIMEOUT", "LEAF", "Store", "StoreError"]

BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's write lock


class Store(StoreMessages, StoreBranch, StoreSearch):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                _(
                    "Cannot create the folder for the database {path} ({problem}); check the "
                    "path and its permissions.",
                    path=self.path,
                    problem=exc.strerror or exc,
                )
            ) from None
        db = None
        try:
            db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            migrate(db)
        except BaseException as exc:
            if db is not None:
                db.close()
            if isinstance(exc, sqlite3.Error):
                raise store_error(self.path, exc) from None
            raise
        self._db = db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold the connection's lock; SQLite's errors become one StoreError sentence."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise store_error(self.path, exc) from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; it takes the write lock at once, so what it reads stays true
        until it commits (another process's writes wait, up to BUSY_TIMEOUT)."""
        with self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._guard():
            return self._db.execute(sql, args).fetchall()

    def _execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._guard():
            return self._db.execute(sql, args)

    # --- sessions -------------------------------------------------------------

    def create_session(
        self, title: str = "New chat", persona: str = "", settings: dict | None = None
    ) -> Session:
        now = time.time()
        cur = self._execute(
            "INSERT INTO sessions (title, created_at, updated_at, persona, settings)"
            " VALUES (?, ?, ?, ?, ?)",
            (title, now, now, persona, json.dumps(settings or {}, ensure_ascii=False)),
        )
        return self.get_session(cur.lastrowid)

    def get_session(self, session_id: int) -> Session:
        rows = self._query(f"{SESSIONS_QUERY} WHERE q.id = ?", (session_id,))
        if not rows:
            raise StoreError(
                _(
                    "There is no session {session_id}; `cosplay sessions list` shows the ids.",
                    session_id=session_id,
                )
            )
        return session_from_row(rows[0])

    def list_sessions(self) -> list[Session]:
        """Most recently used first."""
        return [
            session_from_row(r)
            for r in self._query(f"{SESSIONS_QUERY} ORDER BY q.updated_at DESC, q.id DESC")
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
        self._execute(
            f"UPDATE sessions SET {assignments} WHERE id = ?", (*fields.values(), session_id)
        )
        return self.get_session(session_id)

    def delete_session(self, session_id: int) -> None:
        self.get_session(session_id)
        with self._transaction() as db:
            db.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
            db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        state_path(self.path.parent, session_id).unlink(missing_ok=True)  # its saved KV cache

    def fork_session(self, message_id: int, title: str) -> Session:
        """A new session holding a copy of the branch from the root down to `message_id` (its
        persona and settings too): a chat to take elsewhere, leaving the original as it is."""
        message = self.get_message(message_id)
        source = self.get_session(message.session_id)
        path = self.branch_tail(source.id, message_id)
        copies = [
            {
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "name": m.name,
                "meta": m.meta,
                "created_at": m.created_at,
                "parent": index - 1 if index else None,
            }
            for index, m in enumerate(path)
        ]
        return self.insert_tree(
            title=title, persona=source.persona, settings=source.settings, messages=copies
        )

    # --- settings ---------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        if not rows:
            return default
        try:
            return json.loads(rows[0]["value"])
        except (TypeError, ValueError, RecursionError):  # a damaged value reads as unset
            return default

    def set_setting(self, key: str, value: Any) -> None:
        self._execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, ensure_ascii=False)),
        )

    # --- whole-tree import and VACUUM (sessions/chat_import/, `sessions delete --vacuum`) ---

    def insert_tree(
        self,
        *,
        title: str,
        persona: str = "",
        settings: dict | None = None,
        created_at: float | None = None,
        messages: list[dict[str, Any]],
        leaf: int | None = None,
    ) -> Session:
        """A new session holding a whole message tree, written in ONE transaction: any failure
        leaves no session and no message behind. Each message is a dict with role, content and
        optionally status, name, meta, created_at, and `parent`: the index in `messages` of an
        earlier message (None: a root). `leaf` is the index of the session's leaf (None: the
        last message)."""
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO sessions (title, created_at, updated_at, persona, settings)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    title,
                    now if created_at is None else created_at,
                    now,
                    persona,
                    json.dumps(settings or {}, ensure_ascii=False),
                ),
            )
            session_id = cur.lastrowid
            ids: list[int] = []
            depths: list[int] = []
            for index, message in enumerate(messages):
                parent = message.get("parent")
                if parent is not None and not (isinstance(parent, int) and 0 <= parent < index):
                    raise ValueError(f"message {index}: parent {parent!r} is not an earlier one")
                depth = 0 if parent is None else depths[parent] + 1
                cur = db.execute(
                    "INSERT INTO messages (session_id, parent_id, role, content, status, name,"
                    " created_at, meta, depth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        session_id,
                        None if parent is None else ids[parent],
                        Role(message["role"]).value,
                        message["content"],
                        Status(message.get("status", Status.COMPLETE)).value,
                        message.get("name", ""),
                        message.get("created_at", now),
                        json.dumps(message.get("meta") or {}, ensure_ascii=False),
                        depth,
                    ),
                )
                ids.append(cur.lastrowid)
                depths.append(depth)
            if ids:
                leaf_id = ids[-1 if leaf is None else leaf]
                db.execute("UPDATE sessions SET leaf_id = ? WHERE id = ?", (leaf_id, session_id))
        return self.get_session(session_id)

    def vacuum(self) -> None:
        """Leave no deleted row recoverable from the files: merge full-text indexes (an FTS5
        index keeps deleted text until its segments merge), rebuild the database (VACUUM), and
        empty the write-ahead log, which still holds pages written before the delete."""
        with self._guard():
            if search_index_ready(self._db):  # (without FTS5 its table cannot be touched)
                self._db.execute(f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}) VALUES ('optimize')")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
