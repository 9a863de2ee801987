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
from sessions.models import Message, Role, Session, Status
from sessions.store_schema import (
    SEARCH_TABLE,
    StoreError,
    as_number,
    as_text,
    migrate,
    search_index_ready,
    store_error,
)
from sessions.store_search import StoreSearch


class _Leaf:
    def __repr__(self) -> str:
        return "LEAF"


LEAF: Any = _Leaf()  # add_message(parent_id=LEAF): under the session's leaf, read atomically
BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's write lock


class Store(StoreSearch):
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
        rows = self._query(f"{_SESSIONS} WHERE q.id = ?", (session_id,))
        if not rows:
            raise StoreError(
                _(
                    "There is no session {session_id}; `cosplay sessions list` shows the ids.",
                    session_id=session_id,
                )
            )
        return _session(rows[0])

    def list_sessions(self) -> list[Session]:
        """Most recently used first."""
        return [
            _session(r) for r in self._query(f"{_SESSIONS} ORDER BY q.updated_at DESC, q.id DESC")
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
        """Append a message under `parent_id` and (by default) make it the session's leaf.

        `parent_id=LEAF` appends under the session's current leaf, read in the same write
        transaction: two processes appending to one session chain their messages instead of
        both answering the leaf they read earlier.
        """
        now = time.time()
        with self._transaction() as db:
            if parent_id is LEAF:
                parent_id = self._current_leaf(session_id)
            depth = 0
            if parent_id is not None:
                found = db.execute(
                    "SELECT depth FROM messages WHERE id = ? AND session_id = ?",
                    (parent_id, session_id),
                ).fetchone()
                if found is None:
                    raise StoreError(
                        _(
                            "There is no message {message_id} in session {session_id} to reply to.",
                            message_id=parent_id,
                            session_id=session_id,
                        )
                    )
                depth = found["depth"] + 1
            cur = db.execute(
                "INSERT INTO messages (session_id, parent_id, role, content, status, name,"
                " created_at, meta, depth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    parent_id,
                    Role(role).value,
                    content,
                    Status(status).value,
                    name,
                    now,
                    json.dumps(meta or {}, ensure_ascii=False),
                    depth,
                ),
            )
            message_id = cur.lastrowid
            if make_leaf:
                db.execute(
                    "UPDATE sessions SET leaf_id = ?, updated_at = ? WHERE id = ?",
                    (message_id, now, session_id),
                )
        return self.get_message(message_id)

    def _current_leaf(self, session_id: int) -> int | None:
        rows = self._db.execute(f"{_SESSIONS} WHERE q.id = ?", (session_id,)).fetchall()
        if not rows:
            raise StoreError(
                _(
                    "There is no session {session_id}; `cosplay sessions list` shows the ids.",
                    session_id=session_id,
                )
            )
        return _session(rows[0]).leaf_id

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
        with self._transaction() as db:
            db.execute(
                f"UPDATE messages SET {assignments} WHERE id = ?", (*fields.values(), message_id)
            )
            if content is not None:  # counted for its old text
                db.execute("DELETE FROM token_counts WHERE message_id = ?", (message_id,))

    def get_message(self, message_id: int) -> Message:
        rows = self._query("SELECT * FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise StoreError(_("There is no message {message_id}.", message_id=message_id))
        return _message(rows[0])

    def branch(self, session_id: int, leaf_id: int | None = None) -> list[Message]:
        """The transcript: messages from the root down to the leaf (the session's current one)."""
        return self.branch_tail(session_id, leaf_id)

    def branch_tail(
        self, session_id: int, leaf_id: int | None = None, limit: int | None = None
    ) -> list[Message]:
        """The last `limit` messages (all: None) of the branch ending at `leaf_id` (the
        session's leaf), root side first. Walks up from the leaf only as far as it returns, so
        a screenful of a 10,000-message chat costs what it costs in a short one; the earlier
        part is `branch_tail(session_id, first.parent_id, …)`."""
        if leaf_id is None:
            leaf_id = self.get_session(session_id).leaf_id
        if leaf_id is None or (limit is not None and limit < 1):
            return []
        # The bound also stops a damaged tree (a parent_id cycle) from looping forever: a
        # branch is never longer than the session has messages.
        bound = "?" if limit is not None else "(SELECT COUNT(*) FROM messages WHERE session_id = ?)"
        rows = self._query(
            f"""
            WITH RECURSIVE path(id, parent_id, n) AS (
                SELECT id, parent_id, 1 FROM messages WHERE id = ? AND session_id = ?
                UNION ALL
                SELECT m.id, m.parent_id, path.n + 1
                FROM messages m JOIN path ON m.id = path.parent_id
                WHERE path.n < {bound}
            )
            SELECT messages.* FROM path JOIN messages ON messages.id = path.id
            ORDER BY path.n
            """,
            (leaf_id, session_id, limit if limit is not None else session_id),
        )
        branch, seen = [], set()
        for row in rows:  # leaf first; a cycle ends at its first repeat
            if row["id"] in seen:
                break
            seen.add(row["id"])
            branch.append(_message(row))
        return branch[::-1]

    def branch_below(
        self, session_id: int, message: Message, limit: int, leaf_id: int | None = None
    ) -> list[Message]:
        """The next `limit` messages below `message` on the branch ending at `leaf_id` (the
        session's leaf): the page under a transcript's loaded part. The walk up from the leaf
        reads only ids, and stops at `message`'s depth."""
        if leaf_id is None:
            leaf_id = self.get_session(session_id).leaf_id
        if leaf_id is None or limit < 1:
            return []
        rows = self._query(
            """
            WITH RECURSIVE path(id, parent_id, depth) AS (
                SELECT id, parent_id, depth FROM messages WHERE id = ? AND session_id = ?
                UNION ALL
                SELECT m.id, m.parent_id, m.depth FROM messages m JOIN path ON m.id = path.parent_id
                WHERE path.depth > ? + 1 AND m.depth < path.depth  -- depth falls: no cycle
            )
            SELECT messages.* FROM path JOIN messages ON messages.id = path.id
            WHERE path.depth > ? AND path.depth <= ? ORDER BY path.depth
            """,
            (leaf_id, session_id, message.depth, message.depth, message.depth + limit),
        )
        page = [_message(row) for row in rows]
        return page if page and page[0].parent_id == message.id else []

    def versions(self, messages: list[Message]) -> dict[int, tuple[int, int]]:
        """Each message's place among its versions (siblings, oldest first) and their number:
        {id: (index from 1, count)}, in one query."""
        if not messages:
            return {}
        marks = ", ".join("?" * len(messages))
        rows = self._query(
            f"""
            SELECT m.id,
                (SELECT COUNT(*) FROM messages s WHERE s.session_id = m.session_id
                    AND s.parent_id IS m.parent_id AND s.id <= m.id) AS place,
                (SELECT COUNT(*) FROM messages s WHERE s.session_id = m.session_id
                    AND s.parent_id IS m.parent_id) AS count
            FROM messages m WHERE m.id IN ({marks})
            """,
            tuple(m.id for m in messages),
        )
        return {row["id"]: (row["place"], row["count"]) for row in rows}

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

    def children(self, message_id: int) -> list[Message]:
        """The replies to a message (versions of one another), oldest first."""
        rows = self._query("SELECT * FROM messages WHERE parent_id = ? ORDER BY id", (message_id,))
        return [_message(r) for r in rows]

    def deepest_leaf(self, message_id: int) -> int:
        """Follow the newest child down from a message: where a switched-to branch ends."""
        rows = self._query(
            """
            WITH RECURSIVE down(id, n) AS (
                SELECT ?, 0
                UNION ALL
                SELECT (SELECT MAX(c.id) FROM messages c WHERE c.parent_id = down.id), down.n + 1
                FROM down
                WHERE down.id IS NOT NULL
                    AND down.n <= (SELECT COUNT(*) FROM messages)  -- a damaged tree's cycle
            )
            SELECT id FROM down WHERE id IS NOT NULL ORDER BY n DESC LIMIT 1
            """,
            (message_id,),
        )
        return rows[0]["id"]

    def delete_message(self, message_id: int) -> int | None:
        """Delete a message and everything below it (its replies, their versions…). When the
        session's branch ran through it, the branch moves to the newest version left beside it
        (down to that version's end), else to its parent. Returns the session's leaf."""
        message = self.get_message(message_id)
        with self._transaction() as db:
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))  # cascades down
            leaf = db.execute(
                "SELECT m.id FROM sessions s JOIN messages m ON m.id = s.leaf_id WHERE s.id = ?",
                (message.session_id,),
            ).fetchone()
            if leaf is not None:  # the branch did not run through it
                return leaf["id"]
            sibling = db.execute(
                "SELECT MAX(id) AS id FROM messages WHERE session_id = ? AND parent_id IS ?",
                (message.session_id, message.parent_id),
            ).fetchone()["id"]
            new_leaf = message.parent_id if sibling is None else self.deepest_leaf(sibling)
            db.execute(
                "UPDATE sessions SET leaf_id = ?, updated_at = ? WHERE id = ?",
                (new_leaf, time.time(), message.session_id),
            )
        return new_leaf

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

    def all_messages(self, session_id: int) -> list[Message]:
        rows = self._query("SELECT * FROM messages WHERE session_id = ? ORDER BY id", (session_id,))
        return [_message(r) for r in rows]

    # --- token counts -----------------------------------------------------------

    def token_counts(self, message_ids: list[int], tokenizer: str) -> dict[int, int]:
        """The saved token counts of these messages under `tokenizer` (those counted so far)."""
        if not message_ids:
            return {}
        marks = ", ".join("?" * len(message_ids))
        rows = self._query(
            f"SELECT message_id, tokens FROM token_counts"
            f" WHERE tokenizer = ? AND message_id IN ({marks})",
            (tokenizer, *message_ids),
        )
        return {row["message_id"]: row["tokens"] for row in rows}

    def save_token_counts(self, tokenizer: str, counts: dict[int, int]) -> None:
        """Remember messages' token counts under `tokenizer` (a message deleted meanwhile is
        skipped)."""
        if not counts:
            return
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO token_counts (message_id, tokenizer, tokens)"
                " SELECT id, ?, ? FROM messages WHERE id = ?",
                [(tokenizer, tokens, message_id) for message_id, tokens in counts.items()],
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

    # --- whole-tree import and VACUUM (sessions/chat_import.py, `sessions delete --vacuum`) ---

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


