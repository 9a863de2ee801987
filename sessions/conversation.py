"""The reply flow of one session, for the chat screen and `cosplay ask` alike.

A turn is the message being answered and who answers it: the assistant in a plain chat, the
persona, or the characters of a group scene in order. `Conversation` saves what the user says
(a new message, or a new version of one), works out the turn, and streams the replies into the
store; the callers only show them. Nothing here knows about Textual or the terminal.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

from engines.base import ChatMessage, CosplayError, Engine, GenerationParams
from engines.i18n import _
from sessions.context import PromptPlan
from sessions.group import choose_speakers, plan_turn, run_group_turn, session_cast
from sessions.history_window import TokenEstimate
from sessions.kvstates import SessionStates
from sessions.models import Message, Role, Session
from sessions.prompt import (
    NAME_AWARE_TEMPLATES,
    StoredBranch,
    UserPersona,
    expand_macros,
    plan_prompt,
)
from sessions.runtime import use_persona
from sessions.store import LEAF
from sessions.turns import continue_reply, run_reply
from sessions.workspace import NEW_TITLE, Workspace

ASSISTANT = "Assistant"  # the speaker of a plain chat's replies
# SillyTavern's default impersonation prompt (default_impersonation_prompt in its
# public/scripts/openai.js); a session may set its own as settings["impersonation_prompt"].
IMPERSONATION_PROMPT = (
    "[Write your next reply from the point of view of {{user}}, using the chat history so far "
    "as a guideline for the writing style of {{user}}. Don't write as {{char}} or system. "
    "Don't describe actions of {{char}}.]"
)


@dataclass(frozen=True)
class Turn:
    """The message to answer and who answers it, in order (none: the plain assistant)."""

    parent_id: int
    speakers: tuple[str, ...] = ()


@dataclass
class ReplyEvents:
    """What a caller shows while replies stream: each reply's start, then its pieces."""

    started: Callable[[str, PromptPlan], None] = lambda speaker, plan: None
    piece: Callable[[str], None] = lambda text: None


