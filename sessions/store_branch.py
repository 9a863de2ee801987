"""Reading the message tree, as a part of the Store (a mixin): a branch from its leaf up, a
page at a time (one query per screenful, however long the chat), the versions of messages
(siblings), the replies to one, and where a switched-to branch ends."""

from __future__ import annotations

from sessions.models import Message
from sessions.store_rows import message_from_row


class StoreBranch:
    """Needs from the Store: `_query()` and `get_session()`."""

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
            branch.append(message_from_row(row))
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
        page = [message_from_row(row) for row in rows]
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
        return [message_from_row(r) for r in rows]

    def children(self, message_id: int) -> list[Message]:
        """The replies to a message (versions of one another), oldest first."""
        rows = self._query("SELECT * FROM messages WHERE parent_id = ? ORDER BY id", (message_id,))
        return [message_from_row(r) for r in rows]

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
