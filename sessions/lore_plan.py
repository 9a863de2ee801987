"""One turn's lore and Author's Note: the books a session reads (its own attached books, then the
speaker's card book and the books its card attaches), scanned over the recent history as
sessions/lorebook.py does, and sorted into their places (sessions/placement.py).

Books attached to a session are `settings["lorebooks"]` (names in the data directory's
`lorebooks/` folder); a card attaches books in `data.extensions.cosplay.lorebooks`. A book that
cannot be read is left out with a note (the inspector shows it), never a failed turn.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.base import ChatMessage, CosplayError, Engine
from engines.i18n import _
from sessions.history_window import Window
from sessions.lore_keys import RegexClock
from sessions.lorebook import (
    MAX_SCAN_DEPTH,
    LoreEntry,
    LoreRules,
    activate,
    book_entries,
    book_rules,
    turn_seed,
)
from sessions.notes import AuthorNote
from sessions.placement import Extras, arrange, lore_placement, note_due

if TYPE_CHECKING:
    from sessions.cards import CharacterCard
    from sessions.models import Session
    from sessions.prompt import UserPersona


@dataclass
class LoreReport:
    """What the lorebooks did for one prompt: the entries that fired, the books unread."""

    labels: list[str] = field(default_factory=list)  # the entries that fired, in prompt order
    notes: list[str] = field(default_factory=list)  # books that could not be read


def _names(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return list(dict.fromkeys(v for v in value if isinstance(v, str) and v.strip()))


def card_books(card: CharacterCard | None) -> list[str]:
    """The standalone lorebooks a card attaches (`data.extensions.cosplay.lorebooks`)."""
    if card is None:
        return []
    cosplay = card.data.extensions.get("cosplay")
    return _names(cosplay.get("lorebooks") if isinstance(cosplay, dict) else None)


def _load(names: list[str], home: Path | None, report: LoreReport) -> list[LoreEntry]:
    if not names:
        return []
    if home is None:
        report.notes.append(
            _("lorebooks {names} not read: no data directory", names=", ".join(names))
        )
        return []
    from sessions.lorebook_files import lorebook_folder

    folder = lorebook_folder(home)
    entries: list[LoreEntry] = []
    for name in names:
        try:
            entries += book_entries(folder.book(name), name)
        except CosplayError as exc:
            report.notes.append(_("lorebook {name!r} left out: {problem}", name=name, problem=exc))
    return entries


def scanned_text(message: ChatMessage, *, char: str, user: str) -> str:
    """A message as SillyTavern scans it: "Name: text"."""
    role = message.get("role")
    name = message.get("name") or (user if role == "user" else char if role == "assistant" else "")
    content = message.get("content", "")
    return f"{name}: {content}" if name else content


def turn_extras(
    session: Session,
    window: Window,
    engine: Engine,
    card: CharacterCard | None,
    user: UserPersona,
    home: Path | None,
    placement: str | None = None,
) -> tuple[Extras, LoreReport]:
    """The lore that fires for the reply to the window's last message, and the Author's Note,
    in their places (`placement`: the config's lore.placement, which the session's
    `settings["lore_placement"]` overrides). Reads only as much history as the scan depth asks
    (and, for a note with an interval above 1, the whole branch, to count the user's turns)."""
    from sessions.prompt import expand_macros

    settings = session.settings
    report = LoreReport()
    char = card.name if card is not None else "Assistant"
    book = card.data.character_book if card is not None else None
    groups = [_load(_names(settings.get("lorebooks")), home, report)]
    own = book_entries(book, card.name) if book is not None and card is not None else []
    groups.append(own + _load(card_books(card), home, report))
    note = AuthorNote.from_value(settings.get("author_note"))

    def expand(text: str) -> str:
        return expand_macros(text, char=char, user=user.name)

    fired: list[LoreEntry] = []
    if any(groups):
        rules = book_rules(book, LoreRules())
        depth = max([rules.scan_depth, *(e.scan_depth or 0 for g in groups for e in g)])
        recent = window.recent(min(depth, MAX_SCAN_DEPTH))
        scanned = [scanned_text(m, char=char, user=user.name) for m in reversed(recent)]
        overhead = engine.count_tokens([{"role": "system", "content": ""}])

        def count(text: str) -> int:
            return max(0, engine.count_tokens([{"role": "system", "content": text}]) - overhead)

        at = window.entries[-1].depth if window.entries else 0
        clock = RegexClock()
        fired = activate(
            groups,
            scanned,
            count_tokens=count,
            budget=rules.budget(engine.context_length),
            rules=rules,
            rng=random.Random(turn_seed(session.id, at)),
            expand=expand,
            clock=clock,
        )
        report.notes += [
            _("regex keys of lorebook {name!r} took too long; skipped", name=name)
            for name in clock.slow_books
        ]
    due = False
    if note.text.strip() or any(e.position in (2, 3) for e in fired):
        turns = 0
        if note.interval > 1:
            everything = window.recent(2**31)
            turns = sum(1 for m in everything if m.get("role") == "user")
        due = note_due(note, turns)
    report.labels = [entry.label for entry in fired]
    where = lore_placement(settings, placement)
    return arrange(fired, note, due, expand, where), report
