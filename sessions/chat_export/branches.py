"""The tree as a linear chat holds it (SillyTavern, text-generation-webui): one branch, each
message's versions beside it, and a note on the replies below other versions that are lost."""

from __future__ import annotations

from engines.i18n import _
from sessions.models import Message
from sessions.store import Store


def family_of(store: Store, session_id: int) -> dict[int | None, list[Message]]:
    """Every message of the session under its parent (versions oldest first), read once."""
    family: dict[int | None, list[Message]] = {}
    for message in store.all_messages(session_id):
        family.setdefault(message.parent_id, []).append(message)
    return family


def lost_branches(family: dict, branch: list[Message], app: str) -> list[str]:
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


def place(siblings: list[Message], message: Message) -> int:
    """The message's index among its versions (0 when it is not one of them)."""
    return next((i for i, s in enumerate(siblings) if s.id == message.id), 0)
