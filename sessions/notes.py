"""A session's Author's Note and memory, as its settings hold them.

`settings["author_note"]`: SillyTavern's Author's Note — text inserted every `interval` user
turns (0: never), `depth` messages from the end, as `role`, at `position` ("in_chat" at that
depth, "in_prompt" after the persona's text, "before_prompt" before it).

`settings["memory"]`: the rolling summary of the turns that fell out of the context window
(sessions/memory.py writes it): on or off, its text, and `through`, the branch depth of the
last message it covers (-1: none), with that message's id to tell a branch switch.

Reading is lenient: a missing or damaged value falls back to its default, so a bad setting
never stops a reply. SillyTavern keeps the note in a chat's `chat_metadata` as `note_prompt`,
`note_interval`, `note_depth`, `note_position` and `note_role` (numbers); `from_st`/`to_st`
convert.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

POSITIONS = ("in_chat", "in_prompt", "before_prompt")
ROLES = ("system", "user", "assistant")
# SillyTavern's extension_prompt_types and extension_prompt_roles (public/script.js).
ST_POSITIONS = {0: "in_prompt", 1: "in_chat", 2: "before_prompt"}
ST_ROLES = {0: "system", 1: "user", 2: "assistant"}
ST_NOTE_KEYS = ("note_prompt", "note_interval", "note_depth", "note_position", "note_role")
MAX_INTERVAL = 10_000
MAX_DEPTH = 10_000


def _count(value: Any, default: int, most: int) -> int:
    """A whole number in [0, most], else `default` (a bool or a fraction is not one)."""
    if isinstance(value, bool):
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 <= value <= most else default


def _choice(value: Any, choices: tuple[str, ...], default: str) -> str:
    return value if value in choices else default


@dataclass(frozen=True)
class AuthorNote:
    """A session's author's note: its text and where and how often it enters the prompt."""

    text: str = ""
    interval: int = 1  # every N user turns; 0: never
    depth: int = 4  # messages from the end (in_chat)
    position: str = "in_chat"
    role: str = "system"

    @classmethod
    def from_value(cls, value: Any) -> AuthorNote:
        """The note a `settings["author_note"]` value holds; defaults for what is missing or
        damaged."""
        if not isinstance(value, dict):
            return cls()
        default = cls()
        text = value.get("text")
        return cls(
            text=text if isinstance(text, str) else "",
            interval=_count(value.get("interval"), default.interval, MAX_INTERVAL),
            depth=_count(value.get("depth"), default.depth, MAX_DEPTH),
            position=_choice(value.get("position"), POSITIONS, default.position),
            role=_choice(value.get("role"), ROLES, default.role),
        )

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> AuthorNote:
        return cls.from_value(settings.get("author_note"))

    def to_value(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_st(cls, metadata: Any) -> AuthorNote | None:
        """The note of a SillyTavern `chat_metadata`; None when it has none of the note keys."""
        if not isinstance(metadata, dict) or not any(k in metadata for k in ST_NOTE_KEYS):
            return None
        default = cls()
        text = metadata.get("note_prompt")
        position = _count(metadata.get("note_position"), -1, 2)
        role = _count(metadata.get("note_role"), -1, 2)
        return cls(
            text=text if isinstance(text, str) else "",
            interval=_count(metadata.get("note_interval"), default.interval, MAX_INTERVAL),
            depth=_count(metadata.get("note_depth"), default.depth, MAX_DEPTH),
            position=ST_POSITIONS.get(position, default.position),
            role=ST_ROLES.get(role, default.role),
        )

    def to_st(self) -> dict[str, Any]:
        """The `chat_metadata` keys SillyTavern reads the note from."""
        position = {name: number for number, name in ST_POSITIONS.items()}[self.position]
        role = {name: number for number, name in ST_ROLES.items()}[self.role]
        return {
            "note_prompt": self.text,
            "note_interval": self.interval,
            "note_position": position,
            "note_depth": self.depth,
            "note_role": role,
        }


@dataclass(frozen=True)
class Memory:
    """A session's memory summary and how far along its branch it reaches."""

    enabled: bool = False
    text: str = ""
    through: int = -1  # the branch depth of the last message the summary covers; -1: none
    through_id: int | None = None  # that message's id (another branch: the summary restarts)

    @classmethod
    def from_value(cls, value: Any) -> Memory:
        if not isinstance(value, dict):
            return cls()
        text, through_id = value.get("text"), value.get("through_id")
        through = value.get("through")
        valid_through = isinstance(through, int) and not isinstance(through, bool)
        return cls(
            enabled=value.get("enabled") is True,
            text=text if isinstance(text, str) else "",
            through=through if valid_through and through >= -1 else -1,
            through_id=through_id
            if isinstance(through_id, int) and not isinstance(through_id, bool)
            else None,
        )

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Memory:
        return cls.from_value(settings.get("memory"))

    def to_value(self) -> dict[str, Any]:
        value = asdict(self)
        if self.through_id is None:
            del value["through_id"]
        return value
