"""Who answers in a group scene: the members' names, mentions, and the four reply orders.

SillyTavern's activation strategies (public/scripts/group-chats.js), with the same names:

- natural: the members named in the message (any of their names, `@` or not) first, then each
  other member by a roll against its talkativeness (the card's `extensions.talkativeness`,
  default 0.5), in shuffled order; nobody at all → one talkative member at random;
- list: every member once, in cast order (older sessions call it `round_robin`);
- manual: nobody, unless addressed with `@名字` (or picked: the "speak now" of the scene
  dialog);
- pooled: one member, at random among those who have not spoken in the current pool, so
  everyone speaks once before anyone speaks twice (SillyTavern's pool restarts at each message
  of yours, which makes it plain random after one; ours carries over until everyone has
  spoken); a fresh pool leaves out whoever spoke last.

In every order `@名字` (or `＠名字`) wins: only the members addressed answer, in the order
addressed. A muted member never speaks unless picked; a "reply only when mentioned" member
speaks only when addressed (by `@`, or by name in natural order). The random draws are seeded
by the session, the place of the message answered and its text, so a turn is reproducible and
a regenerate picks the same speakers.

A member answers to its card name, the V3 `nickname` and the aliases in
`extensions.cosplay.aliases`; where names overlap (刘备, 刘备之) the longest match wins. A `@`
naming nobody is reported, never taken for "everyone".
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from engines.i18n import N_, _

if TYPE_CHECKING:
    from sessions.cards import CharacterCard

AT_SIGNS = "@＠"
DEFAULT_TALKATIVENESS = 0.5  # SillyTavern's talkativeness_default
MAX_SHOWN_NAME = 16  # characters of an unknown `@name` quoted in a notice


class ReplyOrder(str, Enum):
    """SillyTavern's group_activation_strategy: NATURAL 0, LIST 1, MANUAL 2, POOLED 3."""

    NATURAL = "natural"
    LIST = "list"
    MANUAL = "manual"
    POOLED = "pooled"
    ROUND_ROBIN = "list"  # the old name of list order, kept for code that says it

    @classmethod
    def _missing_(cls, value):
        if value == "round_robin":  # the name sessions saved before pooled and list existed
            return cls.LIST
        return None

    @property
    def summary(self) -> str:
        return ORDER_SUMMARIES[self]


ORDER_SUMMARIES = {
    ReplyOrder.NATURAL: "whoever is named, then others by their talkativeness",
    ReplyOrder.LIST: "everyone once, in order",
    ReplyOrder.MANUAL: "only whoever is addressed with @名字",
    ReplyOrder.POOLED: "one at a time, everyone once before anyone twice",
}


@dataclass(frozen=True)
class Member:
    """One character of a scene: the names it answers to (its card name first)."""

    name: str
    aliases: tuple[str, ...] = ()
    talkativeness: float = DEFAULT_TALKATIVENESS

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *(a for a in self.aliases if a != self.name))


def member_of(card: CharacterCard) -> Member:
    """A card's member: its name, nickname and aliases, and its talkativeness."""
    aliases: list[str] = []
    nickname = (card.data.model_extra or {}).get("nickname")
    if isinstance(nickname, str):
        aliases.append(nickname)
    aliases += card.cosplay.aliases
    cleaned = [" ".join(a.split()) for a in aliases]
    unique = tuple(dict.fromkeys(a for a in cleaned if a and a != card.name))
    return Member(card.name, unique, talkativeness_of(card.data.extensions.get("talkativeness")))


def talkativeness_of(value) -> float:
    """SillyTavern keeps talkativeness as a string ("0.5"); anything unreadable is the default."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DEFAULT_TALKATIVENESS
    if number != number:  # NaN
        return DEFAULT_TALKATIVENESS
    return min(max(number, 0.0), 1.0)


@dataclass(frozen=True)
class SceneRules:
    """A scene's settings: its reply order, who is muted, who replies only when mentioned."""

    order: ReplyOrder = ReplyOrder.NATURAL
    muted: frozenset[str] = frozenset()
    mention_only: frozenset[str] = frozenset()


@dataclass
class Mentions:
    """What a message says about the cast: who it addresses with `@`, who it names at all (in
    order of first mention), and the `@` words that match nobody."""

    addressed: list[str] = field(default_factory=list)
    named: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def find_mentions(text: str, members: Iterable[Member]) -> Mentions:
    """Scan `text` once: at each place the longest of any member's names that starts there.

    `@名字`/`＠名字` addresses a member; an `@` right after a letter or digit (an e-mail
    address) is not a mention; an `@` followed by no member's name is `unknown`."""
    by_name: dict[str, str] = {}
    for member in members:
        for name in member.names:
            by_name.setdefault(name, member.name)
    names = sorted(by_name, key=len, reverse=True)
    found = Mentions()
    index = 0
    while index < len(text):
        at = text[index] in AT_SIGNS and (index == 0 or not text[index - 1].isalnum())
        start = index + 1 if at else index
        match = next((name for name in names if text.startswith(name, start)), None)
        if match is not None:
            member = by_name[match]
            if at and member not in found.addressed:
                found.addressed.append(member)
            if member not in found.named:
                found.named.append(member)
            index = start + len(match)
            continue
        if at:
            word = _word_at(text, start)
            if word and word not in found.unknown:
                found.unknown.append(word)
            index = start + max(len(word), 0)
            continue
        index += 1
    return found


