"""The lorebook dialog (Alt+L): the books kept in the data directory's `lorebooks/` and the
persona card's own `character_book` (read-only here), which are attached to this chat and to
the persona, and the highlighted book's entries (keys, place, constant/selective, order, a
preview of the text).

Attaching goes through sessions/lore_attach.py (the chat's `settings["lorebooks"]`, the
persona's card in the persona store), switching an entry on or off through
sessions/lorebook_files.py; both take effect from the next prompt. Every text from a book or a
file is shown as text, never as markup. Its keys are the LOREBOOK rows of tui/dialog_actions.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Static

from engines.base import CosplayError
from engines.i18n import N_, _
from sessions.cards import CharacterBook
from sessions.group import session_cast
from sessions.lore_attach import attach_to_persona, attach_to_session, attached_names
from sessions.lore_plan import card_books
from sessions.lorebook import LoreEntry, Position, lore_entry
from sessions.lorebook_files import lorebook_folder
from sessions.workspace import Workspace
from tui.dialog_actions import LOREBOOK
from tui.translated import TranslatedBindings

PLACES = {
    Position.BEFORE_CHAR: N_("before char"),
    Position.AFTER_CHAR: N_("after char"),
    Position.AN_TOP: N_("above A.N."),
    Position.AN_BOTTOM: N_("below A.N."),
    Position.EXAMPLES_TOP: N_("above examples"),
    Position.EXAMPLES_BOTTOM: N_("below examples"),
}
PREVIEW_CHARS = 400


@dataclass
class Book:
    """One row of the book list: a kept book (`card` False) or the card's own book."""

    name: str
    book: CharacterBook | None  # None: unreadable (`error` says why)
    card: bool = False
    error: str = ""


def cell(text: str, width: int | None = None) -> Text:
    """A table cell: the text as it is (never markup), cut to `width` cells with an ellipsis."""
    out = Text(" ".join(text.split()))
    if width is not None:
        out.truncate(width, overflow="ellipsis")
    return out


def place(entry: LoreEntry) -> str:
    if entry.position == Position.AT_DEPTH:
        return f"@{entry.depth} {entry.role}"
    return _(PLACES[entry.position]) if entry.position in PLACES else str(int(entry.position))


def trigger(entry: LoreEntry) -> str:
    """When the entry fires: constant, or its keys (and the secondary keys of a selective one)."""
    if entry.constant:
        return _("constant")
    keys = ", ".join(entry.keys) or _("(no keys)")
    if entry.selective and entry.secondary_keys:
        logic = entry.logic.name.lower().replace("_", " ")
        keys += f" | {logic}: " + ", ".join(entry.secondary_keys)
    return keys


