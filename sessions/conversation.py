"""The reply flow of one session, for the chat screen and `cosplay ask` alike.

A turn is the message being answered and who answers it: the assistant in a plain chat, the
persona, or the characters of a group scene in order. `Conversation` saves what the user says
(a new message, or a new version of one), works out the turn, and streams the replies into the
store; the callers only show them. Nothing here knows about Textual or the terminal.

Conversation is one class made of parts: what the user says, the prompt of a turn (`plan`,
`preview`) and its replies (`reply`) here; who answers (`Turn`, `answer`, `regenerate`) in
sessions/conversation_turns.py; continuing a reply and drafting yours (`continue_reply`,
`impersonate`) in sessions/conversation_drafts.py.
"""

from __future__ import annotations

import threading

from engines.base import CosplayError, Engine, GenerationParams
from engines.i18n import _
from sessions.context import PromptPlan
from sessions.conversation_drafts import IMPERSONATION_PROMPT, ConversationDrafts
from sessions.conversation_turns import ASSISTANT, ConversationTurns, ReplyEvents, Turn
from sessions.group import plan_turn, run_group_turn, session_cast
from sessions.models import Message, Role, Session
from sessions.prompt import StoredBranch, plan_prompt
from sessions.runtime import use_persona
from sessions.store import LEAF
from sessions.turns import run_reply
from sessions.workspace import NEW_TITLE, Workspace

__all__ = ["ASSISTANT", "IMPERSONATION_PROMPT", "Conversation", "ReplyEvents", "Turn"]


class Conversation(ConversationTurns, ConversationDrafts):
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
