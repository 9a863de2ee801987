"""A text-generation-webui chat (modules/chat.py `save_history`): `internal` rows of
`[user, assistant]` raw text, `visible` the same HTML-escaped, and `metadata` with
`user_N`/`assistant_N` timestamps and `versions`. What an import kept (entries, visible texts
an extension made, the file's other keys) is written back as it was."""

from __future__ import annotations

import html
import json
from typing import Any

from engines.i18n import _
from sessions.chat_export.branches import family_of, lost_branches, place
from sessions.chat_export.dates import tgw_timestamp
from sessions.chat_export.kept import TGW_GREETING, TGW_KEY, fingerprint, kept_meta
from sessions.models import Message, Role, Session
from sessions.store import Store


def to_tgw(store: Store, session: Session) -> tuple[str, list[str]]:
    """JSON as modules/chat.py `save_history` writes it (`json.dumps(history, indent=4,
    ensure_ascii=False)`)."""
    branch = store.branch(session.id)
    family = family_of(store, session.id)
    internal: list[list[str]] = []
    visible: list[list[str]] = []
    metadata: dict[str, Any] = {}
    entries: list[tuple[str, int, dict]] = []
    skipped = 0
    for m in branch:
        if m.role == Role.SYSTEM:
            skipped += 1
            continue
        if m.role == Role.USER:
            internal.append([m.content, ""])
            visible.append([_tgw_visible(m), ""])
            entries.append(("user", len(internal) - 1, _tgw_entry(family[m.parent_id], m)))
            continue
        if not internal and (m.parent_id is None or kept_meta(m, TGW_KEY).get("greeting")):
            internal.append([TGW_GREETING, m.content])
            visible.append(["", _tgw_visible(m)])
        elif internal and internal[-1][1] == "" and internal[-1][0] != TGW_GREETING:
            internal[-1][1] = m.content
            visible[-1][1] = _tgw_visible(m)
        else:  # a reply after a reply: text-generation-webui's "send dummy reply" row
            internal.append(["", m.content])
            visible.append(["", _tgw_visible(m)])
        entries.append(("assistant", len(internal) - 1, _tgw_entry(family[m.parent_id], m)))
    for role, row, entry in entries:  # user_N before assistant_N, as the app adds them
        metadata[f"{role}_{row}"] = entry
    kept = session.settings.get(TGW_KEY)
    extra = kept.get("extra") if isinstance(kept, dict) else None
    history = {"internal": internal, "visible": visible, "metadata": metadata}
    if isinstance(extra, dict):
        history.update({k: v for k, v in extra.items() if k not in history})
    notes = lost_branches(family, branch, "text-generation-webui")
    if skipped:
        notes.append(
            _(
                "{skipped} system/narrator message(s) were left out: text-generation-webui's "
                "chat has only user and assistant turns.",
                skipped=skipped,
            )
        )
    return json.dumps(history, indent=4, ensure_ascii=False), notes


def _tgw_visible(message: Message) -> str:
    kept = kept_meta(message, TGW_KEY).get("visible")
    if isinstance(kept, dict) and kept.get("of") == fingerprint(message.content):
        text = kept.get("text")
        if isinstance(text, str):
            return text
    return html.escape(message.content)


def _tgw_entry(siblings: list[Message], message: Message) -> dict:
    carrier = next(
        (s for s in siblings if isinstance(kept_meta(s, TGW_KEY).get("entry"), dict)), None
    )
    if carrier is not None:
        entry = dict(kept_meta(carrier, TGW_KEY)["entry"])
    else:
        entry = {"timestamp": tgw_timestamp(message.created_at)}
        model = message.meta.get("model")
        if message.role == Role.ASSISTANT and isinstance(model, str) and model:
            entry["model_name"] = model
    old = entry.get("versions") if isinstance(entry.get("versions"), list) else None
    if len(siblings) > 1 or old is not None:
        versions = []
        for s in siblings:
            index = kept_meta(s, TGW_KEY).get("version")
            base = old[index] if old and isinstance(index, int) and 0 <= index < len(old) else {}
            base = base if isinstance(base, dict) else {}
            version = {"content": s.content, "visible_content": _tgw_visible(s)}
            version.update({k: v for k, v in base.items() if k not in version})
            version.setdefault("timestamp", tgw_timestamp(s.created_at))
            versions.append(version)
        entry["versions"] = versions
        entry["current_version_index"] = place(siblings, message)
        if carrier is None or message.id != carrier.id:
            entry["timestamp"] = versions[entry["current_version_index"]]["timestamp"]
    return entry
