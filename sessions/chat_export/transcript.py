"""Readable transcripts of the current branch (`md`, `txt`): speaker names, versions noted."""

from __future__ import annotations

from engines.i18n import _
from sessions.chat_export.dates import local_time
from sessions.chat_export.speakers import char_name, speaker, user_name
from sessions.models import Message, Session, Status
from sessions.store import Store


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
    return local_time(seconds).strftime("%Y-%m-%d %H:%M")
