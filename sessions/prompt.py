"""Turn a session (its persona and transcript) into the prompt for the next reply.

With a persona card the prompt is, in order: the system text (the card's
system_prompt or our roleplay default, then description, personality,
scenario, the user persona, with lore that asks for the system text before
or after the character), the card's example dialogues (one block per
`<START>`, dropped first when the context fills), the memory summary, the
history with at-depth lore and the Author's Note put in near its end
(sessions/placement.py, sessions/lore_plan.py), and the card's post-history
instructions. `{{char}}`/`<BOT>`
and `{{user}}`/`<USER>` expand everywhere; `{{original}}` in system_prompt
and post_history_instructions stands for the text they replace.
creator_notes never reach the prompt.

The parts have their own modules: the persona's text (macros, the user persona, examples,
greetings, system and post-history text) sessions/persona_text.py, the speaker's view of a group
scene sessions/speaker_view.py, and the branch read back with its token counts
sessions/branch_window.py; their public names import from here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engines.base import Engine, GenerationParams
from engines.i18n import _
from sessions.branch_window import StoredBranch, history_window, save_counts, tokenizer_key
from sessions.context import PromptPlan, plan_window
from sessions.history_window import Window
from sessions.lore_plan import turn_extras
from sessions.models import Message, Session
from sessions.persona_text import (
    DEFAULT_ROLEPLAY_PROMPT,
    GROUP_PROMPT,
    UserPersona,
    expand_macros,
    greetings,
    parse_examples,
    post_history_text,
    system_text,
)
from sessions.placement import Extras, memory_text
from sessions.speaker_view import NAME_AWARE_TEMPLATES, seen_as_user, speaker_view

if TYPE_CHECKING:  # the card models (pydantic) load only when a persona is used
    from sessions.cards import CharacterCard
    from sessions.personas import PersonaStore

__all__ = [
    "DEFAULT_ROLEPLAY_PROMPT",
    "DEFAULT_SYSTEM",
    "GROUP_PROMPT",
    "NAME_AWARE_TEMPLATES",
    "StoredBranch",
    "UserPersona",
    "expand_macros",
    "greetings",
    "history_rounds",
    "history_window",
    "parse_examples",
    "plan_prompt",
    "post_history_text",
    "save_counts",
    "seen_as_user",
    "speaker_view",
    "system_text",
    "tokenizer_key",
]

DEFAULT_SYSTEM = "You are a helpful assistant."


def plan_prompt(
    session: Session,
    branch: list[Message] | StoredBranch,
    engine: Engine,
    params: GenerationParams,
    *,
    card: CharacterCard | None = None,
    personas: PersonaStore | None = None,
    user: UserPersona | None = None,
    cast: list[str] | None = None,
    lore_placement: str | None = None,
) -> PromptPlan:
    """Persona text + examples + as much recent history as fits n_ctx − max_new_tokens.

    `branch` is the transcript up to the message being answered: a `StoredBranch`, read from
    its end only as far as the window reaches, or the messages themselves (root first).
    `card` is the speaker's card; without it the session's persona (`session.persona`)
    is read from `personas` (a PersonaStore).
    `user` defaults to `session.settings["user"]`; `cast` (for group scenes) to
    `session.settings["cast"]`. A session with no persona gets the plain system prompt.
    `lore_placement`: the config's lore.placement (sessions/placement.py), which
    `session.settings["lore_placement"]` overrides.
    """
    settings = session.settings
    notes: list[str] = []
    if card is None and session.persona:
        card, note = _session_card(session.persona, personas)
        notes += [note] if note else []
    # Reserve room for the reply, but never more than half the window.
    budget = engine.context_length - min(params.max_new_tokens, engine.context_length // 2)
    max_rounds = history_rounds(settings)
    window = history_window(branch, engine)
    user = user or UserPersona.from_value(settings.get("user"))
    home = branch.store.path.parent if isinstance(branch, StoredBranch) else None
    try:
        extras, lore = turn_extras(session, window, engine, card, user, home, lore_placement)
        if card is None:
            system = settings.get("system_prompt") or DEFAULT_SYSTEM
            around = [*extras.prompt_start, *extras.before_char, system]
            around += [*extras.after_char, *extras.prompt_end]
            plan = plan_window(
                window,
                system="\n\n".join(text for text in around if text),
                count_tokens=engine.count_tokens,
                budget=budget,
                max_rounds=max_rounds,
                memory=memory_text(settings),
                injections=extras.injections,
            )
        else:
            plan = _persona_plan(session, window, engine, card, budget, user, cast, extras)
    finally:
        save_counts(window, branch, engine)
    plan.lore = lore.labels
    plan.placed = extras.placed + plan.placed
    plan.notes += notes + lore.notes
    return plan


def _persona_plan(
    session: Session,
    window: Window,
    engine: Engine,
    card: CharacterCard,
    budget: int,
    user: UserPersona,
    cast: list[str] | None,
    extras: Extras,
) -> PromptPlan:
    settings = session.settings
    name_aware = getattr(engine, "template_name", "") in NAME_AWARE_TEMPLATES
    char, user_name = card.name, user.name
    return plan_window(
        window,
        system=system_text(
            card,
            user=user,
            original=settings.get("system_prompt") or DEFAULT_ROLEPLAY_PROMPT,
            cast=cast if cast is not None else settings.get("cast"),
            extras=extras,
        ),
        count_tokens=engine.count_tokens,
        budget=budget,
        max_rounds=history_rounds(settings),
        examples=parse_examples(card.data.mes_example, char=char, user=user_name),
        post_history=post_history_text(
            card, user=user, original=settings.get("post_history_instructions") or ""
        ),
        view=lambda kept: speaker_view(kept, char=char, user=user_name, name_aware=name_aware),
        starts_round=lambda message: seen_as_user(message, char),
        memory=memory_text(settings),
        injections=extras.injections,
    )


def history_rounds(settings: dict[str, Any]) -> int | None:
    """The session's "max history rounds" (None: no limit, also for a damaged value)."""
    value = settings.get("max_history_rounds")
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def _session_card(name: str, personas: PersonaStore | None) -> tuple[CharacterCard | None, str]:
    from sessions.personas import PersonaError

    if personas is None:
        return None, _("persona {name!r} not given; replying without it", name=name)
    try:
        return personas.get(name).card, ""
    except PersonaError:
        return None, _("persona {name!r} not found; replying without it", name=name)
