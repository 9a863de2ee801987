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

What an import kept of the original file (unknown keys, a line's own fields, the visible text
an extension made) lives in the messages' `meta` and the session's `settings` under the keys
below, and is written back as it was.
"""

from __future__ import annotations

import copy
import hashlib
import html
import json
from datetime import UTC, datetime
from typing import Any

from engines.i18n import _
from sessions.models import Message, Role, Session, Status
from sessions.notes import ST_NOTE_KEYS, AuthorNote
from sessions.store import Store

FORMATS = ("md", "json", "st", "tgw", "txt")
COSPLAY_FORMAT = "cosplay-session"  # our own JSON's "format" marker
COSPLAY_VERSION = 1

# Where an import keeps what the original file said (message meta / session settings keys).
ST_KEY = "sillytavern"  # meta: {"line": {...}, "swipe": i, "swipes": n}; settings: {"header"}
TGW_KEY = "text-generation-webui"  # meta: {"entry", "version", "visible", "greeting"}; settings
TGW_GREETING = "<|BEGIN-VISIBLE-CHAT|>"  # the user side of text-generation-webui's greeting row

USER_FALLBACK, CHAR_FALLBACK, NARRATOR = "You", "Assistant", "System"
_MONTHS = "January February March April May June July August September October November December"
MONTHS = _MONTHS.split()


# --- times as the apps write them (local time, as they do) -----------------------------------


def _local(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds)
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(0)


def st_send_date(seconds: float) -> str:
    """SillyTavern's `getMessageTimeStamp()`: 'June 19, 2023 2:20pm'."""
    t = _local(seconds)
    hour = t.hour % 12 or 12
    return f"{MONTHS[t.month - 1]} {t.day}, {t.year} {hour}:{t.minute:02d}{'pm' if t.hour >= 12 else 'am'}"


def st_create_date(seconds: float) -> str:
    """SillyTavern's `humanizedDateTime()`: '2024-09-27@14h05m01s'."""
    t = _local(seconds)
    return f"{t.year}-{t.month:02d}-{t.day:02d}@{t.hour:02d}h{t.minute:02d}m{t.second:02d}s"


def iso_z(seconds: float) -> str:
    """JavaScript's `Date.toISOString()` (ST's gen_started/gen_finished): UTC, milliseconds."""
    try:
        t = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        t = datetime.fromtimestamp(0, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def tgw_timestamp(seconds: float) -> str:
    """text-generation-webui's `get_current_timestamp()`: '%b %d, %Y %H:%M' (English months)."""
    t = _local(seconds)
    return f"{MONTHS[t.month - 1][:3]} {t.day:02d}, {t.year} {t.hour:02d}:{t.minute:02d}"


def fingerprint(text: str) -> str:
    """A short hash of a message's text: a kept visible text is used only while it matches."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# --- who speaks --------------------------------------------------------------------------------


def user_name(session: Session) -> str:
    header = _st_header(session)
    if header and isinstance(header.get("user_name"), str) and header["user_name"]:
        return header["user_name"]
    user = session.settings.get("user")
    if isinstance(user, dict) and isinstance(user.get("name"), str) and user["name"].strip():
        return user["name"].strip()
    if isinstance(user, str) and user.strip():
        return user.strip()
    return USER_FALLBACK


def char_name(session: Session, branch: list[Message]) -> str:
    header = _st_header(session)
    if header and isinstance(header.get("character_name"), str) and header["character_name"]:
        return header["character_name"]
    if session.persona:
        return session.persona
    for message in branch:
        if message.role == Role.ASSISTANT and message.name:
            return message.name
    return CHAR_FALLBACK


def speaker(message: Message, user: str, char: str) -> str:
    if message.name:
        return message.name
    return {Role.USER: user, Role.ASSISTANT: char}.get(message.role, NARRATOR)


def _st_header(session: Session) -> dict | None:
    kept = session.settings.get(ST_KEY)
    header = kept.get("header") if isinstance(kept, dict) else None
    return header if isinstance(header, dict) else None


def _kept(message: Message, key: str) -> dict:
    value = message.meta.get(key)
    return value if isinstance(value, dict) else {}


# --- transcripts -------------------------------------------------------------------------------


def _versions_note(store: Store, branch: list[Message]) -> dict[int, str]:
    places: dict[int, tuple[int, int]] = {}
    for start in range(0, len(branch), 500):  # SQLite binds at most 32766 values a query
        places |= store.versions(branch[start : start + 500])
    return {
        mid: _("version {number}/{count}", number=p, count=n)
        for mid, (p, n) in places.items()
        if n > 1
    }


def to_markdown(store: Store, session: Session) -> str:
    branch = store.branch(session.id)
    user, char = user_name(session), char_name(session, branch)
    notes = _versions_note(store, branch)
    lines = [f"# {session.title}", ""]
    for m in branch:
        tags = [_stamp(m.created_at)]
        tags += [notes[m.id]] if m.id in notes else []
        tags += [m.status.value] if m.status != Status.COMPLETE else []
        lines += [f"**{speaker(m, user, char)}** · {' · '.join(tags)}", "", m.content, ""]
    return "\n".join(lines)


def to_text(store: Store, session: Session) -> str:
    branch = store.branch(session.id)
    user, char = user_name(session), char_name(session, branch)
    notes = _versions_note(store, branch)
    lines = [session.title, "=" * max(8, min(60, len(session.title) * 2)), ""]
    for m in branch:
        tags = [notes[m.id]] if m.id in notes else []
        tags += [m.status.value] if m.status != Status.COMPLETE else []
        extra = f" ({', '.join(tags)})" if tags else ""
        lines += [f"[{_stamp(m.created_at)}] {speaker(m, user, char)}{extra}:", m.content, ""]
    return "\n".join(lines)


def _stamp(seconds: float) -> str:
    return _local(seconds).strftime("%Y-%m-%d %H:%M")


# --- our own JSON --------------------------------------------------------------------------------


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


# --- SillyTavern ---------------------------------------------------------------------------------


def to_sillytavern(store: Store, session: Session) -> tuple[str, list[str]]:
    """JSONL as SillyTavern's server writes it (`chatData.map(JSON.stringify).join('\\n')`)."""
    branch = store.branch(session.id)
    user, char = user_name(session), char_name(session, branch)
    header = copy.deepcopy(_st_header(session)) or {
        "user_name": user,
        "character_name": char,
        "create_date": st_create_date(session.created_at),
        "chat_metadata": {},
    }
    _st_note(header, session)
    family = _family(store, session.id)
    lines = [header] + [_st_line(family[m.parent_id], m, user, char) for m in branch]
    text = "\n".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) for line in lines)
    return text, _lost_branches(family, branch, "SillyTavern")


