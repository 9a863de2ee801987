"""Where the texts besides the persona and the history go: fired lore, the Author's Note and the
memory (a summary of what fell out of the window), read from the session's settings.

Everything that changes from turn to turn goes near the end of the prompt, as a message at a
depth in the history, so the engine's KV cache keeps the rest: at-depth lore and the Author's
Note (its default, "in_chat"). Lore that asks for the system text (before/after the character,
around the example dialogues) goes by the lore placement (config `lore.placement`, a session's
`settings["lore_placement"]`): "cache" (the default) puts it at depth 4 as a system message
instead, so the start of the prompt stays put; "card" puts it in the system text, as SillyTavern
does, and when what fires there changes the whole prompt is read again. A note placed
"in_prompt"/"before_prompt" goes in the system text either way.

The settings `author_note` and `memory` are read by sessions/notes.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engines.i18n import N_, _
from sessions.context import Injection
from sessions.lorebook import DEFAULT_DEPTH, ROLES, LoreEntry, Position
from sessions.notes import AuthorNote, Memory

PLACEMENTS = ("cache", "card")  # lore.placement's values; the first is the default
SYSTEM_TEXT = {  # where in the system text an entry asks to go (what "card" placement does)
    Position.BEFORE_CHAR: N_("before the character"),
    Position.AFTER_CHAR: N_("after the character"),
    Position.EXAMPLES_TOP: N_("around the example dialogues"),
    Position.EXAMPLES_BOTTOM: N_("around the example dialogues"),
}


def lore_placement(settings: dict[str, Any], default: object = None) -> str:
    """The session's lore placement (`settings["lore_placement"]`), else `default` (the
    config's `lore.placement`), else "cache"; a value neither knows counts as not given."""
    for value in (settings.get("lore_placement"), default):
        if value in PLACEMENTS:
            return str(value)
    return PLACEMENTS[0]


def note_due(note: AuthorNote, user_turns: int) -> bool:
    """Whether the note goes into this turn's prompt (SillyTavern's setFloatingPrompt): every
    turn at interval 1, never at 0, else when the user's turns so far are a multiple of it."""
    if note.interval <= 0:
        return False
    if note.interval == 1:
        return True
    return user_turns > 0 and user_turns % note.interval == 0


def memory_text(settings: dict[str, Any]) -> str:
    """The session's memory summary to put in the prompt ("" when off or empty)."""
    memory = Memory.from_settings(settings)
    return memory.text.strip() if memory.enabled else ""


@dataclass
class Extras:
    """The lore and the note, sorted into where they go."""

    before_char: list[str] = field(default_factory=list)  # in the system text, before it
    after_char: list[str] = field(default_factory=list)  # in the system text, after it
    prompt_start: list[str] = field(default_factory=list)  # the note "before_prompt"
    prompt_end: list[str] = field(default_factory=list)  # the note "in_prompt"
    injections: list[Injection] = field(default_factory=list)
    placed: list[tuple[str, str]] = field(default_factory=list)  # (what, where) not at depth


def arrange(
    fired: list[LoreEntry], note: AuthorNote, note_due: bool, expand=str, placement: str = "cache"
) -> Extras:
    """Sort fired lore (in prompt order) and the note into their places; `expand` fills the
    macros of a text. Lore above/below the note goes only where the note goes this turn; lore
    for the system text goes there only with `placement` "card" (else at depth 4)."""
    extras = Extras()
    at_depth: dict[tuple[int, str], list[tuple[str, str]]] = {}
    top: list[LoreEntry] = []
    bottom: list[LoreEntry] = []
    for entry in fired:
        content = expand(entry.content).strip()
        what = _("lore: {entry}", entry=entry.label)
        if entry.position in SYSTEM_TEXT and placement != "card":
            where = _(SYSTEM_TEXT[entry.position])
            moved = _("{what} (moved from {place}, for the cache)", what=what, place=where)
            at_depth.setdefault((DEFAULT_DEPTH, "system"), []).append((moved, content))
        elif entry.position == Position.BEFORE_CHAR:
            extras.before_char.append(content)
            extras.placed.append((what, _("system text, before the character")))
        elif entry.position in (
            Position.AFTER_CHAR,
            Position.EXAMPLES_TOP,
            Position.EXAMPLES_BOTTOM,
        ):
            extras.after_char.append(content)
            extras.placed.append((what, _("system text, after the character")))
        elif entry.position == Position.AN_TOP:
            top.append(entry)
        elif entry.position == Position.AN_BOTTOM:
            bottom.append(entry)
        else:
            at_depth.setdefault((entry.depth, entry.role), []).append((what, content))
    note_text = expand(note.text).strip() if note_due else ""
    if note_due and (note_text or top or bottom):
        parts = [expand(e.content).strip() for e in top]
        parts += [note_text] if note_text else []
        parts += [expand(e.content).strip() for e in bottom]
        names = [_("lore: {entry}", entry=e.label) for e in top]
        names += [_("author's note")] * bool(note_text)
        names += [_("lore: {entry}", entry=e.label) for e in bottom]
        text, what = "\n".join(parts), " + ".join(names)
        if note.position == "in_chat":
            key = (note.depth, note.role)
            at_depth[key] = [(what, text), *at_depth.get(key, [])]
        elif note.position == "in_prompt":
            extras.prompt_end.append(text)
            extras.placed.append((what, _("system text, at its end")))
        else:
            extras.prompt_start.append(text)
            extras.placed.append((what, _("system text, at its start")))
    else:
        nowhere = _("nowhere: no Author's Note this turn")
        extras.placed += [(_("lore: {entry}", entry=e.label), nowhere) for e in [*top, *bottom]]
    for (depth, role), items in sorted(
        at_depth.items(), key=lambda item: (-item[0][0], ROLES.index(item[0][1]))
    ):
        extras.injections.append(
            Injection(
                depth=depth,
                role=role,
                content="\n".join(text for _what, text in items),
                what=" + ".join(what for what, _text in items),
            )
        )
    return extras
