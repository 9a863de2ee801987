"""The chat screen: sessions on the left, the transcript, the input, the status line.

The reply flow is `sessions.conversation.Conversation`'s; the screen only shows it.
The transcript (tui/widgets/transcript.py) loads the branch a page at a time.
Widgets post messages up. Generation runs in a thread worker that streams into the
store (flushed as it grows) and posts each piece to the screen, which appends it to
the reply's Markdown stream.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from textual import work
from textual.containers import Horizontal, Vertical
from textual.message import Message as TextualMessage
from textual.screen import Screen
from textual.widgets import Footer, Static

from engines.base import CosplayError, Engine, GenerationParams
from engines.i18n import N_, _
from sessions.context import PromptPlan
from sessions.conversation import Conversation, ReplyEvents, Turn
from sessions.models import Message, Role, Session, Status
from sessions.workspace import Workspace
from tui.actions import CHAT
from tui.chat_file_actions import ChatFileActions
from tui.draft_actions import DraftActions
from tui.memory_actions import MemoryActions
from tui.message_actions import MessageActions
from tui.session_actions import SessionActions
from tui.translated import TranslatedBindings
from tui.version_actions import VersionActions
from tui.widgets.chat_input import ChatInput
from tui.widgets.message_view import MessageView
from tui.widgets.params_panel import ParamsPanel
from tui.widgets.session_list import SessionList
from tui.widgets.transcript import Transcript

# What the status line says for an engine fact that means little to a person.
PLAIN_WORDS = {"float32": N_("full precision (float32)")}


@dataclass
class ReplyStarted(TextualMessage):
    speaker: str
    finished_id: int | None  # the reply that ended before this one (group scenes), if any
    continues: int | None = None  # the reply being continued: its own view grows


@dataclass
class ReplyPiece(TextualMessage):
    text: str


@dataclass
class ReplyDone(TextualMessage):
    finished_id: int | None
    plan: PromptPlan | None
    error: Exception | None


class ChatScreen(
    TranslatedBindings,
    SessionActions,
    VersionActions,
    MessageActions,
    ChatFileActions,
    DraftActions,
    MemoryActions,
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
        """A message's header name: its speaker's, else yours (your persona) or the assistant's."""
        if message.name:
            return message.name
        if message.role == Role.USER:
            return self.workspace.session_user_persona(self.session).name
        return _("Assistant")

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

    def start_reply(self, message: Message) -> None:
        """Generate the reply (or, in a scene, the replies) to `message`."""
        try:
            turn, notices = self.conversation.answer(message)
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
            return
        for notice in notices:  # an @name that is nobody, a muted member, nobody to answer
            self.notify(notice, severity="warning", timeout=8)
        if turn is not None:
            self._run_generation(turn)

    def _run_generation(self, turn: Turn, params: GenerationParams | None = None) -> None:
        """Start the worker that streams the turn's replies (with the session's parameters
        unless given)."""
        self.stop_memory()  # the reply never waits for a summary
        self.generating = True
        self.cancel_event = threading.Event()
        self.update_status(_("replying…  Esc stops"))
        self.generate(self.conversation, turn, params or self.params, self.cancel_event)

    @work(thread=True, exclusive=True, group="generation", exit_on_error=False)
    def generate(
        self,
        conversation: Conversation,
        turn: Turn,
        params: GenerationParams,
        cancel: threading.Event,
    ) -> None:
        store, session_id = conversation.store, conversation.session_id
        plan, error = None, None

        def started(speaker: str, speaker_plan: PromptPlan) -> None:
            nonlocal plan
            plan = speaker_plan
            leaf = store.get_session(session_id).leaf_id  # the reply before this one, if any
            self.post_message(ReplyStarted(speaker, leaf if leaf != turn.parent_id else None))

        try:
            conversation.reply(
                turn,
                params,
                cancel,
                ReplyEvents(started, lambda text: self.post_message(ReplyPiece(text))),
            )
        except Exception as exc:  # shown as a notification; the user's text is already saved
            error = exc
        leaf = store.get_session(session_id).leaf_id
        self.post_message(ReplyDone(leaf if leaf != turn.parent_id else None, plan, error))

    async def _finish_streaming(self, message_id: int | None) -> None:
        if self._streaming is not None and message_id is not None:
            await self._streaming.end_stream(self.store.get_message(message_id))
        elif self._streaming is not None:  # nothing was saved for it
            await self._streaming.remove()
        self._streaming = None

    async def on_reply_started(self, event: ReplyStarted) -> None:
        await self._finish_streaming(event.finished_id)
        if event.continues is not None:
            self._streaming = self.transcript.view_of(event.continues)
            if self._streaming is not None:  # marked incomplete while it grows, as a new reply
                self._streaming.show_message(
                    replace(self._streaming.message, status=Status.PARTIAL)
                )
            return
        placeholder = Message(
            id=-1,
            session_id=self.session.id,
            parent_id=None,
            role=Role.ASSISTANT,
            content="",
            status=Status.PARTIAL,
            name=event.speaker,
        )
        self._streaming = MessageView(
            placeholder, speaker=event.speaker, versions=self._next_versions
        )
        self._next_versions = (1, 1)
        await self.transcript.append(self._streaming)

    async def on_reply_piece(self, event: ReplyPiece) -> None:
        if self._streaming is not None:
            await self._streaming.write(event.text)

    async def on_reply_done(self, event: ReplyDone) -> None:
        await self._finish_streaming(event.finished_id)
        self.generating = False
        self.session = self.store.get_session(self.session.id)
        if event.finished_id is not None:
            self._last_reply = self.store.get_message(event.finished_id)
        self.update_status()
        if event.error is not None:
            text = (
                str(event.error)
                if isinstance(event.error, CosplayError)
                else _("Generation failed: {error}", error=repr(event.error))
            )
            self.notify(text, severity="error", timeout=8)
        else:
            self.start_memory(event.plan)  # what fell out of the window, while idle

    def swap_engine(self, engine: Engine) -> None:
        """Chat with `engine` from now on (tui/models_screen.py); the old one is closed once no
        reply or summary runs on it (a reply under way is stopped first, and kept)."""
        if self.generating:
            self.action_stop()
            self.set_timer(0.05, lambda: self.swap_engine(engine))
            return
        self.stop_memory()
        old, self.engine = self.engine, engine
        self.app.engine = engine
        self.conversation = Conversation(self.workspace, engine, self.session.id)
        self._last_reply = None
        self.update_status()
        if old is not None and old is not engine:
            self.close_engine(old)

    @work(thread=True, group="engine-close", exit_on_error=False)
    def close_engine(self, engine: Engine) -> None:
        """Close a replaced engine after the workers still using it have stopped."""
        for worker in list(self.workers):
            if worker.group in ("generation", "memory") and worker.is_running:
                while worker.is_running:
                    threading.Event().wait(0.02)
        engine.close()

    def action_stop(self) -> None:
        """Esc: stop the reply being written; else, from a message, back to typing."""
        if self.generating:
            self.cancel_event.set()
        elif isinstance(self.focused, MessageView):
            self.query_one(ChatInput).focus()

    # --- settings and status ------------------------------------------------------------------

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

    def update_status(self, note: str = "") -> None:
        if self.engine is None:
            self.query_one("#status", Static).update(
                _("no model loaded · see `cosplay chat --help`")
            )
            return
        from sessions.presets import preset_label

        facts = self.engine.describe()
        parts = [self.engine.model_name]
        preset = preset_label(self.session.settings, self.workspace.presets())
        if preset:
            parts.append(_("preset {preset}", preset=preset))
        parts += self.scene_status()
        meta = self._last_reply.meta if self._last_reply else {}
        meta = (meta.get("continued") or [meta])[-1]  # a continued reply: its last part's
        if meta:  # what matters most first: the line is cut at the terminal's width
            used = meta.get("prompt_tokens", 0) + meta.get("completion_tokens", 0)
            parts.append(_("ctx {used}/{size}", used=used, size=self.engine.context_length))
            parts.append(_("{rate} tok/s", rate=f"{meta.get('tokens_per_s', 0):.1f}"))
        else:
            parts.append(_("ctx {size}", size=self.engine.context_length))
        plan = self.conversation.last_plan if self.conversation else None
        if plan and plan.summary:
            parts.append(plan.summary)
        parts += self.memory_status()
        adapter = facts.get("adapter")
        parts.append(
            _("adapter {adapter}", adapter=adapter)
            if adapter not in (None, "", "none")
            else _("no adapter")
        )
        parts.append(_("template {template}", template=self.engine.template_name))
        engine = [facts.get(k, "") for k in ("engine", "device", "dtype", "quantization")]
        engine = [_(PLAIN_WORDS[v]) if v in PLAIN_WORDS else v for v in engine if v and v != "none"]
        if facts.get("gpu_layers"):  # the CPU engine's offload (engines/llamacpp.py)
            engine.append(facts["gpu_layers"])
        parts.append(" ".join(dict.fromkeys(engine)))
        if note:  # first: the status line is cut at the terminal's width
            parts.insert(0, note)
        self.query_one("#status", Static).update(" · ".join(parts))
