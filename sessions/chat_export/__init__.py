"""A session written as another app's chat file, a transcript, or our own lossless JSON.

`export_session(store, session_id, fmt)` → (text, notes). The formats:

- `md`, `txt`: readable transcripts of the current branch (speaker names, versions noted).
- `json`: our own format, the whole tree (every message with id, parent, role, name, status,
  content, meta, created_at; the session's title, persona, settings, leaf); it imports back
  to an identical tree (sessions/chat_import/).
- `st`: a SillyTavern chat (JSONL, public/script.js `saveChat`): a header line
  `{user_name, character_name, create_date, chat_metadata}`, then one line per message of the
  current branch, its versions (siblings) as `swipes` with `swipe_id` the current one.
- `tgw`: a text-generation-webui chat (modules/chat.py `save_history`): `internal` rows of
  `[user, assistant]` raw text, `visible` the same HTML-escaped, and `metadata` with
  `user_N`/`assistant_N` timestamps and `versions`.

One module per format: transcript.py (`md`, `txt`), cosplay_json.py (`json`), sillytavern.py
(`st`), textgen_webui.py (`tgw`); beside them the apps' dates (dates.py), the names of who
speaks (speakers.py), the tree as a linear chat holds it (branches.py) and what an import kept
of the original file (kept.py): unknown keys, a line's own fields, the visible text an
extension made live in the messages' `meta` and the session's `settings` under kept.py's keys,
and are written back as they were.
"""

from __future__ import annotations

from sessions.chat_export.cosplay_json import (
    COSPLAY_FORMAT,
    COSPLAY_VERSION,
    message_record,
    to_cosplay_json,
)
from sessions.chat_export.dates import MONTHS, iso_z, st_create_date, st_send_date, tgw_timestamp
from sessions.chat_export.kept import ST_KEY, TGW_GREETING, TGW_KEY, fingerprint
from sessions.chat_export.sillytavern import to_sillytavern
from sessions.chat_export.speakers import char_name, speaker, user_name
from sessions.chat_export.textgen_webui import to_tgw
from sessions.chat_export.transcript import to_markdown, to_text
from sessions.store import Store

FORMATS = ("md", "json", "st", "tgw", "txt")

__all__ = [
    "COSPLAY_FORMAT",
    "COSPLAY_VERSION",
    "FORMATS",
    "MONTHS",
    "ST_KEY",
    "TGW_GREETING",
    "TGW_KEY",
    "char_name",
    "export_session",
    "fingerprint",
    "iso_z",
    "message_record",
    "speaker",
    "st_create_date",
    "st_send_date",
    "tgw_timestamp",
    "to_cosplay_json",
    "to_markdown",
    "to_sillytavern",
    "to_text",
    "to_tgw",
    "user_name",
]


def export_session(store: Store, session_id: int, fmt: str) -> tuple[str, list[str]]:
    """The session in `fmt` (one of FORMATS) and notes on anything the format cannot hold."""
    session = store.get_session(session_id)
    if fmt == "md":
        return to_markdown(store, session), []
    if fmt == "txt":
        return to_text(store, session), []
    if fmt == "json":
        return to_cosplay_json(store, session), []
    if fmt == "st":
        return to_sillytavern(store, session)
    if fmt == "tgw":
        return to_tgw(store, session)
    raise ValueError(f"unknown export format {fmt!r}")
