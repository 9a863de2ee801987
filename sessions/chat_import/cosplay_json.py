"""Our own JSON export (sessions/chat_export/cosplay_json.py, and the branch-only JSON of
earlier versions): the whole message tree, its ids remapped on import."""

from __future__ import annotations

from typing import Any

from engines.i18n import _
from sessions.chat_export import COSPLAY_FORMAT
from sessions.chat_import.parsed import ChatProblem, ParsedChat, fill_times, kind_of
from sessions.models import Role, Status


def looks_like_cosplay_json(doc: dict) -> bool:
    return doc.get("format") == COSPLAY_FORMAT or {"id", "title", "messages"} <= doc.keys()


def parse_cosplay_json(doc: dict) -> ParsedChat:
    records = doc.get("messages")
    if not isinstance(records, list):
        raise ChatProblem(_("its 'messages' is {kind}, not a list", kind=kind_of(records)))
    for key, kind in (("title", str), ("persona", str), ("settings", dict)):
        if doc.get(key) is not None and not isinstance(doc[key], kind):
            raise ChatProblem(
                _(
                    "its '{key}' is {kind}, not {wanted}",
                    key=key,
                    kind=kind_of(doc[key]),
                    wanted=kind_of(kind()),
                )
            )
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise ChatProblem(_("message {i} is {kind}, not an object", i=i, kind=kind_of(record)))
        if not isinstance(record.get("id"), int) or isinstance(record.get("id"), bool):
            raise ChatProblem(_("message {i} has no number id", i=i))
    records = sorted(records, key=lambda r: r["id"])  # a parent is older than its replies
    index: dict[int, int] = {}  # a message's id in the file → its place in `messages`
    messages = [_message(record, index) for record in records]
    fill_times(messages)
    leaf = doc.get("leaf_id")
    if leaf is not None and not _is_id_in(leaf, index):
        raise ChatProblem(_("its leaf_id {leaf} is not one of its messages", leaf=repr(leaf)))
    created = doc.get("created_at")
    return ParsedChat(
        kind="json",
        label="Cosplay export",
        title=doc.get("title") or "Imported chat",
        messages=messages,
        leaf=None if leaf is None else index[leaf],
        persona=doc.get("persona") or "",
        settings=doc.get("settings") or {},
        created_at=float(created) if _number(created) else None,
    )


def _message(record: dict, index: dict[int, int]) -> dict[str, Any]:
    """One record checked, as Store.insert_tree takes it; its id is added to `index`."""
    mid = record["id"]
    if mid in index:
        raise ChatProblem(_("message id {mid} appears twice", mid=mid))
    parent = record.get("parent_id")
    if parent is not None and not _is_id_in(parent, index):
        raise ChatProblem(
            _(
                "message {mid}'s parent {parent} is not in the file",
                mid=mid,
                parent=repr(parent),
            )
        )
    try:
        role, status = Role(record.get("role")), Status(record.get("status", "complete"))
    except ValueError:
        raise ChatProblem(
            _(
                "message {mid} has role {role} / status {status}, which Cosplay does not know",
                mid=mid,
                role=repr(record.get("role")),
                status=repr(record.get("status")),
            )
        ) from None
    for key, kind in (("content", str), ("name", str), ("meta", dict)):
        if record.get(key) is not None and not isinstance(record[key], kind):
            raise ChatProblem(
                _(
                    "message {mid}'s {key} is {kind}, not {wanted}",
                    mid=mid,
                    key=key,
                    kind=kind_of(record[key]),
                    wanted=kind_of(kind()),
                )
            )
    if not isinstance(record.get("content"), str):
        raise ChatProblem(_("message {mid} has no text content", mid=mid))
    created = record.get("created_at")
    index[mid] = len(index)
    return {
        "parent": None if parent is None else index[parent],
        "role": role,
        "status": status,
        "name": record.get("name") or "",
        "content": record["content"],
        "meta": record.get("meta") or {},
        "created_at": float(created) if _number(created) else None,
    }


def _is_id_in(value: Any, index: dict[int, int]) -> bool:
    return not isinstance(value, list | dict) and value in index  # a list or an object is no id


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) < 1e13
        and value == value  # not NaN
    )
