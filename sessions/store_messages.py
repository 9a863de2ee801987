"""Writing and reading single messages, as a part of the Store (a mixin): append one under a
parent (or under the session's leaf, read in the same write transaction), flush or finish a
growing reply, delete one with everything below it, and the token counts saved per message
and tokenizer (a message's count goes when its text changes)."""

from __future__ import annotations

import json
import time
from typing import Any

from engines.i18n import _
from sessions.models import Message, Role, Status
from sessions.store_rows import message_from_row
from sessions.store_schema import StoreError


class _Leaf:
    def __repr__(self) -> str:
        return "LEAF"


LEAF: Any = _Leaf()  # add_message(parent_id=LEAF): under the session's leaf, read atomically


class StoreMessages:
    """Needs from the Store: `_transaction()`, `_query()`, `get_session()` and `deepest_leaf()`."""

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
                parent_id = self.get_session(session_id).leaf_id
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
        return message_from_row(rows[0])

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

    def all_messages(self, session_id: int) -> list[Message]:
        rows = self._query("SELECT * FROM messages WHERE session_id = ? ORDER BY id", (session_id,))
        return [message_from_row(r) for r in rows]

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
