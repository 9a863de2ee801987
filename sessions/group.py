"""Scenes: sessions with one persona or several (a group scene), and who speaks when.

A session's cast is `session.settings["cast"]` (a list of persona names; the
first one is also `session.persona`, so single-persona code keeps working), its reply
order `session.settings["reply_order"]` and the members muted or replying only when
mentioned `session.settings["group"]` (`{"muted": [...], "mention_only": [...]}`). No
schema change is needed; sessions saved before keep working (`round_robin` reads as list).

Who answers is sessions/group_order.py's (SillyTavern's natural, list, manual and pooled
orders, mentions by any of a member's names). Each speaker's reply is planned with its own
card (system text, examples, sampling preset, adapter); other speakers' lines reach it with
their names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engines.base import CosplayError, Engine, GenerationParams
from engines.i18n import _
from sessions.context import PromptPlan
from sessions.group_order import (
    Activation,
    Member,
    ReplyOrder,
    SceneRules,
    activate,
    member_of,
    turn_random,
)
from sessions.models import Message, Role, Session
from sessions.prompt import StoredBranch, UserPersona, greetings, plan_prompt
from sessions.runtime import use_persona
from sessions.store import LEAF, Store
from sessions.turns import run_reply

if TYPE_CHECKING:
    from sessions.cards import CharacterCard
    from sessions.personas import PersonaStore

CAST_KEY = "cast"
ORDER_KEY = "reply_order"
RULES_KEY = "group"  # {"muted": [names], "mention_only": [names]}
POOL_LOOKBACK = 200  # messages read back to find who spoke in the current pool


def session_cast(session: Session) -> list[str]:
    """The personas of a session: its cast, else its one persona, else nobody."""
    cast = session.settings.get(CAST_KEY)
    if cast:
        return list(cast)
    return [session.persona] if session.persona else []


def reply_order(session: Session) -> ReplyOrder:
    try:
        return ReplyOrder(session.settings.get(ORDER_KEY, ReplyOrder.NATURAL.value))
    except ValueError:
        return ReplyOrder.NATURAL


def scene_rules(session: Session) -> SceneRules:
    """The scene's order and who is muted or replies only when mentioned (names no longer in
    the cast, or a damaged setting, are ignored)."""
    cast = set(session_cast(session))
    saved = session.settings.get(RULES_KEY)
    saved = saved if isinstance(saved, dict) else {}

    def names(key: str) -> frozenset[str]:
        value = saved.get(key)
        listed = value if isinstance(value, list) else []
        return frozenset(n for n in listed if isinstance(n, str) and n in cast)

    return SceneRules(reply_order(session), names("muted"), names("mention_only"))


def set_scene_rules(
    store: Store,
    session_id: int,
    *,
    order: ReplyOrder | str | None = None,
    muted: Iterable[str] | None = None,
    mention_only: Iterable[str] | None = None,
) -> Session:
    """Change the scene's order, or who is muted or replies only when mentioned (in cast
    order; a name outside the cast is an error)."""
    session = store.get_session(session_id)
    cast = session_cast(session)
    settings = dict(session.settings)
    rules = dict(settings.get(RULES_KEY) or {}) if isinstance(settings.get(RULES_KEY), dict) else {}
    if order is not None:
        try:
            settings[ORDER_KEY] = ReplyOrder(order).value
        except ValueError:
            known = ", ".join(o.value for o in ReplyOrder)
            raise CosplayError(
                _(
                    "There is no reply order {order}; use one of {known}.",
                    order=repr(order),
                    known=known,
                )
            ) from None
    for key, names in (("muted", muted), ("mention_only", mention_only)):
        if names is None:
            continue
        names = set(names)
        outside = sorted(names - set(cast))
        if outside:
            raise CosplayError(
                _("{name} is not in this scene ({cast}).", name=outside[0], cast="、".join(cast))
            )
        rules[key] = [n for n in cast if n in names]
    settings[RULES_KEY] = rules
    return store.update_session(session_id, settings=settings)


def scene_members(cast: list[str], personas: PersonaStore) -> list[Member]:
    """The cast as members with all their names; a persona deleted since it joined answers
    to its name only."""
    members = []
    for name in cast:
        try:
            members.append(member_of(personas.get(name).card))
        except CosplayError:
            members.append(Member(name))
    return members


def resolve_member(name: str, members: list[Member]) -> str | None:
    """The cast member `name` is one of the names of (`@` allowed), or None."""
    name = " ".join(name.lstrip("@＠").split())
    for member in members:
        if name in member.names:
            return member.name
    return None


def choose_speakers(
    store: Store,
    session: Session,
    personas: PersonaStore,
    message: Message,
    pick: list[str] | None = None,
) -> Activation:
    """Who answers `message` in this scene, and what to tell the user about it. `pick` (a
    choice made by hand: "speak now") wins over everything, muted or not."""
    cast = session_cast(session)
    if pick:
        unknown = [name for name in pick if name not in cast]
        if unknown:
            raise CosplayError(
                _("{name} is not in this scene; add them first.", name=repr(unknown[0]))
            )
        return Activation(list(dict.fromkeys(pick)))
    rules = scene_rules(session)
    recent: list[str] = []
    if rules.order == ReplyOrder.POOLED and message.parent_id is not None:
        tail = store.branch_tail(session.id, limit=POOL_LOOKBACK, leaf_id=message.parent_id)
        recent = [m.name for m in tail if m.role == Role.ASSISTANT and m.name]
    rng = turn_random(session.id, message.parent_id, message.content)
    members = scene_members(cast, personas)
    return activate(members, rules, message.content, rng=rng, recent_speakers=recent)


def start_session(
    store: Store,
    cards: CharacterCard | list[CharacterCard],
    *,
    user: UserPersona | None = None,
    title: str | None = None,
    order: ReplyOrder = ReplyOrder.NATURAL,
    settings: dict | None = None,
) -> Session:
    """A new session with these personas, opened by their greetings.

    Each persona's first_mes is saved as an assistant message carrying its name;
    its alternate greetings become siblings of that message (swipes), and the
    first greeting stays current. In a group scene the greetings follow each other.
    """
    cards = list(cards) if isinstance(cards, list | tuple) else [cards]
    if not cards:
        raise CosplayError(_("A scene needs at least one persona."))
    names = [card.name for card in cards]
    if len(set(names)) != len(names):
        raise CosplayError(_("Each persona can be in a scene only once."))
    settings = dict(settings or {})
    settings[CAST_KEY] = names
    settings[ORDER_KEY] = ReplyOrder(order).value
    if user is not None:
        settings["user"] = user.to_value()
    session = store.create_session(
        title=title or "、".join(names), persona=names[0], settings=settings
    )
    parent: int | None = None
    for card in cards:
        texts = greetings(card, user)
        if not texts:
            continue
        first = store.add_message(
            session.id,
            Role.ASSISTANT,
            texts[0],
            parent_id=parent,
            name=card.name,
            meta={"persona": card.name, "greeting": 0},
        )
        for index, text in enumerate(texts[1:], start=1):
            store.add_message(
                session.id,
                Role.ASSISTANT,
                text,
                parent_id=parent,
                name=card.name,
                meta={"persona": card.name, "greeting": index},
                make_leaf=False,
            )
        parent = first.id
    return store.get_session(session.id)


def set_cast(
    store: Store, session_id: int, names: list[str], order: ReplyOrder | None = None
) -> Session:
    """Replace the cast (switch persona, add or remove characters); history is kept."""
    session = store.get_session(session_id)
    names = list(dict.fromkeys(names))  # no duplicates, order kept
    settings = dict(session.settings)
    settings[CAST_KEY] = names
    if order is not None:
        settings[ORDER_KEY] = ReplyOrder(order).value
    return store.update_session(session_id, persona=names[0] if names else "", settings=settings)


@dataclass
class SpeakerTurn:
    """Everything needed to generate one speaker's reply."""

    speaker: str
    card: CharacterCard
    plan: PromptPlan
    params: GenerationParams  # the session's params with the persona's preset and stop strings
    adapter: str | None  # the adapter active for this reply (plan_turn switched to it)


