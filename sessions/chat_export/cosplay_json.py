"""Our own JSON: the whole tree, lossless; sessions/chat_import/ reads it back identical."""

from __future__ import annotations

import json

from sessions.models import Message, Session
from sessions.store import Store

COSPLAY_FORMAT = "cosplay-session"  # our own JSON's "format" marker
COSPLAY_VERSION = 1


def message_record(message: Message) -> dict:
    return {
        "id": message.id,
        "parent_id": message.parent_id,
        "role": message.role.value,
        "name": message.name,
        "status": message.status.value,
        "content": message.content,
        "meta": message.meta,
        "created_at": message.created_at,
    }


def to_cosplay_json(store: Store, session: Session) -> str:
    record = {
        "format": COSPLAY_FORMAT,
        "version": COSPLAY_VERSION,
        "id": session.id,
        "title": session.title,
        "persona": session.persona,
        "settings": session.settings,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "leaf_id": session.leaf_id,
    }
    # One message a line (compact, so the C encoder writes a long chat quickly; a diff of two
    # exports shows whole messages); the session's fields indented above them.
    head = json.dumps(record, ensure_ascii=False, indent=2)[:-2]
    lines = [
        json.dumps(message_record(m), ensure_ascii=False) for m in store.all_messages(session.id)
    ]
    body = "[\n    " + ",\n    ".join(lines) + "\n  ]" if lines else "[]"
    return f'{head},\n  "messages": {body}\n}}'
