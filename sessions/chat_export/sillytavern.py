"""A SillyTavern chat (JSONL, public/script.js `saveChat`): a header line `{user_name,
character_name, create_date, chat_metadata}`, then one line per message of the current branch,
its versions (siblings) as `swipes` with `swipe_id` the current one. A line an import kept is
written back as it was, with only what changed replaced."""

from __future__ import annotations

import copy
import json
from typing import Any

from sessions.chat_export.branches import family_of, lost_branches, place
from sessions.chat_export.dates import iso_z, st_create_date, st_send_date
from sessions.chat_export.kept import ST_KEY, kept_meta, st_header
from sessions.chat_export.speakers import char_name, speaker, user_name
from sessions.models import Message, Role, Session
from sessions.notes import ST_NOTE_KEYS, AuthorNote
from sessions.store import Store


def to_sillytavern(store: Store, session: Session) -> tuple[str, list[str]]:
    """JSONL as SillyTavern's server writes it (`chatData.map(JSON.stringify).join('\\n')`)."""
    branch = store.branch(session.id)
    user, char = user_name(session), char_name(session, branch)
    header = copy.deepcopy(st_header(session)) or {
        "user_name": user,
        "character_name": char,
        "create_date": st_create_date(session.created_at),
        "chat_metadata": {},
    }
    _st_note(header, session)
    family = family_of(store, session.id)
    lines = [header] + [_st_line(family[m.parent_id], m, user, char) for m in branch]
    text = "\n".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) for line in lines)
    return text, lost_branches(family, branch, "SillyTavern")


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
    carrier = next(
        (s for s in siblings if isinstance(kept_meta(s, ST_KEY).get("line"), dict)), None
    )
    current = place(siblings, message)
    if carrier is not None:
        kept = kept_meta(carrier, ST_KEY)
        line = dict(kept["line"])
        old_info = line.get("swipe_info") if isinstance(line.get("swipe_info"), list) else []
        index = kept_meta(message, ST_KEY).get("swipe")
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
        indexes = [kept_meta(s, ST_KEY).get("swipe") for s in siblings]
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
