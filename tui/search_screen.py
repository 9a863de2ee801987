"""Search all sessions: a query line and the matching messages, newest first, updating as
the user types.

    app.push_screen(SearchScreen(store), on_found)

`on_found` gets the chosen `SearchHit` (Enter or a click on a result) or None (Esc). To show
it, open session `hit.session_id` on the branch through message `hit.message_id`: that
branch's leaf is `store.deepest_leaf(hit.message_id)` (the newest version below it), and the
message sits `hit.depth` messages below the root. `SearchScreen(store, session_id=N)`
searches one session; `query=` fills the line in (and searches at once).

Keys: type to search (after a pause of DEBOUNCE seconds); ↓ or Enter moves to the results;
↑/↓ there, Enter opens one; Esc closes. Everything from the database (titles, names,
snippets) is shown as plain text, never read as markup.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from engines.errors import CosplayError
from engines.i18n import N_, _
from sessions.models import SearchHit
from sessions.store import Store

DEBOUNCE = 0.2  # seconds of no typing before the query runs


class SearchScreen(ModalScreen[SearchHit | None]):
    DEFAULT_CSS = """
    SearchScreen { align: center middle; }
    SearchScreen #search-dialog {
        width: 100;
        max-width: 100%;
        height: 80%;
        padding: 1 2;
        border: thick $primary;
        background: $surface;
    }
    SearchScreen #search-results { height: 1fr; border: none; margin-top: 1; }
    SearchScreen #search-status { color: $text-muted; height: 1; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", N_("Close"), id="search.close")]

    def __init__(
        self,
        store: Store,
        *,
        query: str = "",
        session_id: int | None = None,
        limit: int = 50,
        debounce: float = DEBOUNCE,
    ):
        super().__init__()
        self.store = store
        self.initial_query = query
        self.session_id = session_id
        self.limit = limit
        self.debounce = debounce
        self.hits: list[SearchHit] = []  # what the list shows, in its order
        self.shown_query: str | None = None  # the query those hits answer
        self._asked = 0  # queries started: a slower, older answer is dropped
        self._timer: Timer | None = None
        self._focus_results = False  # Enter was pressed before the answer came

    def compose(self) -> ComposeResult:
        with Vertical(id="search-dialog"):
            in_one = self.session_id is not None
            scope = _("Search this session") if in_one else _("Search all sessions")
            yield Label(scope, markup=False)
            yield Input(
                self.initial_query,
                placeholder=_("words to find (曹操, hello …); every word must occur"),
                id="search-query",
            )
            yield OptionList(id="search-results")
            yield Label(_("Type to search."), id="search-status", markup=False)

    def on_mount(self) -> None:
        self.query_one("#search-query", Input).focus()
        if self.initial_query.strip():
            self.search_now()

    # --- asking ------------------------------------------------------------------------

    @property
    def query_text(self) -> str:
        return self.query_one("#search-query", Input).value

    @on(Input.Changed, "#search-query")
    def _typed(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(self.debounce, self.search_now)

    def search_now(self) -> None:
        """Run the query in the line now (a thread: a short word scans every message)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        query = self.query_text
        if query == self.shown_query:
            self._answered(query, self.hits, None)  # nothing new to ask
            return
        self._asked += 1
        if not query.strip():
            self._answered(query, [], None)
            return
        self._status(_("Searching…"))
        self._search(self._asked, query)

    @work(thread=True, exclusive=True, group="search", exit_on_error=False)
    def _search(self, asked: int, query: str) -> None:
        hits: list[SearchHit] = []
        problem = None
        try:
            hits = self.store.search(query, limit=self.limit, session_id=self.session_id)
        except CosplayError as exc:  # the database is locked, or was moved away
            problem = str(exc)
        except Exception as exc:  # never take the app down over a search
            problem = _("The search failed ({error}).", error=exc)
        if asked == self._asked:  # else a newer query is on its way
            self.app.call_from_thread(self._answered_if_current, asked, query, hits, problem)

    def _answered_if_current(
        self, asked: int, query: str, hits: list[SearchHit], problem: str | None
    ) -> None:
        if asked == self._asked and self.is_attached:
            self._answered(query, hits, problem)

    def _answered(self, query: str, hits: list[SearchHit], problem: str | None) -> None:
        results = self.query_one("#search-results", OptionList)
        if query != self.shown_query or problem:
            self.hits, self.shown_query = hits, query
            results.clear_options()
            results.add_options(Option(self._label(hit)) for hit in hits)
            if hits:
                results.highlighted = 0
        if problem:
            self._status(problem)
        elif not query.strip():
            self._status(_("Type to search."))
        elif not hits:
            self._status(_("No messages contain every word of that."))
        else:
            more = "+" if len(hits) >= self.limit else ""
            self._status(
                _(
                    "{count}{more} messages, newest first. ↑↓ choose, Enter opens.",
                    count=len(hits),
                    more=more,
                )
            )
        if self._focus_results and hits:
            results.focus()
        self._focus_results = False

    def _status(self, text: str) -> None:
        self.query_one("#search-status", Label).update(Text(text))

    @staticmethod
    def _label(hit: SearchHit) -> Text:
        """Two lines: where (title · speaker), then the snippet with its matches marked.
        Built as Text: brackets in a title or a message stay literal."""
        speaker = hit.name or hit.role.value
        label = Text(f"{hit.session_title} · {speaker}\n", style="dim")
        snippet = Text(hit.snippet)
        for start, end in hit.highlights:
            snippet.stylize("bold reverse", start, end)
        label.append_text(snippet)
        return label

    # --- choosing ----------------------------------------------------------------------

    @on(Input.Submitted, "#search-query")
    def _submitted(self) -> None:
        self._focus_results = True
        self.search_now()

    def on_key(self, event) -> None:
        if event.key == "down" and self.focused is self.query_one("#search-query", Input):
            if self.hits:
                event.stop()
                self.query_one("#search-results", OptionList).focus()

    @on(OptionList.OptionSelected, "#search-results")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if 0 <= event.option_index < len(self.hits):
            self.dismiss(self.hits[event.option_index])