# `leaf_depth` gives the branch's length without walking it.
_SESSIONS = """
    SELECT q.*, (SELECT m.depth FROM messages m WHERE m.id = CASE WHEN q.leaf_id IS NULL
        THEN NULL ELSE COALESCE(q.valid_leaf, q.last_id) END) AS leaf_depth
    FROM (SELECT s.*,
        (SELECT m.id FROM messages m WHERE m.id = s.leaf_id AND m.session_id = s.id)
            AS valid_leaf,
        (SELECT MAX(m.id) FROM messages m WHERE m.session_id = s.id) AS last_id
    FROM sessions s) q"""


def _session(row: sqlite3.Row) -> Session:
    leaf = row["leaf_id"]
    if leaf is not None and row["valid_leaf"] is None:
        leaf = row["last_id"]
    return Session(
        id=row["id"],
        title=as_text(row["title"]),
        created_at=as_number(row["created_at"]),
        updated_at=as_number(row["updated_at"]),
        leaf_id=leaf,
        persona=as_text(row["persona"]),
        settings=_json_object(row["settings"]),
        length=0 if leaf is None or row["leaf_depth"] is None else row["leaf_depth"] + 1,
    )


def _message(row: sqlite3.Row) -> Message:
    """A message row; a damaged or newer one degrades instead of failing: an unknown role or
    status reads as an errored assistant message (kept out of prompts), bad meta as {}."""
    meta = _json_object(row["meta"])
    try:
        status = Status(row["status"])
    except ValueError:
        status, meta["stored_status"] = Status.ERROR, as_text(row["status"])
    try:
        role = Role(row["role"])
    except ValueError:
        role, status, meta["stored_role"] = Role.ASSISTANT, Status.ERROR, as_text(row["role"])
    return Message(
        id=row["id"],
        session_id=row["session_id"],
        parent_id=row["parent_id"],
        role=role,
        content=as_text(row["content"]),
        status=status,
        name=as_text(row["name"]),
        created_at=as_number(row["created_at"]),
        meta=meta,
        depth=row["depth"] if isinstance(row["depth"], int) else 0,
    )


def _json_object(value: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}
