"""Continue the last reply, and have the model draft your next message (impersonate).

A mixin of ChatScreen. Continue writes more of the last reply into the same message: it streams
into that message's own view through the screen's reply flow (ReplyStarted naming the message
it continues, ReplyPiece, ReplyDone). Impersonate streams the model's draft of your next message
into the input box, after what you typed, and saves nothing. Esc (the stop action) stops either;
what was written stays.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from textual import work
from textual.message import Message as TextualMessage

from engines.base import CosplayError, GenerationParams
from engines.i18n import _
from sessions.conversation import Conversation, ReplyEvents
from sessions.models import Message, Role
from tui.widgets.chat_input import ChatInput
from tui.widgets.message_view import MessageView


@dataclass
class DraftPiece(TextualMessage):
    text: str


@dataclass
class DraftDone(TextualMessage):
    text: str | None  # the draft as the conversation cleaned it (None: it failed)
    error: Exception | None


class DraftActions:
    """Needs from the screen: engine, store, session, conversation, params, transcript,
    generating, cancel_event, update_status."""

    def _can_generate(self) -> bool:
        if self.generating:
            self.notify(_("Still replying: press Esc to stop first."), severity="warning")
            return False
        if self.engine is None:
            self.notify(
                _("No model loaded: restart with `cosplay chat --model PATH` (or --demo)."),
                severity="error",
            )
            return False
        return True

    def _begin(self, note: str) -> threading.Event:
        self.stop_memory()  # the model is needed now: a summary under way stops
        self.generating = True
        self.cancel_event = threading.Event()
        self.update_status(note)
        return self.cancel_event

    # --- continue ---------------------------------------------------------------------------

    def action_continue_reply(self) -> None:
        """Write more of the focused reply, else the last one, into it (the conversation says
        why not for anything but the chat's last reply)."""
        if not self._can_generate():
            return
        focused = self.focused
        if isinstance(focused, MessageView) and focused.message.id >= 0:
            target = focused.message
        else:
            last = self.store.branch_tail(self.session.id, limit=1)
            if not last or last[-1].role != Role.ASSISTANT:
                self.notify(_("Nothing to continue: the last message is not a reply."))
                return
            target = last[-1]
            if not self.transcript.reaches_end:  # looking at earlier messages: to the end
                self.transcript.show_end(self.session.id)
        cancel = self._begin(_("continuing…  Esc stops"))
        self.continue_worker(self.conversation, target, self.params, cancel)

    @work(thread=True, exclusive=True, group="generation", exit_on_error=False)
    def continue_worker(
        self,
        conversation: Conversation,
        message: Message,
        params: GenerationParams,
        cancel: threading.Event,
    ) -> None:
        from tui.reply_worker import ReplyDone, ReplyPiece, ReplyStarted

        plan, error = None, None

        def started(speaker: str, speaker_plan) -> None:
            nonlocal plan
            plan = speaker_plan
            self.post_message(ReplyStarted(speaker, None, continues=message.id))

        pieces = ReplyEvents(started, lambda text: self.post_message(ReplyPiece(text)))
        try:
            conversation.continue_reply(message, params, cancel, pieces)
        except Exception as exc:  # shown as a notification; the reply keeps what it had
            error = exc
        self.post_message(ReplyDone(message.id, plan, error))

    # --- impersonate -------------------------------------------------------------------------

    def action_impersonate(self) -> None:
        """Draft your next message into the input box."""
        if not self._can_generate():
            return
        box = self.query_one(ChatInput)
        if box.text and not box.text[-1].isspace():
            box.insert(" ", box.document.end)
        self._draft_start = box.document.end
        box.read_only = True  # the draft is written at the end: no typing in between
        cancel = self._begin(_("drafting your message…  Esc stops"))
        self.impersonate_worker(self.conversation, self.params, cancel)

    @work(thread=True, exclusive=True, group="generation", exit_on_error=False)
    def impersonate_worker(
        self, conversation: Conversation, params: GenerationParams, cancel: threading.Event
    ) -> None:
        try:
            text = conversation.impersonate(
                params, cancel, lambda piece: self.post_message(DraftPiece(piece))
            )
        except Exception as exc:
            self.post_message(DraftDone(None, exc))
        else:
            self.post_message(DraftDone(text, None))

    def on_draft_piece(self, event: DraftPiece) -> None:
        box = self.query_one(ChatInput)
        box.insert(event.text, box.document.end)

    def on_draft_done(self, event: DraftDone) -> None:
        box = self.query_one(ChatInput)
        box.read_only = False
        if event.text is not None:  # the streamed text, cleaned (no leading name, no spaces)
            box.replace(event.text, self._draft_start, box.document.end)
        box.move_cursor(box.document.end)
        box.focus()
        self.generating = False
        self.update_status()
        if event.error is not None:
            text = (
                str(event.error)
                if isinstance(event.error, CosplayError)
                else _("Drafting failed: {error}", error=repr(event.error))
            )
            self.notify(text, severity="error", timeout=8)
