"""A text-generation-webui chat (.json): rows of [user, assistant] texts, raw (`internal`) and as
shown (`visible`), with `metadata` per message; a message's `versions` become siblings, the one
at `current_version_index` carrying the chat on. The legacy form names the rows `data` and
`data_visible` and has no metadata. What the file holds beyond our model is kept under TGW_KEY
for sessions/chat_export/ to write back."""

from __future__ import annotations

import copy
import html
from pathlib import Path
from typing import Any

from engines.i18n import _
from sessions.chat_export import TGW_GREETING, TGW_KEY, fingerprint
from sessions.chat_import.dates import parse_time
from sessions.chat_import.parsed import ChatProblem, ParsedChat, chain_versions, kind_of
from sessions.models import Role

TITLE_CHARS = 60


def looks_like_textgen_webui(doc: dict) -> bool:
    return ("internal" in doc and "visible" in doc) or ("data" in doc and "data_visible" in doc)


def parse_textgen_webui(doc: dict, path: Path) -> ParsedChat:
    """modules/chat.py `save_history` / `load_history`: `internal` (raw) and `visible`
    (HTML-escaped) rows of [user, assistant], `metadata` per message; the legacy form names
    them `data` and `data_visible` and has no metadata."""
    legacy = not ("internal" in doc and "visible" in doc)
    rows_key, visible_key = ("data", "data_visible") if legacy else ("internal", "visible")
    rows, shown = doc[rows_key], doc[visible_key]
    if not isinstance(rows, list):
        raise ChatProblem(
            _(
                "its '{key}' is {kind}, not a list of [user, assistant] rows",
                key=rows_key,
                kind=kind_of(rows),
            )
        )
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 2 and all(isinstance(t, str) for t in row)):
            raise ChatProblem(
                _("'{key}' row {i} is not a [user, assistant] pair of texts", key=rows_key, i=i)
            )
    # TGW's first versions kept the card's example dialogue as rows above the greeting, with
    # no visible rows for them: they are not the chat (kept in the settings, not exported).
    start = next((i for i, row in enumerate(rows) if row[0] == TGW_GREETING), 0)
    hidden, rows = rows[:start], rows[start:]
    if start and isinstance(shown, list) and len(shown) == len(rows) + start:
        shown = shown[start:]
    metadata = doc.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ChatProblem(_("its 'metadata' is {kind}, not an object", kind=kind_of(metadata)))
    positions = []
    for i, (user_text, reply) in enumerate(rows):
        row_shown = shown[i] if isinstance(shown, list) and i < len(shown) else None
        if not (isinstance(row_shown, list) and len(row_shown) == 2):
            row_shown = [None, None]
        greeting = user_text == TGW_GREETING
        if user_text and not greeting:
            positions.append(_versions(metadata, f"user_{i}", Role.USER, user_text, row_shown[0]))
        entry = metadata.get(f"assistant_{i}")
        if reply or (isinstance(entry, dict) and entry.get("versions")):
            versions, current = _versions(
                metadata, f"assistant_{i}", Role.ASSISTANT, reply, row_shown[1]
            )
            if greeting:
                for version in versions:
                    version["meta"][TGW_KEY]["greeting"] = True
            positions.append((versions, current))
    messages, leaf = chain_versions(positions)
    extra = {
        k: v
        for k, v in doc.items()
        if k not in ("internal", "visible", "metadata", "data", "data_visible")
    }
    first_user = next((m["content"] for m in messages if m["role"] == Role.USER), "")
    title = (
        first_user.strip().split("\n")[0][:TITLE_CHARS] or path.stem or "text-generation-webui chat"
    )
    return ParsedChat(
        kind="tgw-legacy" if legacy else "tgw",
        label="text-generation-webui chat" + (" (legacy data/data_visible)" if legacy else ""),
        title=title,
        messages=messages,
        leaf=leaf,
        settings={TGW_KEY: kept} if (kept := _present(extra=extra, hidden_rows=hidden)) else {},
        created_at=messages[0]["created_at"] if messages else None,
    )


def _present(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value}


def _versions(
    metadata: dict, key: str, role: Role, text: str, shown: Any
) -> tuple[list[dict[str, Any]], int]:
    """The message at metadata `key` (its row's `text`, shown as `shown`) with its versions,
    and the index of the current one."""
    entry = metadata.get(key)
    if entry is not None and not isinstance(entry, dict):
        raise ChatProblem(
            _("metadata '{key}' is {kind}, not an object", key=key, kind=kind_of(entry))
        )
    entry = entry or {}
    old = entry.get("versions")
    if old is not None and not isinstance(old, list):
        raise ChatProblem(
            _(
                "metadata '{key}' has {kind} as its versions, not a list",
                key=key,
                kind=kind_of(old),
            )
        )
    if old:
        for j, version in enumerate(old):
            if not (isinstance(version, dict) and isinstance(version.get("content"), str)):
                raise ChatProblem(
                    _("metadata '{key}' version {j} has no text content", key=key, j=j)
                )
        current = entry.get("current_version_index")
        if not isinstance(current, int) or isinstance(current, bool):
            current = len(old) - 1  # what handle_navigate_version_click assumes
        if not 0 <= current < len(old):
            raise ChatProblem(
                _(
                    "metadata '{key}' current_version_index {current} is outside its versions",
                    key=key,
                    current=current,
                )
            )
        texts = [v["content"] for v in old]
        texts[current] = text  # the row holds the current text
        visibles = [v.get("visible_content") for v in old]
        visibles[current] = shown
        stamps = [v.get("timestamp") for v in old]
    else:
        current, texts, visibles, stamps = 0, [text], [shown], [entry.get("timestamp")]
    kept_entry = copy.deepcopy(entry)
    if old:  # the texts live in the messages; each version's other keys as they were
        kept_entry["versions"] = [
            {k: v for k, v in version.items() if k not in ("content", "visible_content")}
            for version in old
        ]
    versions = []
    for j, content in enumerate(texts):
        kept: dict[str, Any] = {"version": j} if old else {}
        if isinstance(visibles[j], str) and visibles[j] != html.escape(content):
            kept["visible"] = {"text": visibles[j], "of": fingerprint(content)}
        if j == current and entry:
            kept["entry"] = kept_entry
        versions.append(
            {
                "role": role,
                "name": "",
                "content": content,
                "created_at": parse_time(stamps[j]),
                "meta": {TGW_KEY: kept},
            }
        )
    return versions, current
