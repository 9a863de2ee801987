"""The transcript: a window onto one branch of a session, loaded a page at a time.

Only what is on screen plus a margin is mounted (a page: one query for the messages, one for
their version counts), so a 10,000-message chat opens as fast as a short one. Scrolling to the
top loads the page above, keeping what is on screen in place; when the window does not reach
the end of the branch (after jumping to an old message), scrolling to the bottom loads the page
below. A line above and below says how many messages are not loaded.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.containers import VerticalScroll
from textual.widget import AwaitMount
from textual.widgets import Static

from engines.i18n import _
from sessions.models import Message
from sessions.store import Store
from tui.widgets.message_view import MessageView


def page_size(screen_height: int) -> int:
    """Messages loaded at a time: a message takes three rows at least (header, text, gap), so
    half the screen's height in messages fills it with a margin."""
    return max(10, screen_height // 2)


class Transcript(VerticalScroll):
    def __init__(self, store: Store, speaker: Callable[[Message], str], **kwargs):
        super().__init__(**kwargs)
        self.store = store
        self.speaker = speaker  # the name a message's header shows
        self.session_id: int | None = None

    def compose(self):
        yield Static(id="earlier", markup=False)
        yield Static(id="later", markup=False)

    def on_mount(self) -> None:
        self.watch(self, "scroll_y", self._scrolled, init=False)

    # --- what is loaded --------------------------------------------------------------------

    @property
    def views(self) -> list[MessageView]:
        return list(self.query(MessageView))

    def view_of(self, message_id: int) -> MessageView | None:
        return next((v for v in self.views if v.message.id == message_id), None)

    @property
    def _page(self) -> int:
        return page_size(self.app.size.height)

    def _loaded(self) -> tuple[Message | None, Message | None]:
        """The first and last saved messages mounted (a streaming reply is not saved yet)."""
        saved = [v.message for v in self.views if v.message.id >= 0]
        return (saved[0], saved[-1]) if saved else (None, None)

    @property
    def reaches_end(self) -> bool:
        """Whether the loaded part ends at the branch's leaf (new messages go below it)."""
        _, last = self._loaded()
        return last is None or last.id == self.store.get_session(self.session_id).leaf_id

    def make_views(self, messages: list[Message]) -> list[MessageView]:
        versions = self.store.versions(messages)
        return [
            MessageView(m, speaker=self.speaker(m), versions=versions.get(m.id, (1, 1)))
            for m in messages
        ]

    # --- showing a branch ------------------------------------------------------------------

    def show_end(self, session_id: int) -> None:
        """Show the end of the session's current branch, scrolled to the bottom."""
        self.session_id = session_id
        self.remove_children(MessageView)
        page = self.store.branch_tail(session_id, limit=self._page)
        self.mount_all(self.make_views(page), before="#later")
        self._count_unloaded(page)
        self.scroll_end(animate=False)
        self.anchor()
        self.call_after_refresh(self._fill_screen)

    def show_around(self, session_id: int, message_id: int) -> MessageView | None:
        """Show a page around `message_id` (on the session's current branch), scrolled to it."""
        self.session_id = session_id
        message = self.store.get_message(message_id)
        half = self._page // 2
        page = self.store.branch_tail(session_id, message_id, limit=half + 1)
        page += self.store.branch_below(session_id, message, half)
        self.remove_children(MessageView)
        views = self.make_views(page)
        self.mount_all(views, before="#later")
        self._count_unloaded(page)
        self.release_anchor()
        target = next((v for v in views if v.message.id == message_id), None)
        if target is not None:
            self.call_after_refresh(lambda: self.scroll_to_widget(target, animate=False, top=True))
        return target

    def append(self, view: MessageView) -> AwaitMount:
        """Add a new message (or a reply being streamed) at the bottom."""
        self.anchor()
        return self.mount(view, before="#later")

    def _count_unloaded(self, page: list[Message]) -> None:
        """Update the lines that say how many messages are above and below the loaded part."""
        first, last = self._loaded()
        if first is None and page:
            first, last = page[0], page[-1]
        above = first.depth if first else 0
        below = 0
        if last is not None:
            below = max(0, self.store.get_session(self.session_id).length - 1 - last.depth)
        earlier, later = self.query_one("#earlier", Static), self.query_one("#later", Static)
        earlier.display, later.display = above > 0, below > 0
        earlier.update(
            _("↑ {count} earlier message(s): scroll up to load them", count=f"{above:,}")
        )
        later.update(_("↓ {count} later message(s): scroll down to load them", count=f"{below:,}"))

    # --- paging ------------------------------------------------------------------------------

    def _scrolled(self, scroll_y: float) -> None:
        if scroll_y <= 0:
            self.load_earlier()
        elif scroll_y >= self.max_scroll_y and not self.reaches_end:
            self.load_later()

    def _fill_screen(self) -> None:
        """Short messages may not fill the screen, and then nothing scrolls to load more."""
        if self.max_scroll_y <= 0:
            self.load_earlier()

    @work(exclusive=True, group="transcript-page")
    async def load_earlier(self) -> None:
        """Mount the page above the loaded part, keeping what is on screen where it is."""
        first, _ = self._loaded()
        if first is None or first.parent_id is None:
            return
        page = self.store.branch_tail(self.session_id, first.parent_id, limit=self._page)
        if not page:
            return
        height = self.virtual_size.height
        await self.mount_all(self.make_views(page), after="#earlier")
        self._count_unloaded(page)

        def keep_place() -> None:
            grown = self.virtual_size.height - height
            self.scroll_to(y=self.scroll_y + grown, animate=False)
            self._fill_screen()

        self.call_after_refresh(keep_place)

    @work(exclusive=True, group="transcript-page")
    async def load_later(self) -> None:
        """Mount the page below the loaded part (after a jump to an earlier message)."""
        _, last = self._loaded()
        if last is None:
            return
        page = self.store.branch_below(self.session_id, last, self._page)
        if page:
            await self.mount_all(self.make_views(page), before="#later")
        self._count_unloaded(page)
