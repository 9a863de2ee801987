"""The chat screen's reply worker (a mixin of ChatScreen): a turn's replies are generated in a
thread worker that streams them into the store (sessions.conversation.Conversation.reply,
flushed as it grows) and posts each piece to the screen, which appends it to the reply's
Markdown stream (ReplyStarted, ReplyPiece, ReplyDone; tui/draft_actions.py posts them too when
a reply is continued). Esc stops it. Swapping the engine (tui/model_loading.py) stops a reply
under way and closes the old engine once no reply or summary runs on it (the "engine-close"
worker).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from textual import work
from textual.message import Message as TextualMessage

from engines.base import CosplayError, Engine, GenerationParams
from engines.i18n import _
from sessions.context import PromptPlan
from sessions.conversation import Conversation, ReplyEvents, Turn
from sessions.models import Message, Role, Status
from tui.widgets.chat_input import ChatInput
from tui.widgets.message_view import MessageView


@dataclass
class ReplyStarted(TextualMessage):
    speaker: str
    finished_id: int | None  # the reply that ended before this one (group scenes), if any
    continues: int | None = None  # the reply being continued: its own view grows


@dataclass
class ReplyPiece(TextualMessage):
    text: str


@dataclass
class ReplyDone(TextualMessage):
    finished_id: int | None
    plan: PromptPlan | None
    error: Exception | None


class ReplyWorker:
    """Needs from the screen: workspace, store, engine, session, conversation, params,
    transcript, generating, cancel_event, _streaming, _last_reply, _next_versions,
    stop_memory, start_memory, update_status."""

    def start_reply(self, message: Message) -> None:
        """Generate the reply (or, in a scene, the replies) to `message`."""
        try:
            turn, notices = self.conversation.answer(message)
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
            return
        for notice in notices:  # an @name that is nobody, a muted member, nobody to answer
            self.notify(notice, severity="warning", timeout=8)
        if turn is not None:
            self._run_generation(turn)

    def _run_generation(self, turn: Turn, params: GenerationParams | None = None) -> None:
        """Start the worker that streams the turn's replies (with the session's parameters
        unless given)."""
        self.stop_memory()  # the reply never waits for a summary
        self.generating = True
        self.cancel_event = threading.Event()
        self.update_status(_("replying…  Esc stops"))
        self.generate(self.conversation, turn, params or self.params, self.cancel_event)

    @work(thread=True, exclusive=True, group="generation", exit_on_error=False)
    def generate(
        self,
        conversation: Conversation,
        turn: Turn,
        params: GenerationParams,
        cancel: threading.Event,
    ) -> None:
        store, session_id = conversation.store, conversation.session_id
        plan, error = None, None

        def started(speaker: str, speaker_plan: PromptPlan) -> None:
            nonlocal plan
            plan = speaker_plan
            leaf = store.get_session(session_id).leaf_id  # the reply before this one, if any
            self.post_message(ReplyStarted(speaker, leaf if leaf != turn.parent_id else None))

        try:
            conversation.reply(
                turn,
                params,
                cancel,
                ReplyEvents(started, lambda text: self.post_message(ReplyPiece(text))),
            )
        except Exception as exc:  # shown as a notification; the user's text is already saved
            error = exc
        leaf = store.get_session(session_id).leaf_id
        self.post_message(ReplyDone(leaf if leaf != turn.parent_id else None, plan, error))

    async def _finish_streaming(self, message_id: int | None) -> None:
        if self._streaming is not None and message_id is not None:
            await self._streaming.end_stream(self.store.get_message(message_id))
        elif self._streaming is not None:  # nothing was saved for it
            await self._streaming.remove()
        self._streaming = None

    async def on_reply_started(self, event: ReplyStarted) -> None:
        await self._finish_streaming(event.finished_id)
        if event.continues is not None:
            self._streaming = self.transcript.view_of(event.continues)
            if self._streaming is not None:  # marked incomplete while it grows, as a new reply
                self._streaming.show_message(
                    replace(self._streaming.message, status=Status.PARTIAL)
                )
            return
        placeholder = Message(
            id=-1,
            session_id=self.session.id,
            parent_id=None,
            role=Role.ASSISTANT,
            content="",
            status=Status.PARTIAL,
            name=event.speaker,
        )
        self._streaming = MessageView(
            placeholder, speaker=self._speaker(placeholder), versions=self._next_versions
        )
        self._next_versions = (1, 1)
        await self.transcript.append(self._streaming)

    async def on_reply_piece(self, event: ReplyPiece) -> None:
        if self._streaming is not None:
            await self._streaming.write(event.text)

    async def on_reply_done(self, event: ReplyDone) -> None:
        await self._finish_streaming(event.finished_id)
        self.generating = False
        self.session = self.store.get_session(self.session.id)
        if event.finished_id is not None:
            self._last_reply = self.store.get_message(event.finished_id)
        self.update_status()
        if event.error is not None:
            text = (
                str(event.error)
                if isinstance(event.error, CosplayError)
                else _("Generation failed: {error}", error=repr(event.error))
            )
            self.notify(text, severity="error", timeout=8)
        else:
            self.start_memory(event.plan)  # what fell out of the window, while idle

    def swap_engine(self, engine: Engine | None, closed: threading.Event | None = None) -> None:
        """Chat with `engine` from now on (tui/models_screen.py); the old one is closed once no
        reply or summary runs on it (a reply under way is stopped first, and kept). `closed` is
        set once the old engine is closed (at once when there is none to close)."""
        if self.generating:
            self.action_stop()
            self.set_timer(0.05, lambda: self.swap_engine(engine, closed))
            return
        self.stop_memory()
        old, self.engine = self.engine, engine
        self.app.engine = engine
        self.conversation = Conversation(self.workspace, engine, self.session.id)
        self._last_reply = None
        self.update_status()
        if old is not None and old is not engine:
            self.close_engine(old, closed)
        elif closed is not None:
            closed.set()

    @work(thread=True, group="engine-close", exit_on_error=False)
    def close_engine(self, engine: Engine, closed: threading.Event | None = None) -> None:
        """Close a replaced engine after the workers still using it have stopped, then set
        `closed`."""
        try:
            for worker in list(self.workers):
                if worker.group in ("generation", "memory") and worker.is_running:
                    while worker.is_running:
                        threading.Event().wait(0.02)
            engine.close()
        finally:
            if closed is not None:
                closed.set()

    def action_stop(self) -> None:
        """Esc: stop the reply being written; else, from a message, back to typing."""
        if self.generating:
            self.cancel_event.set()
        elif isinstance(self.focused, MessageView):
            self.query_one(ChatInput).focus()
