"""The prompt inspector screen: what the engine will receive for the next reply (the text in the
input box as your next message, or the reply to the last message when it is empty), part by
part with token counts, the history cut and the lore that fired. Shown as plain text."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from engines.i18n import N_
from tui.translated import TranslatedBindings


class InspectorScreen(TranslatedBindings, ModalScreen[None]):
    BINDINGS = [Binding("escape,f4,q", "dismiss", N_("Close"))]
    DEFAULT_CSS = """
    InspectorScreen { align: center middle; }
    InspectorScreen > VerticalScroll {
        width: 96%; height: 90%; border: round $primary; padding: 0 1; background: $surface;
    }
    """

    def __init__(self, report: str):
        super().__init__()
        self.report = report

    def compose(self):
        with VerticalScroll():
            yield Static(Text(self.report), id="report")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