class Conversation:
    def __init__(self, workspace: Workspace, engine: Engine | None, session_id: int):
        self.workspace = workspace
        self.engine = engine
        self.session_id = session_id
        self.last_plan: PromptPlan | None = None

    @property
    def store(self):
        return self.workspace.store

    @property
    def session(self) -> Session:
        return self.store.get_session(self.session_id)

    @property
    def lore_placement(self) -> str:
        """The config's lore.placement (a session's own setting overrides it when planning)."""
        return str(self.workspace.config.get("lore.placement"))

    @property
    def cast(self) -> list[str]:
        return session_cast(self.session)

    def params(self) -> GenerationParams:
        """The session's generation parameters (a damaged setting falls back to defaults)."""
        try:
            return GenerationParams(**(self.session.settings.get("params") or {}))
        except (TypeError, ValueError):
            return GenerationParams()

    # --- what the user says -------------------------------------------------------------------

    def say(self, text: str) -> Message:
        """Save the user's message at the end of the current branch; a new chat takes its title
        from it."""
        session = self.session
        # LEAF: read the leaf and append in one transaction, so two processes' turns chain.
        message = self.store.add_message(self.session_id, Role.USER, text, parent_id=LEAF)
        if session.title == NEW_TITLE and text.strip():
            self.store.update_session(self.session_id, title=text.strip().splitlines()[0][:40])
        return message

    def edit(self, message: Message, text: str) -> Message:
        """Save `text` as a new version of `message`, yours or a reply (the old one and what
        follows it are kept), and make it current."""
        return self.store.add_message(
            self.session_id,
            message.role,
            text,
            parent_id=message.parent_id,
            name=message.name,
            meta={"edited_from": message.id} if message.role != Role.USER else None,
        )

    # --- who answers --------------------------------------------------------------------------

    def turn_after(self, message: Message, pick: list[str] | None = None) -> Turn | None:
        """Who answers `message` (see `answer`); None when nobody does."""
        return self.answer(message, pick)[0]

    def answer(
        self, message: Message, pick: list[str] | None = None
    ) -> tuple[Turn | None, list[str]]:
        """Who answers `message`, and what to tell the user about it: the assistant in a plain
        chat, the persona in a persona chat, else the cast members its text addresses or the
        scene's order picks (`pick`: a choice made by hand). The turn is None when nobody
        answers (a manual order and nobody addressed, everyone muted); the notices say why,
        and name an `@` that matched nobody."""
        cast = self.cast
        if not cast:
            return Turn(message.id), []
        if len(cast) == 1 and not pick:
            return Turn(message.id, (cast[0],)), []
        chosen = choose_speakers(self.store, self.session, self.workspace.personas, message, pick)
        turn = Turn(message.id, tuple(chosen.speakers)) if chosen.speakers else None
        return turn, chosen.notices

    def regenerate(self, message: Message | None = None) -> Turn | None:
        """The turn that writes a new version of `message` (default: the last one) by its speaker
        again, or a new reply to it when it is yours; None when there is nothing to regenerate
        (an empty chat, a greeting)."""
        tail = [message] if message else self.store.branch_tail(self.session_id, limit=1)
        if not tail:
            return None
        last = tail[-1]
        if last.role == Role.USER:
            return self.turn_after(last)
        if last.parent_id is None:  # a greeting: no message to answer again
            return None
        speakers = (last.name,) if last.name and last.name in self.cast else ()
        return Turn(last.parent_id, speakers)

    # --- replies ------------------------------------------------------------------------------

    def preview(
        self, text: str, params: GenerationParams, pick: list[str] | None = None
    ) -> PromptPlan | None:
        """The prompt the next reply gets if `text` is sent now ("": the reply to the current
        last message), for the prompt inspector and `ask --dry-run`. Nothing is saved (but
        token counts); None when a manual-order scene has nobody addressed."""
        if not text.strip():
            tail = self.store.branch_tail(self.session_id, limit=1)
            if not tail:
                raise CosplayError(_("The chat is empty: type a message to see its prompt."))
            turn = self.turn_after(tail[-1], pick)
            return None if turn is None else self.plan(turn, params)
        pending = self.pending(text)
        turn = self.turn_after(pending, pick)
        return None if turn is None else self.plan(turn, params, pending)

    def pending(self, text: str) -> Message:
        """`text` as your next message, not saved (id -1): what `say` would save now."""
        leaf = self.store.branch_tail(self.session_id, limit=1)
        return Message(
            id=-1,
            session_id=self.session_id,
            parent_id=self.session.leaf_id,
            role=Role.USER,
            content=text,
            depth=leaf[-1].depth + 1 if leaf else 0,
        )

    def plan(
        self, turn: Turn, params: GenerationParams, pending: Message | None = None
    ) -> PromptPlan:
        """The prompt of the turn's first reply, as `reply` sends it (a group turn: its first
        speaker's, with that persona's adapter and template switched on). Generates and saves
        nothing but the token counts of messages not counted before. `pending`: a message of
        yours not saved, answered as if sent (then `turn.parent_id` is its id, not stored)."""
        engine = self._engine()
        leaf = turn.parent_id if pending is None else pending.parent_id
        if turn.speakers:
            return plan_turn(
                self.store,
                self.session_id,
                engine,
                params,
                self.workspace.personas,
                turn.speakers[0],
                leaf_id=leaf,
                pending=pending,
                lore_placement=self.lore_placement,
            ).plan
        use_persona(engine, None)  # the engine's own adapter and template
        branch = StoredBranch(self.store, self.session_id, leaf, pending)
        session = self.session
        personas = self.workspace.personas if session.persona else None  # read only if needed
        return plan_prompt(
            session, branch, engine, params, personas=personas, lore_placement=self.lore_placement
        )

    def _engine(self) -> Engine:
        if self.engine is None:
            raise CosplayError(
                _("No model is loaded: start with `cosplay chat --model PATH` (or --demo).")
            )
        return self.engine

    def reply(
        self,
        turn: Turn,
        params: GenerationParams,
        cancel: threading.Event,
        events: ReplyEvents | None = None,
    ) -> list[Message]:
        """Stream the turn's replies into the store, each a child of the one before; the first
        answers `turn.parent_id`. Stops early once `cancel` is set; an engine error is saved on
        its reply and raised."""
        engine = self._engine()
        events = events or ReplyEvents()
        if turn.speakers:
            self.store.update_session(self.session_id, leaf_id=turn.parent_id)

            def started(speaker_turn) -> None:
                self.last_plan = speaker_turn.plan
                events.started(speaker_turn.speaker, speaker_turn.plan)

            return run_group_turn(
                self.store,
                engine,
                self.workspace.personas,
                self.session_id,
                list(turn.speakers),
                params,
                cancel,
                on_start=started,
                on_piece=lambda _speaker, text: events.piece(text),
                lore_placement=self.lore_placement,
            )
        plan = self.plan(turn, params)
        self.last_plan = plan
        events.started(ASSISTANT, plan)
        reply = run_reply(
            self.store,
            engine,
            session_id=self.session_id,
            parent_id=turn.parent_id,
            prompt=plan.messages,
            params=params,
            cancel=cancel,
            on_piece=events.piece,
        )
        return [reply]

    # --- continuing a reply, drafting yours ---------------------------------------------------

    def continue_reply(
        self,
        message: Message,
        params: GenerationParams,
        cancel: threading.Event,
        events: ReplyEvents | None = None,
    ) -> Message:
        """Write more of the reply `message`, the last message of the branch, into it (the
        prompt is the one it answered, ending inside it; see turns.continue_reply). Its speaker
        replies with its adapter, template and preset, as a regenerate would. Stops once
        `cancel` is set, keeping what was written; an engine error is saved on it and raised
        (one before any new text, such as a server that cannot continue, leaves it as it was)."""
        engine = self._engine()
        events = events or ReplyEvents()
        message = self.store.get_message(message.id)
        if message.role != Role.ASSISTANT:
            raise CosplayError(_("Only a reply can be continued; this message is yours."))
        if message.id != self.session.leaf_id:
            raise CosplayError(
                _(
                    "Only the last message of the chat can be continued; branch a new session from this one (b on the message) to continue it there."
                )
            )
        if message.parent_id is None:
            raise CosplayError(
                _("A greeting cannot be continued; send your first message instead.")
            )
        shown: ChatMessage = {"role": "assistant", "content": message.content}
        written = TokenEstimate(engine.count_tokens)(shown) if message.content else 0
        plan, reply_params, facts = self._answer_plan(
            message.parent_id, message.name, params, extra_tokens=written
        )
        self.last_plan = plan
        events.started(message.name or ASSISTANT, plan)
        return continue_reply(
            self.store,
            engine,
            message=message,
            prompt=plan.messages,
            params=reply_params,
            cancel=cancel,
            on_piece=events.piece,
            extra_meta=facts,
        )

    def impersonate(
        self,
        params: GenerationParams,
        cancel: threading.Event,
        on_piece: Callable[[str], None] | None = None,
    ) -> str:
        """A draft of your next message, written by the model in your persona's name (its
        `{{user}}`) from the chat so far; nothing is saved. The prompt is the next reply's
        (the window, persona and lore apply) plus SillyTavern's impersonation instruction; a
        template that writes speakers' names (cosplay: 某某曰：) names you instead."""
        engine = self._engine()
        session = self.session
        user = UserPersona.from_value(session.settings.get("user")).name
        last = self.store.branch_tail(self.session_id, limit=1)
        cast = self.cast
        speaker = (last[-1].name if last and last[-1].name in cast else cast[0]) if cast else ""
        char = speaker or ASSISTANT
        instruction = expand_macros(
            session.settings.get("impersonation_prompt") or IMPERSONATION_PROMPT,
            char=char,
            user=user,
        )
        extra = TokenEstimate(engine.count_tokens)({"role": "user", "content": instruction})
        plan, draft_params, _ = self._answer_plan(
            session.leaf_id, speaker, params, extra_tokens=extra
        )
        messages = list(plan.messages)
        named = engine.template_name in NAME_AWARE_TEMPLATES  # the prompt ends 你的名字曰：
        if not named and messages and messages[-1].get("role") == "user":  # no two in a row
            last_line = messages[-1]
            messages[-1] = {**last_line, "content": f"{last_line['content']}\n\n{instruction}"}
        elif not named:
            messages.append({"role": "user", "content": instruction})
        stops = [s for s in (f"\n{char}:", f"\n{char}：") if s not in draft_params.stop]
        draft_params = dataclasses.replace(draft_params, stop=[*draft_params.stop, *stops])
        SessionStates(self.store.path.parent).bind(engine, self.session_id)
        speaking = getattr(engine, "speaker", "")
        if named:
            engine.set_template(engine.template_name, speaker=user)
        text = ""
        stream = engine.stream_chat(messages, draft_params, cancel)
        try:
            for piece in stream:
                text += piece
                if on_piece is not None:
                    on_piece(piece)
                if cancel.is_set():
                    break
        finally:
            stream.close()
            if named:
                engine.set_template(engine.template_name, speaker=speaking)
        text = text.strip()
        for prefix in (f"{user}:", f"{user}："):
            if text.startswith(prefix):
                text = text[len(prefix) :].lstrip()
        return text

    def _answer_plan(
        self,
        leaf_id: int | None,
        speaker: str,
        params: GenerationParams,
        *,
        extra_tokens: int = 0,
    ) -> tuple[PromptPlan, GenerationParams, dict]:
        """The prompt, parameters and reply facts of `speaker`'s (a cast member's, else the
        plain assistant's) reply to `leaf_id`, planned with `extra_tokens` more kept free for
        what the prompt gets besides (a reply's text so far, an instruction)."""
        engine = self._engine()
        room = min(params.max_new_tokens + extra_tokens, 131072)
        planning = dataclasses.replace(params, max_new_tokens=room)
        keep = {"max_new_tokens": params.max_new_tokens}
        if speaker and speaker in self.cast:
            turn = plan_turn(
                self.store,
                self.session_id,
                engine,
                planning,
                self.workspace.personas,
                speaker,
                leaf_id=leaf_id,
                lore_placement=self.lore_placement,
            )
            facts = {"persona": speaker, "adapter": turn.adapter}
            return turn.plan, dataclasses.replace(turn.params, **keep), facts
        use_persona(engine, None)
        branch = StoredBranch(self.store, self.session_id, leaf_id)
        personas = self.workspace.personas
        plan = plan_prompt(
            self.session, branch, engine, planning, personas=personas,
            lore_placement=self.lore_placement,
        )  # fmt: skip
        return plan, params, {}
