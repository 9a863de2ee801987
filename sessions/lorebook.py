"""Lorebooks (a card's `character_book`, SillyTavern World Info): which entries fire for a turn.

Pure: no prompt assembly, no files. The semantics are SillyTavern's (`world-info.js`,
`checkWorldInfo` and `convertCharacterBook`): the last `scan_depth` messages (default 2, each
as "Name: text") are scanned; a key matches as a substring (case-insensitive unless the entry
or the rules say otherwise), a `/pattern/flags` key as a regular expression, and with
`match_whole_words` a one-word key only between non-word characters (ASCII word characters,
as JavaScript's `\\W` has them, so a Chinese key never needs a boundary). `selective` entries
also test `secondary_keys` with one of four logics; `constant` entries always fire; disabled
ones never. Activated entries pass their `probability` roll (a seeded random source, so a
regenerated turn fires the same lore) and then the token budget, in priority order (higher
`insertion_order` first, the session's books before the character's); with recursion on,
fired entries' text is scanned again for more (`prevent_recursion`: its text is not scanned;
`exclude_recursion`: it fires only from the chat; `delay_until_recursion`: only from lore).
The fired entries come back in prompt order: lower `insertion_order` first.

Where an entry goes (`position`, SillyTavern's numbers): 0 before the character, 1 after it
(both in the system text), 2/3 above/below the Author's Note, 4 at `depth` messages from the
end with its `role`, 5/6 around the example dialogues. A card entry's `extensions.position`
wins, then the V2 spec's `position` ("before_char"/"after_char"); an entry that says neither
goes at depth 4 as a system message (SillyTavern would put it after the character; near the
end it does not change the start of the prompt, so the engine's KV cache keeps the history);
sessions/placement.py decides where the system-text positions really go (lore.placement).
Every number an entry carries goes through `_number`: garbage (a string, null, NaN, ±Infinity)
is the field's default, as SillyTavern treats it, and a number out of range is clamped.
Keys are matched by sessions/lore_keys.py.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from sessions.lore_keys import RegexClock, key_matches

if TYPE_CHECKING:
    from sessions.cards import BookEntry, CharacterBook

DEFAULT_SCAN_DEPTH = 2  # SillyTavern's world_info_depth
DEFAULT_DEPTH = 4  # an at-depth entry's depth when it gives none
DEFAULT_BUDGET_PERCENT = 25  # of the context (world_info_budget)
MAX_SCAN_DEPTH = 1000
MAX_DEPTH = 10_000  # an at-depth entry deeper than this goes above all history anyway
MAX_ORDER = 1e15  # insertion_order beyond this sorts the same
MAX_RECURSION_LEVEL = 1000
ROLES = ("system", "user", "assistant")  # SillyTavern's extension_prompt_roles 0, 1, 2


class Position(IntEnum):
    BEFORE_CHAR = 0
    AFTER_CHAR = 1
    AN_TOP = 2
    AN_BOTTOM = 3
    AT_DEPTH = 4
    EXAMPLES_TOP = 5
    EXAMPLES_BOTTOM = 6


class Logic(IntEnum):
    AND_ANY = 0
    NOT_ALL = 1
    NOT_ANY = 2
    AND_ALL = 3


@dataclass(frozen=True)
class LoreEntry:
    """One entry as activation sees it (SillyTavern's World Info entry)."""

    content: str
    keys: tuple[str, ...] = ()
    secondary_keys: tuple[str, ...] = ()
    selective: bool = False
    logic: Logic = Logic.AND_ANY
    constant: bool = False
    enabled: bool = True
    order: float = 100
    position: Position = Position.AT_DEPTH
    depth: int = DEFAULT_DEPTH
    role: str = "system"
    probability: float = 100  # percent; rolled only when below 100
    scan_depth: int | None = None  # None: the rules'
    case_sensitive: bool | None = None
    whole_words: bool | None = None
    exclude_recursion: bool = False
    prevent_recursion: bool = False
    delay_until_recursion: int = 0  # 0: no; n: only from recursion level n on
    label: str = ""  # how the inspector names it
    book: str = ""  # the book it came from


@dataclass(frozen=True)
class LoreRules:
    """The scan's settings (SillyTavern's world_info_* globals), defaults as it ships them."""

    scan_depth: int = DEFAULT_SCAN_DEPTH
    budget_percent: float = DEFAULT_BUDGET_PERCENT
    budget_cap: int = 0  # tokens; 0: no cap
    recursive: bool = False
    case_sensitive: bool = False
    whole_words: bool = False
    max_recursion_steps: int = 0  # 0: until nothing new fires

    def budget(self, context_length: int) -> int:
        """Tokens the fired lore may take: a percentage of the context, capped."""
        budget = round(self.budget_percent * context_length / 100) or 1
        return min(budget, self.budget_cap) if self.budget_cap > 0 else budget


# --- reading a book --------------------------------------------------------------------------


def _number(value: Any, default: float, low: float = -MAX_ORDER, high: float = MAX_ORDER) -> float:
    """A number field of an entry: a finite JSON number, clamped to [low, high]; anything else
    (a string, null, a list, NaN, ±Infinity, 1e999) is the field's default, as SillyTavern's
    `??` and `Number(x) || default` make garbage. Huge integers are clamped, never floated."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, float) and not math.isfinite(value):
        return default
    return float(min(max(value, low), high))


def _whole(value: Any, default: int, low: int, high: int) -> int:
    """A whole-number field (depth, scan depth, recursion level): as `_number`, truncated."""
    return int(_number(value, default, low, high))


def _choice(value: Any, choices: type[IntEnum], default: IntEnum) -> Any:
    """One of SillyTavern's numbered choices (position, selectiveLogic); 1.0 counts as 1."""
    number = _number(value, -1.0)
    return choices(int(number)) if number.is_integer() and int(number) in iter(choices) else default


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return ()
    return tuple(s.strip() for s in value if isinstance(s, str) and s.strip())


def _position(entry: BookEntry, ext: dict[str, Any]) -> Position:
    position = _choice(ext.get("position"), Position, None)
    if position is not None:
        return position
    if entry.position == "before_char":
        return Position.BEFORE_CHAR
    if entry.position == "after_char":
        return Position.AFTER_CHAR
    return Position.AT_DEPTH


def _role(value: Any) -> str:
    number = _number(value, -1.0)
    if number.is_integer() and 0 <= number < len(ROLES):
        return ROLES[int(number)]
    return value if isinstance(value, str) and value in ROLES else "system"


def _delay(value: Any) -> int:
    if isinstance(value, bool):
        return 1 if value else 0
    return _whole(value, 0, 0, MAX_RECURSION_LEVEL)


def entry_label(entry: BookEntry) -> str:
    """How the prompt inspector names an entry: its comment or name, else its keys."""
    return entry.comment or entry.name or "、".join(entry.keys) or "(constant entry)"


def lore_entry(entry: BookEntry, book: str = "") -> LoreEntry:
    """A card/World Info entry as activation reads it; ST's fields sit in `extensions`
    (a damaged value falls back to the default, as SillyTavern's `??` does)."""
    ext = entry.extensions if isinstance(entry.extensions, dict) else {}
    probability = _number(ext.get("probability"), 100, 0, 100)
    if ext.get("useProbability") is False:
        probability = 100
    scan_depth = ext.get("scan_depth")
    return LoreEntry(
        content=entry.content,
        keys=_strings(entry.keys),
        secondary_keys=_strings(entry.secondary_keys or []),
        selective=bool(entry.selective),
        logic=_choice(ext.get("selectiveLogic"), Logic, Logic.AND_ANY),
        constant=bool(entry.constant),
        enabled=entry.enabled is not False,
        order=_number(entry.insertion_order, 100),
        position=_position(entry, ext),
        depth=_whole(ext.get("depth"), DEFAULT_DEPTH, 0, MAX_DEPTH),
        role=_role(ext.get("role")),
        probability=probability,
        scan_depth=None
        if _number(scan_depth, -1) < 0
        else _whole(scan_depth, 0, 0, MAX_SCAN_DEPTH),
        case_sensitive=_flag(ext.get("case_sensitive"))
        if "case_sensitive" in ext
        else entry.case_sensitive,
        whole_words=_flag(ext.get("match_whole_words")),
        exclude_recursion=ext.get("exclude_recursion") is True,
        prevent_recursion=ext.get("prevent_recursion") is True,
        delay_until_recursion=_delay(ext.get("delay_until_recursion")),
        label=entry_label(entry),
        book=book,
    )


def book_entries(book: CharacterBook, name: str = "") -> list[LoreEntry]:
    return [lore_entry(entry, name or book.name or "") for entry in book.entries]


def book_rules(book: CharacterBook | None, base: LoreRules | None = None) -> LoreRules:
    """The card's book-level settings (V2 spec: scan_depth, token_budget, recursive_scanning)
    over `base`; SillyTavern's own exports set none of them, so its defaults apply."""
    rules = base or LoreRules()
    if book is None:
        return rules
    changes: dict[str, Any] = {}
    if isinstance(book.scan_depth, int) and 0 <= book.scan_depth:
        changes["scan_depth"] = min(book.scan_depth, MAX_SCAN_DEPTH)
    if isinstance(book.token_budget, int) and book.token_budget > 0:
        changes["budget_cap"] = book.token_budget
    if isinstance(book.recursive_scanning, bool):
        changes["recursive"] = book.recursive_scanning
    return LoreRules(**{**rules.__dict__, **changes})


# --- secondary keys --------------------------------------------------------------------------


def _secondary_ok(entry: LoreEntry, found: Callable[[str], bool]) -> bool:
    hits = [found(key) for key in entry.secondary_keys]
    if entry.logic == Logic.AND_ANY:
        return any(hits)
    if entry.logic == Logic.NOT_ALL:
        return not all(hits)
    if entry.logic == Logic.NOT_ANY:
        return not any(hits)
    return all(hits)  # AND_ALL


# --- activation ----------------------------------------------------------------------------


def turn_seed(session_id: int, depth: int) -> int:
    """The probability rolls' seed for the reply at `depth` of a session's branch: the same
    turn (a regenerate) rolls the same; another turn rolls anew."""
    digest = hashlib.sha256(f"lore:{session_id}:{depth}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def activate(
    groups: Iterable[list[LoreEntry]],
    recent: list[str],
    *,
    count_tokens: Callable[[str], int],
    budget: int,
    rules: LoreRules = LoreRules(),
    rng: random.Random | None = None,
    expand: Callable[[str], str] = lambda text: text,
    clock: RegexClock | None = None,
) -> list[LoreEntry]:
    """The entries that fire, in prompt order (lower insertion_order first).

    `groups`: the books by priority (the session's, then the character's); within a group,
    higher insertion_order first. `recent`: the chat's messages, newest first, as scanned
    ("Name: text"). `count_tokens(text)`: the engine's count; the fired contents must stay
    under `budget`. `expand` fills {{char}}/{{user}} in keys and contents. `clock` bounds the
    time of the regex keys (default: REGEX_TURN_BUDGET_S); its `slow_books` says whose ran out.
    """
    rng = rng or random.Random(0)
    clock = clock or RegexClock()
    ordered: list[LoreEntry] = []
    for group in groups:
        ordered += sorted(
            (e for e in group if e.enabled and e.content.strip()), key=lambda e: -e.order
        )
    chat = [text.strip() for text in recent[:MAX_SCAN_DEPTH]]
    recursion: list[str] = []
    levels = sorted({e.delay_until_recursion for e in ordered if e.delay_until_recursion})
    level = levels.pop(0) if levels else 0
    fired: dict[int, LoreEntry] = {}
    failed: set[int] = set()
    sizes: dict[int, int] = {}
    used = 0  # tokens of the lore fired so far
    recursing, steps = False, 0
    while True:
        if rules.max_recursion_steps and steps >= rules.max_recursion_steps:
            break
        steps += 1
        now = [
            i
            for i, entry in enumerate(ordered)
            if i not in fired
            and i not in failed
            and _fires(entry, chat, recursion, rules, recursing, level, expand, clock)
        ]
        overflow, added = False, []
        for i in now:
            entry = ordered[i]
            if entry.probability < 100 and rng.random() * 100 > entry.probability:
                failed.add(i)
                continue
            if i not in sizes:
                sizes[i] = count_tokens(expand(entry.content) + "\n")
            if used + sizes[i] >= budget:
                overflow = True
                break
            used += sizes[i]
            fired[i] = entry
            added.append(entry)
        feed = [entry for entry in added if not entry.prevent_recursion]
        again = rules.recursive and not overflow and bool(feed)
        if not again and levels:
            again, level = True, levels.pop(0)
        if not again:
            break
        recursion.append("\n".join(expand(entry.content) for entry in feed))
        recursing = True
    chosen = sorted(fired, key=lambda i: (-ordered[i].order, i))
    return [ordered[i] for i in reversed(chosen)]


def _fires(
    entry: LoreEntry,
    chat: list[str],
    recursion: list[str],
    rules: LoreRules,
    recursing: bool,
    level: int,
    expand: Callable[[str], str],
    clock: RegexClock,
) -> bool:
    if entry.delay_until_recursion and (not recursing or entry.delay_until_recursion > level):
        return False
    if recursing and rules.recursive and entry.exclude_recursion:
        return False
    if entry.constant:
        return True
    if not entry.keys:
        return False
    depth = rules.scan_depth if entry.scan_depth is None else entry.scan_depth
    if depth <= 0:
        return False  # SillyTavern scans nothing at depth 0, not even fired lore
    text = "\x01" + "\n\x01".join(chat[: min(depth, MAX_SCAN_DEPTH)])
    if recursion:
        text += "\n\x01" + "\n\x01".join(recursion)
    case = rules.case_sensitive if entry.case_sensitive is None else entry.case_sensitive
    whole = rules.whole_words if entry.whole_words is None else entry.whole_words

    def found(key: str) -> bool:
        key = expand(key).strip()
        return bool(key) and key_matches(
            text, key, case_sensitive=case, whole_words=whole, clock=clock, book=entry.book
        )

    if not any(found(key) for key in entry.keys):
        return False
    if entry.selective and entry.secondary_keys:
        return _secondary_ok(entry, found)
    return True