def speaker_params(
    params: GenerationParams,
    card: CharacterCard,
    *,
    session: Session | None = None,
    others: list[str] | None = None,
) -> GenerationParams:
    """The persona's sampling preset over `params` (explicit session params still win), plus
    stop strings so the model does not write the other speakers' lines."""
    explicit = set((session.settings.get("params") or {}) if session else {})
    values = params.to_dict()
    values |= {k: v for k, v in card.cosplay.sampling.items() if k not in explicit}
    stops = list(values.get("stop") or [])
    for name in others or []:
        for stop in (f"\n{name}:", f"\n{name}："):
            if stop not in stops:
                stops.append(stop)
    values["stop"] = stops
    return GenerationParams(**values)


def plan_turn(
    store: Store,
    session_id: int,
    engine: Engine,
    params: GenerationParams,
    personas: PersonaStore,
    speaker: str | None = None,
    *,
    user: UserPersona | None = None,
    leaf_id: int | None = None,
    pending: Message | None = None,
    lore_placement: str | None = None,
) -> SpeakerTurn:
    """Switch the engine to `speaker`'s adapter and template (default speaker: the session's
    persona) and plan its reply to `leaf_id` (None: the current leaf), reading the branch back
    only as far as the context window reaches (`lore_placement`: as plan_prompt's)."""
    session = store.get_session(session_id)
    cast = session_cast(session)
    speaker = speaker or (cast[0] if cast else None)
    if speaker is None:
        raise CosplayError(_("This session has no persona; start it with one or add one to it."))
    card = personas.get(speaker).card
    adapter = use_persona(engine, card)  # before planning: the template decides the prompt
    user = user or UserPersona.from_value(session.settings.get("user"))
    branch = StoredBranch(store, session_id, leaf_id, pending)
    plan = plan_prompt(
        session, branch, engine, params, card=card, user=user, cast=cast,
        lore_placement=lore_placement,
    )  # fmt: skip
    # Stop where the model starts another speaker's line: by any name they answer to.
    others = [
        name
        for member in scene_members(cast, personas)
        if member.name != speaker
        for name in member.names
    ] + [user.name]
    return SpeakerTurn(
        speaker=speaker,
        card=card,
        plan=plan,
        params=speaker_params(params, card, session=session, others=others),
        adapter=adapter,
    )


