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

from engines.i18n import N_, _
from sessions.notes import MAX_DEPTH, MAX_INTERVAL, AuthorNote, Memory
from tui.modals import SaveDialog

POSITION_LABELS = (
    (N_("in the chat, at the depth"), "in_chat"),
    (N_("after the persona's text"), "in_prompt"),
    (N_("before the persona's text"), "before_prompt"),
)  # SillyTavern's "in-chat @ depth", "after main prompt / story string", "before" it
ROLE_LABELS = (
    (N_("as system"), "system"),
    (N_("as user"), "user"),
    (N_("as assistant"), "assistant"),
)


@dataclass(frozen=True)
class Notes:
    memory: Memory
    note: AuthorNote


class NotesScreen(SaveDialog, ModalScreen[Notes | None]):
    """Dismissed with the edited notes, or None (Esc, Cancel)."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", N_("Cancel")),
        Binding("ctrl+s", "save", N_("Save"), priority=True),
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
            _("covers messages 1-{last}", last=memory.through + 1)
            if memory.through >= 0
            else _("nothing yet")
        )
        busy = _(", being updated") if self.summarizing else ""
        with VerticalScroll(classes="dialog", id="notes_dialog"):
            yield Label(
                _("Memory of dropped turns ({covered}{busy}):", covered=covered, busy=busy),
                markup=False,
            )
            yield TextArea(memory.text, id="memory_text", soft_wrap=True)
            yield Label(_("Author's Note (empty: none):"), markup=False)
            yield TextArea(note.text, id="note_text", soft_wrap=True)
            with Horizontal(classes="row"):
                yield Label(_("every"), markup=False)
                yield Input(str(note.interval), id="note_interval", type="integer", compact=True)
                yield Label(_("turns (0: never), depth"), markup=False)
                yield Input(str(note.depth), id="note_depth", type="integer", compact=True)
            with Horizontal(classes="row"):
                yield Select(
                    [(_(label), value) for label, value in POSITION_LABELS],
                    value=note.position,
                    allow_blank=False,
                    id="note_position",
                    compact=True,
                )
                yield Select(
                    [(_(label), value) for label, value in ROLE_LABELS],
                    value=note.role,
                    allow_blank=False,
                    id="note_role",
                    compact=True,
                )
            with Horizontal(classes="buttons"):
                yield Checkbox(_("Memory on"), memory.enabled, id="memory_enabled", compact=True)
                yield Button(_("Save"), variant="primary", id="save", compact=True)
                yield Button(_("Cancel"), id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#memory_text", TextArea).focus()

    def _number(self, field: str, name: str, most: int) -> int | None:
        value = self.query_one(f"#{field}", Input).value.strip()
        if not value.isdigit() or int(value) > most:
            self.notify(
                _(
                    "The note's {name} must be a whole number from 0 to {most}; it is {value}.",
                    name=_(name),
                    most=most,
                    value=repr(value),
                ),
                severity="warning",
                markup=False,
            )
            return None
        return int(value)

    def action_save(self) -> None:
        interval = self._number("note_interval", N_("interval (every N turns)"), MAX_INTERVAL)
        depth = self._number("note_depth", N_("depth"), MAX_DEPTH)
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
