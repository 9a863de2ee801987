"""Plain domain models: no storage, no UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

HIDDEN = "hidden"  # a message's meta key: kept in the chat, left out of the prompt


class Role(str, Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class Status(str, Enum):
    COMPLETE = "complete"
    PARTIAL = "partial"  # still streaming, or the process died while it streamed
    CANCELLED = "cancelled"  # the user stopped it; the text so far is kept
    ERROR = "error"


@dataclass
class Message:
    """One message of a session's tree (a node: its parent is the message before it)."""

    id: int
    session_id: int
    parent_id: int | None
    role: Role
    content: str
    status: Status = Status.COMPLETE
    name: str = ""  # the speaker (a persona name in group scenes)
    created_at: float = 0.0
    depth: int = 0  # messages above it on its branch (a root is 0)
    meta: dict[str, Any] = field(
        default_factory=dict
    )  # model, template, params, seed, tokens, timings


@dataclass
class Session:
    """A saved chat: its title, persona and the leaf of the branch shown."""

    id: int
    title: str
    created_at: float
    updated_at: float
    leaf_id: int | None = None  # the current message; the transcript is the path root → leaf
    persona: str = ""  # persona name ('' = the plain assistant); group scenes list several
    settings: dict[str, Any] = field(default_factory=dict)  # generation params, history rounds…
    length: int = 0  # messages on the current branch (root to leaf)


@dataclass(frozen=True)
class SearchHit:
    """A message found by `Store.search`: where it is (open its session on the branch through
    it: `store.deepest_leaf(message_id)`) and one line of its text around the match."""

    message_id: int
    session_id: int
    session_title: str
    role: Role
    name: str  # the speaker ('' for a plain user or assistant message)
    snippet: str  # plain text on one line, '…' where cut; show it as text, never as markup
    created_at: float
    depth: int  # messages above it on its branch
    highlights: tuple[tuple[int, int], ...] = ()  # [start, end) of the matches in snippet