def _st_note(header: dict, session: Session) -> None:
    """The session's Author's Note into the header's chat_metadata, where SillyTavern keeps it
    (a note left at its defaults is written only where the file had one)."""
    if "author_note" not in session.settings:
        return
    note = AuthorNote.from_settings(session.settings)
    metadata = header.get("chat_metadata")
    had = isinstance(metadata, dict) and any(key in metadata for key in ST_NOTE_KEYS)
    if note == AuthorNote() and not had:
        return
    if not isinstance(metadata, dict):
        metadata = header["chat_metadata"] = {}
    metadata.update(note.to_st())


def _st_line(siblings: list[Message], message: Message, user: str, char: str) -> dict:
    # Each message was read from the store for this export alone, so its meta may be reused
    # as it is: only top-level keys are replaced.
    carrier = next((s for s in siblings if isinstance(_kept(s, ST_KEY).get("line"), dict)), None)
    current = _place(siblings, message)
    if carrier is not None:
        kept = _kept(carrier, ST_KEY)
        line = dict(kept["line"])
        old_info = line.get("swipe_info") if isinstance(line.get("swipe_info"), list) else []
        index = _kept(message, ST_KEY).get("swipe")
        if message.id != carrier.id:  # SillyTavern shows a swipe with its own date and extra
            known = isinstance(index, int) and 0 <= index < len(old_info)
            info = old_info[index] if known else _st_swipe_info(message)
            for key in ("send_date", "gen_started", "gen_finished", "extra"):
                if isinstance(info, dict) and key in info:
                    line[key] = info[key]
    else:
        kept, old_info = {}, []
        line = _st_new_line(message, user, char)
    line["mes"] = message.content
    if (
        len(siblings) > 1
        or "swipes" in line
        or (carrier is None and message.role == Role.ASSISTANT)
    ):
        indexes = [_kept(s, ST_KEY).get("swipe") for s in siblings]
        if indexes == list(range(kept.get("swipes", -1))) and "swipe_info" in line:
            info = line["swipe_info"]  # the same swipes as the file had: its swipe_info as it was
        else:
            info = [
                old_info[i] if isinstance(i, int) and 0 <= i < len(old_info) else _st_swipe_info(s)
                for s, i in zip(siblings, indexes, strict=True)
            ]
        line["swipe_id"] = current
        line["swipes"] = [s.content for s in siblings]
        line["swipe_info"] = info
    return line


