"""The persona's text in the prompt: `{{char}}`/`<BOT>` and `{{user}}`/`<USER>` macros (and
`{{original}}`, the text a card's system_prompt or post_history_instructions replaces), the
user's persona (`UserPersona`), the card's example dialogues (one block per `<START>`), its
greetings, the system text (main prompt, description, personality, scenario, the user, and the
lore and Author's Note placed in it) and the post-history instructions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engines.base import ChatMessage
from sessions.placement import Extras

if TYPE_CHECKING:  # the card models (pydantic) load only when a persona is used
    from sessions.cards import CharacterCard

DEFAULT_ROLEPLAY_PROMPT = (
    "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}. "
    "Stay in character and write only {{char}}'s own words and actions."
)
GROUP_PROMPT = (
    "This is a group scene with {members} and {{user}}. "
    "Write only {{char}}'s next reply; never speak for the others."
)

_MACRO = re.compile(r"\{\{\s*(char|user|original)\s*\}\}|<(BOT|USER)>", re.IGNORECASE)
_START = re.compile(r"^\s*<START>\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class UserPersona:
    """Who the user plays: the name `{{user}}` expands to, and a description for the prompt."""

    name: str = "User"
    description: str = ""

    @classmethod
    def from_value(cls, value: Any) -> UserPersona:
        """From a settings value: {"name": …, "description": …}, a bare name, or nothing."""
        if isinstance(value, dict):
            return cls(str(value.get("name") or "User"), str(value.get("description") or ""))
        if isinstance(value, str) and value.strip():
            return cls(value.strip())
        return cls()

    def to_value(self) -> dict[str, str]:
        return {"name": self.name, "description": self.description}


def expand_macros(text: str, *, char: str, user: str, original: str | None = None) -> str:
    """Replace {{char}}/<BOT>, {{user}}/<USER> and (when given) {{original}}; case-insensitive."""

    def replace(match: re.Match[str]) -> str:
        word = (match.group(1) or match.group(2)).lower()
        if word in ("char", "bot"):
            return char
        if word == "user":
            return user
        return match.group(0) if original is None else original

    return _MACRO.sub(replace, text)


def parse_examples(mes_example: str, *, char: str, user: str) -> list[list[ChatMessage]]:
    """The `<START>`-separated example dialogues as message blocks (macros expanded).

    A line starting with `{{user}}:`/`<USER>:`/the user's name starts a user message,
    `{{char}}:`/`<BOT>:`/the character's name an assistant one (ASCII or full-width
    colon); other lines continue the current message. Text before the first speaker
    is narration and goes in as a system message.
    """
    speakers = [
        (
            re.compile(
                rf"^\s*(?:\{{\{{\s*user\s*\}}\}}|<USER>|{re.escape(user)})\s*[:：]\s?", re.I
            ),
            "user",
        ),
        (
            re.compile(rf"^\s*(?:\{{\{{\s*char\s*\}}\}}|<BOT>|{re.escape(char)})\s*[:：]\s?", re.I),
            "assistant",
        ),
    ]
    blocks: list[list[ChatMessage]] = []
    for raw_block in _START.split(mes_example.replace("\r\n", "\n")):
        block: list[ChatMessage] = []
        for line in raw_block.split("\n"):
            for pattern, role in speakers:
                match = pattern.match(line)
                if match:
                    name = user if role == "user" else char
                    block.append({"role": role, "content": line[match.end() :], "name": name})
                    break
            else:
                if block:
                    block[-1]["content"] += "\n" + line
                elif line.strip():
                    block.append({"role": "system", "content": line})
        for message in block:
            message["content"] = expand_macros(message["content"].strip(), char=char, user=user)
        block = [m for m in block if m["content"]]
        if any(m["role"] != "system" for m in block):
            blocks.append(block)
    return blocks


def greetings(card: CharacterCard, user: UserPersona | None = None) -> list[str]:
    """first_mes then the alternate greetings, macros expanded, empty ones left out."""
    user_name = (user or UserPersona()).name
    texts = [card.data.first_mes, *card.data.alternate_greetings]
    return [expand_macros(t, char=card.name, user=user_name) for t in texts if t.strip()]


def system_text(
    card: CharacterCard,
    *,
    user: UserPersona,
    original: str = DEFAULT_ROLEPLAY_PROMPT,
    cast: list[str] | None = None,
    extras: Extras | None = None,
) -> str:
    """The persona's system message: main prompt, character, scenario, the user, and the lore
    and Author's Note placed in it (`extras`)."""
    data, char = card.data, card.name
    main = data.system_prompt.strip() or "{{original}}"
    extras = extras or Extras()
    lore_before, lore_after = extras.before_char, extras.after_char
    parts = [
        *extras.prompt_start,
        expand_macros(main, char=char, user=user.name, original=original),
        *lore_before,
        data.description.strip(),
        f"{char}'s personality: {data.personality.strip()}" if data.personality.strip() else "",
        f"Scenario: {data.scenario.strip()}" if data.scenario.strip() else "",
        *lore_after,
        f"About {user.name}: {user.description.strip()}" if user.description.strip() else "",
    ]
    others = [name for name in cast or [] if name != char]
    if others:
        parts.append(GROUP_PROMPT.replace("{members}", "、".join([char, *others])))
    parts += extras.prompt_end
    return "\n\n".join(expand_macros(p, char=char, user=user.name) for p in parts if p)


def post_history_text(card: CharacterCard, *, user: UserPersona, original: str = "") -> str:
    text = card.data.post_history_instructions.strip() or "{{original}}"
    return expand_macros(text, char=card.name, user=user.name, original=original).strip()