class LorebookScreen(TranslatedBindings, ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss(None)", N_("Close")), *(a.binding() for a in LOREBOOK)]
    DEFAULT_CSS = """
    LorebookScreen { align: center middle; }
    LorebookScreen > Vertical {
        width: 100%; height: 100%; max-width: 120; border: round $primary; background: $surface;
    }
    LorebookScreen #lore_title { height: 1; }
    LorebookScreen #books { height: 7; }
    LorebookScreen #entries { height: 1fr; }
    LorebookScreen #preview { height: 4; color: $text-muted; }
    LorebookScreen #import_path { height: 1; }
    """

    def __init__(self, workspace: Workspace, session_id: int):
        super().__init__()
        self.workspace = workspace
        self.session_id = session_id
        self.folder = lorebook_folder(workspace.paths.root)
        self.books: list[Book] = []
        self.entries: list[LoreEntry] = []
        cast = session_cast(workspace.store.get_session(session_id))
        self.persona = next((name for name in cast if workspace.personas.exists(name)), "")

    def compose(self):
        with Vertical():
            yield Static(id="lore_title", markup=False)
            yield DataTable(id="books", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="entries", cursor_type="row")
            yield Static(id="preview", markup=False)
            yield Input(
                placeholder=_("i: path of a World Info JSON or card to import, Enter"),
                id="import_path",
                compact=True,
            )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#books", DataTable).add_columns(
            _("book"), _("entries"), _("chat"), _("persona")
        )
        self.query_one("#entries", DataTable).add_columns(
            _("on"), _("entry"), _("keys"), _("place"), _("order")
        )
        self.show_books()
        self.query_one("#books", DataTable).focus()

    # --- what is shown -------------------------------------------------------------------------

    def session_books(self) -> list[str]:
        settings = self.workspace.store.get_session(self.session_id).settings
        return attached_names(settings.get("lorebooks"))

    def persona_card(self):
        return self.workspace.personas.get(self.persona).card if self.persona else None

    def read_books(self) -> list[Book]:
        books = []
        for name in self.folder.names():
            try:
                books.append(Book(name, self.folder.book(name)))
            except CosplayError as exc:
                books.append(Book(name, None, error=str(exc)))
        card = self.persona_card()
        if card is not None and card.data.character_book is not None:
            books.append(Book(card.name, card.data.character_book, card=True))
        return books

    def show_books(self, keep: str | None = None) -> None:
        """Fill the book list (again), the cursor on the book named `keep` (else where it was)."""
        table = self.query_one("#books", DataTable)
        row = table.cursor_row
        self.books = self.read_books()
        on_chat = set(self.session_books())
        card = self.persona_card()
        on_persona = set(card_books(card))
        table.clear()
        for book in self.books:
            count = _("unreadable") if book.book is None else str(len(book.book.entries))
            if book.card:
                name = _("{name}'s card book", name=book.name)
                chat, persona = _("always"), _("(card)")
            else:
                name = book.name
                chat = _("on") if book.name in on_chat else ""
                persona = _("on") if book.name in on_persona else ""
            table.add_row(cell(name, 36), cell(count), cell(chat), cell(persona))
        if keep is not None:
            row = next((i for i, b in enumerate(self.books) if b.name == keep and not b.card), row)
        if self.books:
            table.move_cursor(row=min(max(row, 0), len(self.books) - 1))
        persona = self.persona or _("none")
        self.query_one("#lore_title", Static).update(
            _(
                "Lorebooks: {count} attached to this chat; persona: {persona}",
                count=len(on_chat),
                persona=persona,
            )
        )
        self.show_entries()

    def current(self) -> Book | None:
        row = self.query_one("#books", DataTable).cursor_row
        return self.books[row] if 0 <= row < len(self.books) else None

    def show_entries(self) -> None:
        book = self.current()
        table = self.query_one("#entries", DataTable)
        row = table.cursor_row
        table.clear()
        self.entries = []
        if book is None:
            self.show_preview(_("No lorebooks yet: press i and give a World Info JSON or a card."))
            return
        if book.book is None:
            self.show_preview(book.error)
            return
        self.entries = [lore_entry(entry) for entry in book.book.entries]
        for entry in self.entries:
            table.add_row(
                cell(_("on") if entry.enabled else _("off")),
                cell(entry.label, 18),
                cell(trigger(entry), 26),
                cell(place(entry), 14),
                cell(f"{entry.order:g}"),
            )
        if self.entries:
            table.move_cursor(row=min(max(row, 0), len(self.entries) - 1))
        self.show_preview()

    def show_preview(self, text: str | None = None) -> None:
        if text is None:
            row = self.query_one("#entries", DataTable).cursor_row
            entry = self.entries[row] if 0 <= row < len(self.entries) else None
            text = "" if entry is None else entry.content
        if len(text) > PREVIEW_CHARS:
            text = text[:PREVIEW_CHARS] + "…"
        self.query_one("#preview", Static).update(Text(text))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "books":
            self.show_entries()
        else:
            self.show_preview()

    # --- actions ---------------------------------------------------------------------------

    def kept_book(self, none: str) -> Book | None:
        """The highlighted book if it is a kept one (else the notification `none`, or why not)."""
        book = self.current()
        if book is None:
            self.notify(_(none))
        elif book.card:
            self.notify(
                _(
                    "The card's own book is read-only here; it is always read for {name}. "
                    "Import the card's file with i to keep a copy you can change.",
                    name=book.name,
                ),
                severity="warning",
            )
        else:
            return book
        return None

    def action_toggle_chat(self) -> None:
        book = self.kept_book(N_("No lorebook to attach: import one with i first."))
        if book is None:
            return
        attach = book.name not in self.session_books()
        try:
            attach_to_session(self.workspace.store, self.session_id, book.name, attach)
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(
            _("{name} attached to this chat.", name=book.name)
            if attach
            else _("{name} detached from this chat.", name=book.name)
        )
        self.show_books(keep=book.name)

    def action_toggle_persona(self) -> None:
        book = self.kept_book(N_("No lorebook to attach: import one with i first."))
        if book is None:
            return
        if not self.persona:
            self.notify(_("This chat has no persona: attach the book to the chat (a) instead."))
            return
        attach = book.name not in card_books(self.persona_card())
        try:
            attach_to_persona(self.workspace.personas, self.persona, book.name, attach)
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(
            _(
                "{name} attached to the persona {persona} (all its chats).",
                name=book.name,
                persona=self.persona,
            )
            if attach
            else _(
                "{name} detached from the persona {persona} (all its chats).",
                name=book.name,
                persona=self.persona,
            )
        )
        self.show_books(keep=book.name)

    def action_toggle_entry(self) -> None:
        book = self.kept_book(N_("No lorebook to change: import one with i first."))
        row = self.query_one("#entries", DataTable).cursor_row
        if book is None or not 0 <= row < len(self.entries):
            return
        enabled = not self.entries[row].enabled
        try:
            self.folder.set_entry_enabled(book.name, row, enabled)
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
            return
        self.show_books(keep=book.name)
        self.query_one("#entries", DataTable).move_cursor(row=row)

    def action_import_book(self) -> None:
        self.query_one("#import_path", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip().strip("'\"")
        if not text:
            return
        path = Path(text).expanduser()
        try:
            if self.folder.exists(path.stem):
                raise CosplayError(
                    _(
                        "A lorebook named {name} exists; rename the file, or delete the "
                        "book first (cosplay lore delete {name}).",
                        name=repr(path.stem),
                    )
                )
            name = self.folder.import_file(path)
        except CosplayError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        event.input.value = ""
        self.notify(
            _("Imported the lorebook {name}; press a to attach it to this chat.", name=name)
        )
        self.show_books(keep=name)
        self.query_one("#books", DataTable).focus()
