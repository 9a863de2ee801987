"""What every format's reader returns and shares: the parsed chat, its two errors, the words for
a wrong value's type, and a linear chat with versions laid out as a tree."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from engines.base import CosplayError
from engines.i18n import N_, _


class ChatImportError(CosplayError):
    """A chat file that cannot be imported; one sentence naming the file and the problem."""


class ChatProblem(Exception):
    """The problem, without the file's name (added once, by read_chat)."""


@dataclass
class ParsedChat:
    kind: str  # "st", "tgw", "tgw-legacy" or "json"
    label: str  # for people: "SillyTavern chat"
    title: str
    messages: list[dict[str, Any]]  # Store.insert_tree's form: `parent` is an index
    leaf: int | None = None
    persona: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None
    character: str = ""  # the character the file names (a persona of that name is linked)


def kind_of(value: Any) -> str:
    """A JSON value's type in words, for a problem's sentence: "a list", "text"."""
    names = {
        dict: N_("an object"),
        list: N_("a list"),
        str: N_("text"),
        bool: N_("true/false"),
        type(None): N_("null"),
    }
    return _(names.get(type(value), N_("a number")))


def fill_times(messages: list[dict[str, Any]]) -> None:
    """Messages without a date of their own take the one before them (else now)."""
    last = next((m["created_at"] for m in messages if m.get("created_at") is not None), None)
    for message in messages:
        if message.get("created_at") is None:
            message["created_at"] = last if last is not None else time.time()
        last = message["created_at"]


def chain_versions(
    positions: list[tuple[list[dict[str, Any]], int]],
) -> tuple[list[dict], int | None]:
    """A linear chat with versions as a tree: each position's versions are siblings under the
    previous position's current version, which alone carries the chat on. Returns the messages
    and the index of the last current version (the leaf)."""
    messages: list[dict[str, Any]] = []
    parent: int | None = None
    for versions, current in positions:
        first = len(messages)
        for version in versions:
            messages.append({**version, "parent": parent})
        parent = first + current
    fill_times(messages)
    return messages, parent