def _st_new_line(message: Message, user: str, char: str) -> dict:
    """A message of ours, keyed as SillyTavern's sendMessageAsUser / saveReply /
    sendNarratorMessage write theirs."""
    line: dict[str, Any] = {"name": speaker(message, user, char)}
    line["is_user"] = message.role == Role.USER
    line["is_system"] = False
    line["send_date"] = st_send_date(message.created_at)
    line["mes"] = message.content
    if message.role == Role.USER:
        line["extra"] = {"isSmallSys": False}
    elif message.role == Role.SYSTEM:
        line["extra"] = {"type": "narrator", "isSmallSys": False}
    else:
        line["extra"] = _st_extra(message)
    return line


def _st_extra(message: Message) -> dict:
    model = message.meta.get("model")
    return {"api": "cosplay", "model": model} if isinstance(model, str) and model else {}


def _st_swipe_info(message: Message) -> dict:
    total = message.meta.get("total_s")
    finished = message.created_at + (total if isinstance(total, int | float) else 0)
    return {
        "send_date": st_send_date(message.created_at),
        "gen_started": iso_z(message.created_at),
        "gen_finished": iso_z(finished),
        "extra": _st_extra(message),
    }


def _family(store: Store, session_id: int) -> dict[int | None, list[Message]]:
    """Every message of the session under its parent (versions oldest first), read once."""
    family: dict[int | None, list[Message]] = {}
    for message in store.all_messages(session_id):
        family.setdefault(message.parent_id, []).append(message)
    return family


def _lost_branches(family: dict, branch: list[Message], app: str) -> list[str]:
    """A note when versions have replies of their own, which a linear chat cannot hold."""
    on_branch = {m.id for m in branch} | {None}  # root versions are the first line's swipes
    lost = sum(len(kids) for parent, kids in family.items() if parent not in on_branch)
    if not lost:
        return []
    return [
        _(
            "{lost} message(s) below earlier versions are not on the current branch and "
            "{app}'s format has no place for them; export --format json keeps the whole tree.",
            lost=lost,
            app=app,
        )
    ]


# --- text-generation-webui -----------------------------------------------------------------------


def to_tgw(store: Store, session: Session) -> tuple[str, list[str]]:
    """JSON as modules/chat.py `save_history` writes it (`json.dumps(history, indent=4,
    ensure_ascii=False)`)."""
    branch = store.branch(session.id)
    family = _family(store, session.id)
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
        if not internal and (m.parent_id is None or _kept(m, TGW_KEY).get("greeting")):
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
    notes = _lost_branches(family, branch, "text-generation-webui")
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
    kept = _kept(message, TGW_KEY).get("visible")
    if isinstance(kept, dict) and kept.get("of") == fingerprint(message.content):
        text = kept.get("text")
        if isinstance(text, str):
            return text
    return html.escape(message.content)


def _tgw_entry(siblings: list[Message], message: Message) -> dict:
    carrier = next((s for s in siblings if isinstance(_kept(s, TGW_KEY).get("entry"), dict)), None)
    if carrier is not None:
        entry = dict(_kept(carrier, TGW_KEY)["entry"])
    else:
        entry = {"timestamp": tgw_timestamp(message.created_at)}
        model = message.meta.get("model")
        if message.role == Role.ASSISTANT and isinstance(model, str) and model:
            entry["model_name"] = model
    old = entry.get("versions") if isinstance(entry.get("versions"), list) else None
    if len(siblings) > 1 or old is not None:
        versions = []
        for s in siblings:
            index = _kept(s, TGW_KEY).get("version")
            base = old[index] if old and isinstance(index, int) and 0 <= index < len(old) else {}
            base = base if isinstance(base, dict) else {}
            version = {"content": s.content, "visible_content": _tgw_visible(s)}
            version.update({k: v for k, v in base.items() if k not in version})
            version.setdefault("timestamp", tgw_timestamp(s.created_at))
            versions.append(version)
        entry["versions"] = versions
        entry["current_version_index"] = _place(siblings, message)
        if carrier is None or message.id != carrier.id:
            entry["timestamp"] = versions[entry["current_version_index"]]["timestamp"]
    return entry


def _place(siblings: list[Message], message: Message) -> int:
    return next((i for i, s in enumerate(siblings) if s.id == message.id), 0)


# --- one entry point ---------------------------------------------------------------------------


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