def run_group_turn(
    store: Store,
    engine: Engine,
    personas: PersonaStore,
    session_id: int,
    speakers: list[str],
    params: GenerationParams,
    cancel: threading.Event,
    *,
    user: UserPersona | None = None,
    on_start: Callable[[SpeakerTurn], None] | None = None,
    on_piece: Callable[[str, str], None] | None = None,
    lore_placement: str | None = None,
) -> list[Message]:
    """One reply from each speaker in turn, each appended to the branch as it ends.

    Each speaker gets its own card's prompt and its adapter (or none). Stops early when
    `cancel` is set; an engine error stops the round (the failed reply is saved as error).
    `on_start(turn)` runs before each reply, `on_piece(speaker, piece)` for each piece.
    """
    replies: list[Message] = []
    for speaker in speakers:
        if cancel.is_set():
            break
        turn = plan_turn(
            store, session_id, engine, params, personas, speaker, user=user,
            lore_placement=lore_placement,
        )  # fmt: skip
        if on_start is not None:
            on_start(turn)
        reply = run_reply(
            store,
            engine,
            session_id=session_id,
            parent_id=LEAF,  # after the reply before it, read and appended in one transaction
            prompt=turn.plan.messages,
            params=turn.params,
            cancel=cancel,
            on_piece=(lambda piece, who=speaker: on_piece(who, piece)) if on_piece else None,
            name=speaker,
            extra_meta={"persona": speaker, "adapter": turn.adapter},
        )
        replies.append(reply)
    return replies
