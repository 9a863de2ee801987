"""The personas screen: search, view, create, edit, duplicate, import, export, delete.

Open it with `app.push_screen(PersonasScreen(personas_dir), callback)`: it dismisses
with the names of the personas to chat with (Enter or `c`: the highlighted one, or the
ones marked with Space, in the order marked: a group scene), or None (Esc).
Built-ins are read-only: editing one saves a user copy under the same name.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from engines.base import CosplayError
from engines.i18n import N_, _
from sessions.cards import CharacterCard
from sessions.personas import Persona, PersonaStore
from tui.cli_personas import describe
from tui.modals import ConfirmScreen, TextPromptScreen
from tui.personas_editor import PersonaEditor
from tui.translated import TranslatedBindings


class PersonasScreen(TranslatedBindings, Screen[list[str] | None]):
    DEFAULT_CSS = """
    PersonasScreen #personas-sidebar { width: 32; border-right: solid $primary-darken-2; }
    PersonasScreen #persona-search { margin: 0 0 1 0; }
    PersonasScreen #persona-list { height: 1fr; border: none; }
    PersonasScreen #persona-view { padding: 0 2; }
    """
    BINDINGS = [
        Binding("escape", "close", N_("Back"), id="personas.back"),
        Binding("c", "chat", N_("Chat"), id="personas.chat"),
        Binding("space", "mark", N_("Mark for a scene"), id="personas.mark"),
        Binding("n", "new", N_("New"), id="personas.new"),
        Binding("e", "edit", N_("Edit"), id="personas.edit"),
        Binding("d", "duplicate", N_("Duplicate"), id="personas.duplicate"),
        Binding("i", "import_card", N_("Import"), id="personas.import"),
        Binding("x", "export_card", N_("Export"), id="personas.export"),
        Binding("delete", "delete", N_("Delete"), id="personas.delete"),
        Binding("slash", "search", N_("Search"), id="personas.search"),
    ]

    def __init__(self, store_dir: Path, *, builtins: bool = True, export_dir: Path | None = None):
        super().__init__()
        self.store = PersonaStore(store_dir, builtins=builtins)
        self.export_dir = export_dir or Path.cwd()
        self.shown: list[Persona] = []
        self.marked: list[str] = []  # personas chosen for a group scene, in order

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="personas-sidebar"):
                yield Input(placeholder=_("Search personas  (/)"), id="persona-search")
                yield OptionList(id="persona-list")
            with VerticalScroll(id="persona-view"):
                yield Static("", id="persona-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_list()
        self.query_one(OptionList).focus()

    # --- the list ------------------------------------------------------------------

    def refresh_list(self, select: str | None = None) -> None:
        query = self.query_one("#persona-search", Input).value
        self.shown = self.store.list(query)
        for problem in self.store.problems:
            self.notify(problem, severity="warning")
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options(Option(Text(self._label(p))) for p in self.shown)  # names are text
        names = [p.name for p in self.shown]
        if self.shown:
            options.highlighted = names.index(select) if select in names else 0
        self.show_current()

    def _label(self, persona: Persona) -> str:
        mark = f"[{self.marked.index(persona.name) + 1}] " if persona.name in self.marked else ""
        return mark + persona.name + (_("  · built-in") if persona.builtin else "")

    @property
    def current(self) -> Persona | None:
        index = self.query_one(OptionList).highlighted
        if index is None or not 0 <= index < len(self.shown):
            return None
        return self.shown[index]

    def show_current(self) -> None:
        persona = self.current
        text = describe(persona) if persona else _("No persona matches; press n to create one.")
        self.query_one("#persona-detail", Static).update(text)

    @on(Input.Changed, "#persona-search")
    def _search_changed(self) -> None:
        self.refresh_list()

    @on(Input.Submitted, "#persona-search")
    def _search_done(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionHighlighted)
    def _highlighted(self) -> None:
        self.show_current()

    @on(OptionList.OptionSelected)
    def _selected(self) -> None:
        self.action_chat()

    # --- actions -------------------------------------------------------------------

    def action_close(self) -> None:
        self.dismiss(None)

    def action_search(self) -> None:
        self.query_one("#persona-search", Input).focus()

    def action_chat(self) -> None:
        if self.marked:
            self.dismiss(list(self.marked))
        elif self.current is not None:
            self.dismiss([self.current.name])

    def action_mark(self) -> None:
        """Mark or unmark the highlighted persona for a group scene."""
        persona = self.current
        if persona is None:
            return
        if persona.name in self.marked:
            self.marked.remove(persona.name)
        else:
            self.marked.append(persona.name)
        self.refresh_list(select=persona.name)
        if self.marked:
            self.notify(_("Scene: {names} · Enter starts it", names="、".join(self.marked)))

    def _guard(self, action) -> bool:
        """Run a store action; a user mistake becomes a notification, not a crash."""
        try:
            action()
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
            return False
        return True

    def action_new(self) -> None:
        name, number = _("New persona"), 2
        while self.store.exists(name):
            name, number = _("New persona {number}", number=number), number + 1
        card = CharacterCard.new(name)
        self.app.push_screen(
            PersonaEditor(card, title=_("New persona")), lambda result: self._saved(result, None)
        )

    def action_edit(self) -> None:
        persona = self.current
        if persona is None:
            return
        title = _("Edit {name}", name=persona.name)
        if persona.builtin:
            title += _(" (built-in: saving makes your own copy)")
        self.app.push_screen(
            PersonaEditor(persona.card, title=title),
            lambda result: self._saved(result, persona.name),
        )

    def _saved(self, card: CharacterCard | None, previous: str | None) -> None:
        if card is None:
            return

        def save() -> None:
            if previous is None:
                self.store.create(card)
            else:
                self.store.save(card, previous_name=previous)

        if self._guard(save):
            self.notify(_("Saved {name}.", name=card.name))
            self.refresh_list(select=card.name)

    def action_duplicate(self) -> None:
        persona = self.current
        if persona is None:
            return
        copies: list[Persona] = []
        if self._guard(lambda: copies.append(self.store.duplicate(persona.name))):
            self.notify(_("Duplicated as {name}.", name=copies[0].name))
            self.refresh_list(select=copies[0].name)

    def action_delete(self) -> None:
        persona = self.current
        if persona is None:
            return
        if persona.builtin:
            self.notify(
                _("{name} is built-in and read-only.", name=persona.name), severity="warning"
            )
            return
        restores = self.store.is_builtin(persona.name)
        question = _("Delete the persona {name}?", name=persona.name)
        if restores:
            question += _(" The built-in one comes back.")

        def confirmed(yes: bool | None) -> None:
            if yes and self._guard(lambda: self.store.delete(persona.name)):
                self.notify(_("Deleted {name}.", name=persona.name))
                self.refresh_list()

        self.app.push_screen(ConfirmScreen(question), confirmed)

    def action_import_card(self) -> None:
        def chosen(path: str | None) -> None:
            if not path:
                return
            imported: list[Persona] = []
            file = Path(path).expanduser()
            if self._guard(lambda: imported.append(self.store.import_file(file))):
                self.notify(_("Imported {name}.", name=imported[0].name))
                self.refresh_list(select=imported[0].name)

        self.app.push_screen(
            TextPromptScreen(_("Import a character card (.json or .png):")), chosen
        )

    def action_export_card(self) -> None:
        persona = self.current
        if persona is None:
            return
        default = self.export_dir / (re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", persona.name) + ".png")

        def chosen(path: str | None) -> None:
            if path:
                out = Path(path).expanduser()
                if self._guard(lambda: self.store.export(persona.name, out)):
                    self.notify(_("Wrote {path}.", path=out))

        self.app.push_screen(
            TextPromptScreen(_("Export to (.png card or .json):"), str(default)), chosen
        )
