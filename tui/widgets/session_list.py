"""The sidebar: saved sessions, most recent first. Posts `Chosen`; the screen does the switching.

Each row is two lines: the title, then the persona (or "assistant"), the last activity and,
at the right, the branch length (messages on its current branch). The open session is marked (bold, accent colour) apart
from the cursor, so moving the cursor never hides which chat is open. Titles and persona names
come from users and card files: they are shown as text, never markup, and cut to the row's
width in terminal cells (Chinese characters are two cells wide) with an ellipsis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import ListItem, ListView, Static

from engines.i18n import N_, _
from sessions.models import Session

PLAIN = N_("assistant")  # the persona column of a session with none
MONTHS = (  # "Mar 5": the month as the user's language writes it
    N_("Jan"),
    N_("Feb"),
    N_("Mar"),
    N_("Apr"),
    N_("May"),
    N_("Jun"),
    N_("Jul"),
    N_("Aug"),
    N_("Sep"),
    N_("Oct"),
    N_("Nov"),
    N_("Dec"),
)


def relative_time(timestamp: float, now: float | None = None) -> str:
    """When, as people say it: "just now", "3 min ago", "5 h ago", "yesterday", "Mar 5",
    "2023-03-05" (calendar days, in local time)."""
    now = time.time() if now is None else now
    seconds = now - timestamp
    if seconds < 60:
        return _("just now")
    if seconds < 3600:
        return _("{count} min ago", count=int(seconds // 60))
    then, today = datetime.fromtimestamp(timestamp), datetime.fromtimestamp(now)
    days = (today.date() - then.date()).days
    if days == 0:
        return _("{count} h ago", count=int(seconds // 3600))
    if days == 1:
        return _("yesterday")
    if then.year == today.year:
        return _("{month} {day}", month=_(MONTHS[then.month - 1]), day=then.day)
    return f"{then:%Y-%m-%d}"


def session_persona(session: Session) -> str:
    """The persona column: the cast of a scene, the persona, or "assistant"."""
    cast = session.settings.get("cast") if isinstance(session.settings, dict) else None
    if isinstance(cast, list) and cast:
        return "、".join(str(name) for name in cast)
    return session.persona or _(PLAIN)


def fit(text: str, width: int) -> Text:
    """One line of plain text cut to `width` cells with an ellipsis (double width aware)."""
    line = Text(" ".join(text.split()))  # no line breaks or tabs inside a row
    line.truncate(max(width, 0), overflow="ellipsis")
    return line


def session_row(session: Session, width: int, now: float | None = None) -> Text:
    """The two lines of a session's row, `width` cells wide: the title on the whole first line;
    then the persona and the last activity, and the branch length at the right."""
    title = fit(session.title or _("Untitled"), width)
    count = f"{session.length}"
    room = width - cell_len(count) - 1  # left of the count
    when = relative_time(session.updated_at, now)
    persona_width = room - cell_len(when) - 3  # the time is kept whole, the persona cut
    if persona_width >= 2:
        detail = Text.assemble(fit(session_persona(session), persona_width), " · ", when)
    else:
        detail = fit(when, room)
    detail.pad_right(room - detail.cell_len + 1)
    detail.append(count)
    detail.stylize("dim")
    return Text("\n").join([title, detail])


class SessionRow(Static):
    """A session's two lines, drawn for the width the row has."""

    DEFAULT_CSS = "SessionRow { height: 2; }"

    def __init__(self, session: Session):
        super().__init__(markup=False)
        self.session = session

    def render(self) -> Text:
        return session_row(self.session, self.content_size.width)


class SessionItem(ListItem):
    DEFAULT_CSS = """
    SessionItem { padding: 0 1; }
    SessionItem.-open { text-style: bold; color: $accent; }
    """

    def __init__(self, session: Session, *, is_open: bool = False):
        self._row = SessionRow(session)  # kept: the item is asked for its session before mount
        super().__init__(self._row)
        self.set_class(is_open, "-open")

    @property
    def session(self) -> Session:
        return self._row.session

    def show(self, session: Session, *, is_open: bool) -> None:
        self._row.session = session
        self._row.refresh()
        self.set_class(is_open, "-open")


class SessionList(ListView):
    BINDINGS = [
        Binding("n", "screen.new_session", N_("New"), show=False),
        Binding("r", "screen.rename_session", N_("Rename"), show=False),
        Binding("delete", "screen.delete_session", N_("Delete"), show=False),
    ]

    @dataclass
    class Chosen(Message):
        session_id: int

    @property
    def highlighted_session(self) -> Session | None:
        """The session under the cursor (the one `r` and Delete act on), if any."""
        item = self.highlighted_child
        return item.session if isinstance(item, SessionItem) else None

    def _items(self) -> list[SessionItem]:
        return [
            item
            for item in self.children
            if isinstance(item, SessionItem) and not item._pruning  # not being removed
        ]

    def show_sessions(self, sessions: list[Session], current: int | None) -> None:
        """Show `sessions` with `current` marked open. The rows are updated in place (no
        flicker, no half-removed rows); the cursor goes to the open session, unless the list
        has focus and the row under it is still there."""
        keep = self.highlighted_session if self.has_focus else None
        items = self._items()
        for item, session in zip(items, sessions, strict=False):
            item.show(session, is_open=session.id == current)
        if len(sessions) > len(items):
            self.extend(
                SessionItem(session, is_open=session.id == current)
                for session in sessions[len(items) :]
            )
        for item in items[len(sessions) :]:
            item.remove()
        ids = [session.id for session in sessions]
        target = keep.id if keep is not None and keep.id in ids else current
        index = ids.index(target) if target in ids else (0 if ids else None)
        self.index = index

    def on_mount(self) -> None:
        self.set_interval(60, self._tick)  # "3 min ago" grows old

    def _tick(self) -> None:
        for row in self.query(SessionRow):
            row.refresh()

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, SessionItem):
            self.post_message(self.Chosen(event.item.session.id))