def _word_at(text: str, start: int) -> str:
    """The word after an `@` that matched nobody: up to a space or punctuation, shortened."""
    end = start
    while end < len(text) and not _is_break(text[end]):
        end += 1
    word = text[start:end]
    return word if len(word) <= MAX_SHOWN_NAME else word[:MAX_SHOWN_NAME] + "…"


def _is_break(char: str) -> bool:
    return char.isspace() or char in AT_SIGNS or unicodedata.category(char)[0] in "PSZ"


@dataclass
class Activation:
    """Who answers, in order, and what to tell the user about it (an `@` matching nobody,
    a muted member addressed, nobody left to speak)."""

    speakers: list[str]
    notices: list[str] = field(default_factory=list)


def turn_random(session_id: int, parent_id: int | None, text: str) -> random.Random:
    """The random draws of the turn answering a message of yours: seeded by the session, the
    place in it (the message's parent) and the text, so the same message at the same place
    picks the same speakers (a regenerate, the prompt inspector's preview before sending)."""
    return random.Random(f"cosplay-scene:{session_id}:{parent_id}:{text}")


def activate(
    members: list[Member],
    rules: SceneRules,
    text: str,
    *,
    rng: random.Random,
    recent_speakers: Iterable[str] = (),
) -> Activation:
    """Who answers a message of yours saying `text` in a scene of `members` under `rules`.

    `recent_speakers`: the members who spoke before it, oldest first (for pooled order; names
    outside the cast are ignored)."""
    cast = [m.name for m in members]
    mentions = find_mentions(text, members)
    notices = _unknown_notice(mentions, cast)
    muted_addressed = [n for n in mentions.addressed if n in rules.muted]
    if muted_addressed:
        muted_text = (
            N_(
                "{names} is muted in this scene; unmute in the scene dialog (F10) to let them speak."
            )
            if len(muted_addressed) == 1
            else N_(
                "{names} are muted in this scene; unmute in the scene dialog (F10) to let them "
                "speak."
            )
        )
        notices.append(_(muted_text, names="、".join(muted_addressed)))
    addressed = [n for n in mentions.addressed if n not in rules.muted]
    if addressed:
        return Activation(addressed, notices)
    if mentions.addressed:  # every member addressed is muted: nobody else is picked for them
        return Activation([], notices)
    speaking = [m for m in members if m.name not in rules.muted]
    free = [m for m in speaking if m.name not in rules.mention_only]
    if rules.order == ReplyOrder.MANUAL:
        speakers: list[str] = []
        notices.append(
            _(
                "Manual order: nobody was addressed; address someone with @名字 ({names}), or "
                "let one speak now from the scene dialog (F10).",
                names="、".join(m.name for m in speaking) or _("nobody can speak"),
            )
        )
    elif rules.order == ReplyOrder.LIST:
        speakers = [m.name for m in free]
    elif rules.order == ReplyOrder.POOLED:
        speakers = _pooled(free, list(recent_speakers), rng)
    else:
        named = [n for n in mentions.named if n not in rules.muted]
        speakers = _natural(named, free, rng)
    if not speakers and rules.order != ReplyOrder.MANUAL:
        if not speaking:
            notices.append(_("Everyone in this scene is muted; unmute someone in the scene (F10)."))
        elif not free:
            notices.append(
                _(
                    "{names} reply only when mentioned: address one with @名字.",
                    names="、".join(m.name for m in speaking),
                )
            )
    return Activation(speakers, notices)


def _unknown_notice(mentions: Mentions, cast: list[str]) -> list[str]:
    if not mentions.unknown:
        return []
    who = "、".join(f"@{word}" for word in mentions.unknown)
    values = {"who": who, "cast": "、".join(cast) or _("nobody")}
    one = len(mentions.unknown) == 1
    if mentions.addressed:
        text = (
            N_("{who} is not in this scene ({cast}); answering {addressed}.")
            if one
            else N_("{who} are not in this scene ({cast}); answering {addressed}.")
        )
        return [_(text, addressed="、".join(mentions.addressed), **values)]
    text = (
        N_(
            "{who} is not in this scene ({cast}); nobody was addressed, so the scene's order "
            "picks the speaker."
        )
        if one
        else N_(
            "{who} are not in this scene ({cast}); nobody was addressed, so the scene's order "
            "picks the speaker."
        )
    )
    return [_(text, **values)]


def _natural(named: list[str], free: list[Member], rng: random.Random) -> list[str]:
    """SillyTavern's activateNaturalOrder after a message of yours: the named members, then a
    talkativeness roll for each of the others in shuffled order; nobody → one at random among
    the talkative (talkativeness > 0), else among all."""
    speakers = list(named)
    shuffled = list(free)
    rng.shuffle(shuffled)
    for member in shuffled:
        if member.talkativeness >= rng.random() and member.name not in speakers:
            speakers.append(member.name)
    if not speakers and free:
        chatty = [m for m in free if m.talkativeness > 0] or free
        speakers.append(rng.choice(chatty).name)
    return speakers


def _pooled(free: list[Member], recent: list[str], rng: random.Random) -> list[str]:
    """One member not yet heard in the current pool; a pool ends when everyone has spoken, and
    a new one leaves out the last speaker (when there is anyone else)."""
    names = [m.name for m in free]
    if not names:
        return []
    spoken: set[str] = set()
    last = None
    for speaker in recent:
        if speaker not in names:
            continue
        spoken.add(speaker)
        last = speaker
        if spoken >= set(names):
            spoken = set()
    pool = [n for n in names if n not in spoken]
    if not spoken and last is not None and len(pool) > 1:
        pool.remove(last)
    return [rng.choice(pool)]
