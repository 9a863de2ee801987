"""The transcript as one speaker sees it: in a group scene each character's own lines are the
assistant's and everyone else's are user turns carrying their names (prefixed with them for
templates that do not render names); where a round of its conversation starts."""

from __future__ import annotations

from engines.base import ChatMessage

# Templates that render each message's `name` themselves (`某某曰：`), so other
# speakers' lines need no "Name: " prefix in the text.
NAME_AWARE_TEMPLATES = {"cosplay"}


def speaker_view(
    history: list[ChatMessage], *, char: str, user: str, name_aware: bool
) -> list[ChatMessage]:
    """The transcript as `char` sees it: its own lines are the assistant's, everyone else's
    (the user and other characters) are user turns carrying their names. For templates that
    do not render names, other speakers' lines get a "Name: " prefix, and consecutive user
    turns are merged so templates that insist on alternating roles still render."""
    group = any(
        m.get("role") == "assistant" and m.get("name") not in (None, "", char) for m in history
    )
    view: list[ChatMessage] = []
    for message in history:
        role, name = message.get("role", "user"), message.get("name", "")
        content = message.get("content", "")
        if role == "assistant" and name and name != char:
            role = "user"
        elif role == "assistant":
            name = char
        elif role == "user":
            name = name or user
        entry: ChatMessage = {"role": role, "content": content}
        if name:
            entry["name"] = name
        if group and role == "user" and not name_aware:
            entry["content"] = f"{name}: {content}"
            if view and view[-1]["role"] == "user":
                view[-1]["content"] += "\n\n" + entry["content"]
                continue
        view.append(entry)
    return view


def seen_as_user(message: ChatMessage, char: str) -> bool:
    """Whether `char` sees this line as a user turn (the user's, or another character's): a
    round of its conversation starts there."""
    role, name = message.get("role"), message.get("name")
    return role == "user" or (role == "assistant" and bool(name) and name != char)
