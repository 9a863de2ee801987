"""The chat screen: sessions on the left, the transcript, the input, the status line.

The reply flow is `sessions.conversation.Conversation`'s; the screen only shows it.
The transcript (tui/widgets/transcript.py) loads the branch a page at a time.
Widgets post messages up. The screen is one class made of parts: the layout, sessions, the
input and the settings panel here; generation (a thread worker that streams into the store
and posts each piece to the screen, which appends it to the reply's Markdown stream) and the
engine swap in tui/reply_worker.py; the status line in tui/status_line.py; the actions in
tui/*_actions.py.
"""

from __future__ import annotations

import threading

from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from engines.base import CosplayError, Engine, GenerationParams
from engines.i18n import N_, _
from sessions.conversation import ASSISTANT, Conversation
from sessions.models import Message, Role, Session
from sessions.workspace import Workspace
from tui.actions import CHAT
from tui.chat_file_actions import ChatFileActions
from tui.draft_actions import DraftActions
from tui.memory_actions import MemoryActions
from tui.message_actions import MessageActions
from tui.reply_worker import ReplyDone, ReplyPiece, ReplyStarted, ReplyWorker
from tui.session_actions import SessionActions
from tui.status_line import StatusLine
from tui.translated import TranslatedBindings
from tui.version_actions import VersionActions
from tui.widgets.chat_input import ChatInput
from tui.widgets.message_view import MessageView
from tui.widgets.params_panel import ParamsPanel
from tui.widgets.session_list import SessionList
from tui.widgets.transcript import Transcript

__all__ = ["ChatScreen", "ReplyDone", "ReplyPiece", "ReplyStarted"]


# The names a prompt uses when nobody set one, as a person reads them in the UI's language.
DEFAULT_NAMES = {ASSISTANT: N_("Assistant"), "User": N_("User")}


