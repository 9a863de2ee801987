"""The chat screen's memory of dropped turns and its notes dialog (a mixin of ChatScreen).

After a reply, when memory is on and the window left messages out that the summary does not
cover, a thread worker summarizes them (sessions/memory.update_memory) once the screen has
settled. It never holds up a reply: sending, regenerating, continuing, drafting, switching
sessions and quitting call `stop_memory`, and the engine, which runs one generation at a
time, lets the reply in within a token of the summary (its abort callback also stops a
prompt being read). A cancelled summary saves nothing; the next reply starts another.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from textual import work
from textual.message import Message as TextualMessage

from engines.i18n import _
from sessions.memory import MemoryUpdate, is_due, update_memory
from sessions.notes import AuthorNote, Memory

IDLE_SECONDS = 0.5  # after a reply, before the summary starts: the screen draws the reply first


@dataclass
class MemoryDone(TextualMessage):
    session_id: int
    cancel: threading.Event  # the run it ends
    result: MemoryUpdate | None
    error: Exception | None


class MemoryActions:
    """Needs from the screen: engine, store, session, conversation, generating, update_status,
    load_session."""

    _memory_cancel: threading.Event | None = None

    @property
    def summarizing(self) -> bool:
        return self._memory_cancel is not None and not self._memory_cancel.is_set()

    def memory_status(self) -> list[str]:
        """The status line's word on memory: [] when off."""
        if self.session is None or not Memory.from_settings(self.session.settings).enabled:
            return []
        return [_("memory: summarizing…") if self.summarizing else _("memory on")]

    def start_memory(self, plan) -> None:
        """Summarize what `plan` (the reply's) left out, if memory is on and it is due."""
        if self.engine is None or self.generating or self.summarizing:
            return
        if not is_due(self.session.settings, plan):
            return
        cancel = self._memory_cancel = threading.Event()
        conversation = self.conversation

        def begin() -> None:
            if not cancel.is_set():
                self.memory_worker(conversation, plan, cancel)

        self.set_timer(IDLE_SECONDS, begin)
        self.update_status()

    def stop_memory(self) -> None:
        """Cancel the summary under way (it saves nothing)."""
        if self._memory_cancel is not None:
            self._memory_cancel.set()

    @work(thread=True, exclusive=True, group="memory", exit_on_error=False)
    def memory_worker(self, conversation, plan, cancel: threading.Event) -> None:
        result, error = None, None
        try:
            result = update_memory(conversation, plan, cancel)
        except Exception as exc:  # a notification; the chat goes on without the summary
            error = exc
        self.post_message(MemoryDone(conversation.session_id, cancel, result, error))

    def on_memory_done(self, event: MemoryDone) -> None:
        if event.cancel is self._memory_cancel:
            self._memory_cancel = None
        if event.session_id == self.session.id:
            self.session = self.store.get_session(self.session.id)
        if event.error is not None and not event.cancel.is_set():
            self.notify(
                _(
                    "The memory summary failed ({error}); the chat goes on without it.",
                    error=event.error,
                ),
                severity="warning",
                timeout=8,
            )
        if not self.generating:
            self.update_status()

    # --- actions ----------------------------------------------------------------------------

    def _save_notes(self, memory: Memory, note: AuthorNote | None = None) -> None:
        settings = dict(self.store.get_session(self.session.id).settings)
        settings["memory"] = memory.to_value()
        if note is not None:
            settings["author_note"] = note.to_value()
        self.session = self.store.update_session(self.session.id, settings=settings)

    def action_toggle_memory(self) -> None:
        """Turn the memory of dropped turns on or off for this chat."""
        memory = Memory.from_settings(self.store.get_session(self.session.id).settings)
        memory = replace(memory, enabled=not memory.enabled)
        self._save_notes(memory)
        if memory.enabled:
            self.notify(
                _(
                    "Memory on: what falls out of the window is summarized while the model idles "
                    "(see and edit it with the notes dialog)."
                )
            )
            last = self.conversation.last_plan if self.conversation else None
            self.start_memory(last)
        else:
            self.stop_memory()
            self.notify(_("Memory off: the summary is kept, but left out of the prompt."))
        self.update_status()

    def action_edit_notes(self) -> None:
        """Show and edit the memory and the Author's Note."""
        from tui.notes_screen import Notes, NotesScreen

        settings = self.store.get_session(self.session.id).settings
        notes = Notes(Memory.from_settings(settings), AuthorNote.from_settings(settings))
        session_id = self.session.id

        def done(result: Notes | None) -> None:
            if result is None or self.session.id != session_id:
                return
            memory = result.memory
            current = Memory.from_settings(self.store.get_session(session_id).settings)
            if memory.text != notes.memory.text:
                self.stop_memory()  # a summary under way would overwrite your text
            elif current != notes.memory:  # a summary landed while the dialog was open
                memory = replace(current, enabled=memory.enabled)
            self._save_notes(memory, result.note)
            self.update_status()
            self.notify(_("Memory and Author's Note saved."))

        self.app.push_screen(NotesScreen(notes, summarizing=self.summarizing), done)
