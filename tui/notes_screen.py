"""The session's memory and Author's Note, shown and edited in one dialog.

Memory: the rolling summary of the turns that fell out of the context window (written by the
model while it idles, sessions/memory.py), on or off, and its text. The Author's Note:
SillyTavern's note — text put into the prompt every N turns, at a depth in the chat (or after /
before the persona's text), as a role. Plain TextArea and Input widgets: what they hold is
text, never markup.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, TextArea

from sessions.notes import MAX_DEPTH, MAX_INTERVAL, AuthorNote, Memory

POSITION_LABELS = (
    ("in the chat, at the depth", "in_chat"),
    ("after the persona's text", "in_prompt"),
    ("before the persona's text", "before_prompt"),
)  # SillyTavern's "in-chat @ depth", "after main prompt / story string", "before" it
ROLE_LABELS = (("as system", "system"), ("as user", "user"), ("as assistant", "assistant"))


@dataclass(frozen=True)
class Notes:
    memory: Memory
    note: AuthorNote


class NotesScreen(ModalScreen[Notes | None]):
    """Dismissed with the edited notes, or None (Esc, Cancel)."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]
    DEFAULT_CSS = """
    NotesScreen #memory_text { height: 5; }
    NotesScreen #note_text { height: 3; }
    NotesScreen .row { height: auto; margin-top: 1; }
    NotesScreen .row Label { margin: 0 1; }
    NotesScreen #note_interval, NotesScreen #note_depth { width: 8; }
    NotesScreen #note_position { width: 30; margin-right: 2; }
    NotesScreen #memory_enabled { margin-right: 8; }
    NotesScreen #note_role { width: 20; }
    """

    def __init__(self, notes: Notes, *, summarizing: bool = False):
        super().__init__()
        self.notes = notes
        self.summarizing = summarizing

    def compose(self):
        memory, note = self.notes.memory, self.notes.note
        covered = (
            f"covers messages 1-{memory.through + 1}" if memory.through >= 0 else "nothing yet"
        )
        busy = ", being updated" if self.summarizing else ""
        with VerticalScroll(classes="dialog", id="notes_dialog"):
            yield Label(f"Memory of dropped turns ({covered}{busy}):", markup=False)
            yield TextArea(memory.text, id="memory_text", soft_wrap=True)
            yield Label("Author's Note (empty: none):", markup=False)
            yield TextArea(note.text, id="note_text", soft_wrap=True)
            with Horizontal(classes="row"):
                yield Label("every", markup=False)
                yield Input(str(note.interval), id="note_interval", type="integer", compact=True)
                yield Label("turns (0: never), depth", markup=False)
                yield Input(str(note.depth), id="note_depth", type="integer", compact=True)
            with Horizontal(classes="row"):
                yield Select(
                    POSITION_LABELS,
                    value=note.position,
                    allow_blank=False,
                    id="note_position",
                    compact=True,
                )
                yield Select(
                    ROLE_LABELS, value=note.role, allow_blank=False, id="note_role", compact=True
                )
            with Horizontal(classes="buttons"):
                yield Checkbox("Memory on", memory.enabled, id="memory_enabled", compact=True)
                yield Button("Save", variant="primary", id="save", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#memory_text", TextArea).focus()

    def _number(self, field: str, name: str, most: int) -> int | None:
        value = self.query_one(f"#{field}", Input).value.strip()
        if not value.isdigit() or int(value) > most:
            self.notify(
                f"The note's {name} must be a whole number from 0 to {most}; it is {value!r}.",
                severity="warning",
                markup=False,
            )
            return None
        return int(value)

    def action_save(self) -> None:
        interval = self._number("note_interval", "interval (every N turns)", MAX_INTERVAL)
        depth = self._number("note_depth", "depth", MAX_DEPTH)
        if interval is None or depth is None:
            return
        memory = replace(
            self.notes.memory,
            enabled=self.query_one("#memory_enabled", Checkbox).value,
            text=self.query_one("#memory_text", TextArea).text.strip(),
        )
        note = AuthorNote(
            text=self.query_one("#note_text", TextArea).text.strip(),
            interval=interval,
            depth=depth,
            position=self.query_one("#note_position", Select).value,
            role=self.query_one("#note_role", Select).value,
        )
        self.dismiss(Notes(memory, note))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)