class ChatScreen(
    TranslatedBindings,
    SessionActions,
    VersionActions,
    MessageActions,
    ChatFileActions,
    DraftActions,
    MemoryActions,
    ReplyWorker,
    StatusLine,
    Screen,
):
    BINDINGS = [action.binding() for action in CHAT if action.keys]

    def __init__(
        self,
        workspace: Workspace,
        engine: Engine | None,
        session_id: int | None = None,
        persona: str | None = None,
    ):
        super().__init__()
        self.workspace = workspace
        self.store = workspace.store
        self.personas = workspace.personas
        self.engine = engine
        self._start_persona = persona
        self._streaming: MessageView | None = None
        self.session: Session | None = None
        self.conversation: Conversation | None = None
        self.generating = False
        self.cancel_event = threading.Event()
        self._requested_session = session_id
        self._last_reply: Message | None = None
        self._next_versions = (1, 1)  # the version counter the next streamed reply shows
        self._editing: Message | None = None  # the user message being edited in the input box

    # --- layout --------------------------------------------------------------------------

    def compose(self):
        with Horizontal(id="body"):
            yield SessionList(id="sidebar")
            with Vertical(id="main"):
                yield Transcript(self.store, self._speaker, id="transcript")
                yield ChatInput(id="input")
                yield Static(id="status", markup=False)
            yield ParamsPanel(GenerationParams(), None, id="params")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#params").display = False
        known = [s.id for s in self.store.list_sessions()]
        session_id = self._requested_session or self.workspace.last_session()
        if self._start_persona:
            session_id = self.workspace.new_session(self._start_persona).id
        elif session_id not in known:
            session_id = known[0] if known else self.workspace.new_session().id
        self.load_session(session_id)
        self.query_one(ChatInput).focus()
        if self.engine is None:
            from tui.first_start_screen import FirstStartScreen

            self.app.push_screen(FirstStartScreen(self.workspace, self.app.start_notice))

    # --- sessions --------------------------------------------------------------------------

    @property
    def params(self) -> GenerationParams:
        return self.conversation.params()

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    def load_session(self, session_id: int, show: int | None = None) -> None:
        """Open a session at the end of its branch, or around message `show` (focused)."""
        self.stop_memory()  # the summary of the session left behind
        self.session = self.store.get_session(session_id)
        self.conversation = Conversation(self.workspace, self.engine, session_id)
        self.workspace.remember_session(session_id)
        if show is None:
            self.transcript.show_end(session_id)
        else:
            view = self.transcript.show_around(session_id, show)
            if view is not None:
                self.call_after_refresh(view.focus, scroll_visible=False)
        self.query_one(ParamsPanel).load(
            self.params, self.session.settings.get("max_history_rounds")
        )
        self.refresh_sidebar()
        self.update_status()

    def action_search(self) -> None:
        """Search every session; the chosen hit opens its session at the message, on its
        branch."""
        from tui.search_screen import SearchScreen

        def open_hit(hit) -> None:
            if hit is None:
                return
            if self.generating:
                self.notify(_("Still replying: press Esc to stop first."), severity="warning")
                return
            leaf = self.store.deepest_leaf(hit.message_id)
            self.store.update_session(hit.session_id, leaf_id=leaf)
            self.load_session(hit.session_id, show=hit.message_id)

        self.app.push_screen(SearchScreen(self.store), open_hit)

    def action_inspect_prompt(self) -> None:
        """Show exactly what the engine will receive for the next reply (the input box's text
        as your message), with token counts per part."""
        from sessions.inspector import inspect, report
        from tui.inspector_screen import InspectorScreen

        if self.generating or self.engine is None:
            self.notify(_("The prompt can be shown when a model is loaded and idle."))
            return
        params = self.params
        try:
            plan = self.conversation.preview(self.query_one(ChatInput).text, params)
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
            return
        if plan is None:
            self.notify(_("Manual order: address someone with @名字 to see their prompt."))
            return
        text = report(inspect(plan, self.engine, params.max_new_tokens), self.engine)
        self.app.push_screen(InspectorScreen(text))

    def action_lorebooks(self) -> None:
        """The lorebook dialog; changes are saved there, so the session is read back after."""
        from tui.lorebook_screen import LorebookScreen

        def closed(_: None = None) -> None:
            self.session = self.store.get_session(self.session.id)

        self.app.push_screen(LorebookScreen(self.workspace, self.session.id), closed)

    def refresh_sidebar(self) -> None:
        self.query_one(SessionList).show_sessions(self.store.list_sessions(), self.session.id)

    def _speaker(self, message: Message) -> str:
        """A message's header name: its speaker's, else yours (your persona) or the assistant's;
        the default names the prompt uses ("User", "Assistant") in the UI's language."""
        name = message.name
        if not name:
            user = message.role == Role.USER
            name = self.workspace.session_user_persona(self.session).name if user else ASSISTANT
        return _(DEFAULT_NAMES[name]) if name in DEFAULT_NAMES else name

    # --- turns ------------------------------------------------------------------------------

    def on_chat_input_submitted(self, event: ChatInput.Submitted) -> None:
        if self.generating:
            self.notify(_("Still replying: press Esc to stop, then send."), severity="warning")
            return
        if self.engine is None:
            self.notify(
                _("No model loaded: {keys} chooses one.", keys=self.app.keys_of_id("models")),
                severity="error",
            )
            return
        if self._editing is not None:
            self.resend_edited(event.text)
            return
        if not self.transcript.reaches_end:  # looking at earlier messages: back to the end
            self.transcript.show_end(self.session.id)
        user = self.conversation.say(event.text)
        self.session = self.store.get_session(self.session.id)
        self.query_one(ChatInput).clear()
        self.transcript.append(self.transcript.make_views([user])[0])
        self.refresh_sidebar()
        self.start_reply(user)

    # --- settings ------------------------------------------------------------------

    def on_params_panel_changed(self, event: ParamsPanel.Changed) -> None:
        settings = dict(self.session.settings)
        settings["params"] = event.params.to_dict(exclude_defaults=True)
        settings["max_history_rounds"] = event.max_history_rounds
        self.session = self.store.update_session(self.session.id, settings=settings)
        self.workspace.set_default_params(settings["params"])
        self.update_status()  # the preset name gets its * at once

    def action_toggle_params(self) -> None:
        panel = self.query_one(ParamsPanel)
        panel.display = not panel.display
        if panel.display and self.size.width < 110:  # room for the transcript beside it
            self.query_one(SessionList).display = False
        if panel.display:
            panel.query("Input").first().focus()
        else:
            self.query_one(ChatInput).focus()

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one(SessionList)
        sidebar.display = not sidebar.display
