"""The sidebar: saved sessions, most recent first. Posts `Chosen`; the screen does the switching."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Label, ListItem, ListView

from sessions.models import Session


class SessionItem(ListItem):
    def __init__(self, session: Session):
        super().__init__(Label(session.title or "Untitled", markup=False))
        self.session = session


class SessionList(ListView):
    BINDINGS = [
        Binding("n", "screen.new_session", "New", show=False),
        Binding("r", "screen.rename_session", "Rename", show=False),
        Binding("delete", "screen.delete_session", "Delete", show=False),
    ]

    @dataclass
    class Chosen(Message):
        session_id: int

    def show_sessions(self, sessions: list[Session], current: int | None) -> None:
        self.clear()
        self.extend(SessionItem(s) for s in sessions)
        for index, session in enumerate(sessions):
            if session.id == current:
                self.index = index
                break

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, SessionItem):
            self.post_message(self.Chosen(event.item.session.id))
