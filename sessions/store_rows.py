"""Rows of the store's tables read back as Session and Message: a damaged or newer row degrades
alone (an unknown status reads as error, bad JSON as {}) instead of stopping list/show/branch."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from sessions.models import Message, Role, Session, Status
from sessions.store_schema import as_number, as_text

# Every session column, plus `valid_leaf` (its leaf, when that message is still its own),
# `last_id` (its newest message) and `leaf_depth`, which gives the branch's length without
# walking it. Callers add `WHERE q.id = ?` or an ORDER BY.
SESSIONS_QUERY = """
    SELECT q.*, (SELECT m.depth FROM messages m WHERE m.id = CASE WHEN q.leaf_id IS NULL
        THEN NULL ELSE COALESCE(q.valid_leaf, q.last_id) END) AS leaf_depth
    FROM (SELECT s.*,
        (SELECT m.id FROM messages m WHERE m.id = s.leaf_id AND m.session_id = s.id)
            AS valid_leaf,
        (SELECT MAX(m.id) FROM messages m WHERE m.session_id = s.id) AS last_id
    FROM sessions s) q"""


def session_from_row(row: sqlite3.Row) -> Session:
    """A row of SESSIONS_QUERY; a leaf that is gone (or another session's) reads as the
    session's newest message."""
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
        settings=json_object(row["settings"]),
        length=0 if leaf is None or row["leaf_depth"] is None else row["leaf_depth"] + 1,
    )


def message_from_row(row: sqlite3.Row) -> Message:
    """A message row; a damaged or newer one degrades instead of failing: an unknown role or
    status reads as an errored assistant message (kept out of prompts), bad meta as {}."""
    meta = json_object(row["meta"])
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


def json_object(value: Any) -> dict[str, Any]:
    """A stored JSON object; anything else (bad JSON, a list, NULL) reads as {}."""
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}
