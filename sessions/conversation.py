"""The reply flow of one session, for the chat screen and `cosplay ask` alike.

A turn is the message being answered and who answers it: the assistant in a plain chat, the
persona, or the characters of a group scene in order. `Conversation` saves what the user says
(a new message, or a new version of one), works out the turn, and streams the replies into the
store; the callers only show them. Nothing here knows about Textual or the terminal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from engines.base import CosplayError, Engine, GenerationParams
from sessions.context import PromptPlan
from sessions.group import next_speakers, plan_turn, reply_order, run_group_turn, session_cast
from sessions.models import Message, Role, Session
from sessions.prompt import StoredBranch, plan_prompt
from sessions.runtime import use_persona
from sessions.store import LEAF
from sessions.turns import run_reply
from sessions.workspace import NEW_TITLE, Workspace

ASSISTANT = "Assistant"  # the speaker of a plain chat's replies


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
        """Who answers `message`: the assistant in a plain chat, else the cast members its text
        addresses or the reply order picks (`pick`: a manual choice). None: the order is manual
        and nobody was addressed."""
        cast = self.cast
        if not cast:
            return Turn(message.id)
        speakers = next_speakers(cast, reply_order(self.session), message.content, pick)
        return Turn(message.id, tuple(speakers)) if speakers else None

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

    def plan(self, turn: Turn, params: GenerationParams) -> PromptPlan:
        """The prompt of the turn's first reply, as `reply` sends it (a group turn: its first
        speaker's, with that persona's adapter and template switched on). Generates and saves
        nothing but the token counts of messages not counted before."""
        engine = self._engine()
        if turn.speakers:
            return plan_turn(
                self.store,
                self.session_id,
                engine,
                params,
                self.workspace.personas,
                turn.speakers[0],
                leaf_id=turn.parent_id,
            ).plan
        use_persona(engine, None)  # the engine's own adapter and template
        branch = StoredBranch(self.store, self.session_id, turn.parent_id)
        return plan_prompt(self.session, branch, engine, params, personas=self.workspace.personas)

    def _engine(self) -> Engine:
        if self.engine is None:
            raise CosplayError(
                "No model is loaded: start with `cosplay chat --model PATH` (or --demo)."
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
