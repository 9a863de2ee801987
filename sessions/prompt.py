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
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engines.base import ChatMessage, Engine, GenerationParams
from sessions.context import PromptPlan, plan_window
from sessions.history_window import Entry, TokenEstimate, Window
from sessions.lore_plan import turn_extras
from sessions.models import Message, Session
from sessions.placement import Extras, memory_text
from sessions.store import Store
from sessions.store_schema import StoreError
from sessions.turns import prompt_message

if TYPE_CHECKING:  # the card models (pydantic) load only when a persona is used
    from sessions.cards import CharacterCard
    from sessions.personas import PersonaStore

DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_ROLEPLAY_PROMPT = (
    "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}. "
    "Stay in character and write only {{char}}'s own words and actions."
)
GROUP_PROMPT = (
    "This is a group scene with {members} and {{user}}. "
    "Write only {{char}}'s next reply; never speak for the others."
)
# Templates that render each message's `name` themselves (`某某曰：`), so other
# speakers' lines need no "Name: " prefix in the text.
NAME_AWARE_TEMPLATES = {"cosplay"}

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


def speaker_view(
    history: list[ChatMessage], *, char: str, user: str, name_aware: bool
) -> list[ChatMessage]:
    """The transcript as `char` sees it: its own lines are the assistant's, everyone else's
    (the user and other characters) are user turns carrying their names. For templates that
    do not render names, other speakers' lines get a "Name: " prefix, and consecutive user
    turns are merged so templates that insist on alternating roles still render."""
    group = any(
        m.get("role") == "assistant" and m.get("name") not in (None, "", char) for m in history
    )
    view: list[ChatMessage] = []
    for message in history:
        role, name = message.get("role", "user"), message.get("name", "")
        content = message.get("content", "")
        if role == "assistant" and name and name != char:
            role = "user"
        elif role == "assistant":
            name = char
        elif role == "user":
            name = name or user
        entry: ChatMessage = {"role": role, "content": content}
        if name:
            entry["name"] = name
        if group and role == "user" and not name_aware:
            entry["content"] = f"{name}: {content}"
            if view and view[-1]["role"] == "user":
                view[-1]["content"] += "\n\n" + entry["content"]
                continue
        view.append(entry)
    return view


def seen_as_user(message: ChatMessage, char: str) -> bool:
    """Whether `char` sees this line as a user turn (the user's, or another character's): a
    round of its conversation starts there."""
    role, name = message.get("role"), message.get("name")
    return role == "user" or (role == "assistant" and bool(name) and name != char)


@dataclass(frozen=True)
class StoredBranch:
    """A session's branch as planning reads it: from `leaf_id` (None: the session's leaf) up,
    only as far as the window reaches, each message's token count kept in the store."""

    store: Store
    session_id: int
    leaf_id: int | None = None
    # A message not saved, as if sent below the leaf: what `ask --dry-run` and the prompt
    # inspector plan with (its id is not a stored one; nothing is counted or saved for it).
    pending: Message | None = None


def tokenizer_key(engine: Engine) -> str:
    """What a message's token count depends on: the engine's model (its tokenizer) and the chat
    template that frames each message. An adapter changes neither, so switching one keeps
    the counts; another model or template counts again."""
    template = getattr(engine, "template", None)
    model = getattr(engine, "model_path", None) or engine.model_name
    identity = "\0".join(
        [
            str(getattr(engine, "kind", type(engine).__name__)),
            str(model),
            engine.template_name,
            str(getattr(template, "source", "")),
        ]
    )
    digest = hashlib.sha1(identity.encode("utf-8", "replace")).hexdigest()[:16]
    return f"{engine.template_name}:{digest}"


def history_window(branch: list[Message] | StoredBranch, engine: Engine) -> Window:
    """The branch read backwards as planning asks, each message with its estimated token
    cost: a stored branch's saved counts are reused, the rest counted when planning reaches
    them (`save_counts` keeps them)."""
    estimate = TokenEstimate(engine.count_tokens)
    if isinstance(branch, StoredBranch):
        return _stored_window(branch, tokenizer_key(engine), estimate)
    end = len(branch)

    def read(limit: int) -> tuple[list[Entry], bool]:
        nonlocal end
        start = max(0, end - limit)
        page = branch[start:end]
        end = start
        return [Entry(m, message.depth) for message, m in _shown(page)], start == 0

    return Window(read, estimate)


def _stored_window(branch: StoredBranch, key: str, estimate: TokenEstimate) -> Window:
    store = branch.store
    above: int | None = branch.leaf_id  # the message whose branch is read next
    if above is None:
        above = store.get_session(branch.session_id).leaf_id

    seen: set[int] = set()  # a damaged tree's parent_id cycle ends the branch at its repeat
    pending = _shown([branch.pending]) if branch.pending is not None else []

    def read(limit: int) -> tuple[list[Entry], bool]:
        nonlocal above, pending
        tail = [Entry(m, message.depth) for message, m in pending]
        pending = []
        if above is None:
            return tail, True
        page = store.branch_tail(branch.session_id, above, limit=limit)
        full = len(page) == limit
        start = len(page)  # walk up from the leaf side until a message read before
        while start and page[start - 1].id not in seen:
            start -= 1
        cycle = start > 0
        page = page[start:]
        seen.update(message.id for message in page)
        above = page[0].parent_id if page and not cycle else None
        shown = _shown(page)
        counts = store.token_counts([message.id for message, _ in shown], key)
        entries = [
            Entry(m, message.depth, counts.get(message.id), message.id) for message, m in shown
        ]
        return entries + tail, above is None or not full

    return Window(read, estimate)


def save_counts(window: Window, branch: list[Message] | StoredBranch, engine: Engine) -> None:
    """Keep the token counts planning made, for the next turn (best effort: a read-only
    database counts them again next time)."""
    if isinstance(branch, StoredBranch) and window.counted:
        try:
            branch.store.save_token_counts(tokenizer_key(engine), window.counted)
        except StoreError:
            pass


def _shown(page: list[Message]) -> list[tuple[Message, ChatMessage]]:
    return [(message, m) for message in page if (m := prompt_message(message)) is not None]


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
        return None, f"persona {name!r} not given; replying without it"
    try:
        return personas.get(name).card, ""
    except PersonaError:
        return None, f"persona {name!r} not found; replying without it"
