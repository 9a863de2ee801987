"""Actions on any message of the transcript: move between messages, page a message's versions
(the conversation below follows the version shown), edit, regenerate, regenerate with the same
seed, delete with everything below, branch into a new session, copy, and show how it was made.

A mixin of ChatScreen. The keys are tui.actions.MESSAGE, bound on a focused MessageView; from the
palette, or with no message focused, an action takes the latest message it fits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engines.base import CosplayError, GenerationParams
from engines.i18n import N_, _
from sessions.models import Message, Role
from tui.modals import ConfirmScreen
from tui.widgets.chat_input import ChatInput
from tui.widgets.message_view import MessageView


class MessageActions:
    """Needs from the screen: store, conversation, session, transcript, generating, _editing,
    load_session, start_reply, _run_generation, switch_version, update_status."""

    def _focused_view(self) -> MessageView | None:
        view = self.focused
        return view if isinstance(view, MessageView) and view.message.id >= 0 else None

    def target_message(self, fits: Callable[[Message], bool] = lambda m: True) -> Message | None:
        """The focused message, else the latest loaded one that `fits`."""
        view = self._focused_view()
        if view is not None:
            return view.message
        for view in reversed(self.transcript.views):
            if view.message.id >= 0 and fits(view.message):
                return view.message
        return None

    def _busy(self) -> bool:
        if self.generating:
            self.notify(_("Still replying: press Esc to stop first."), severity="warning")
        return self.generating

    # --- moving -------------------------------------------------------------------------------

    def action_focus_messages(self) -> None:
        views = self.transcript.views
        if not views:
            self.notify(_("No messages yet."))
            return
        views[-1].focus()

    def action_message_step(self, step: int) -> None:
        view = self._focused_view()
        views = self.transcript.views
        if view is None:
            return
        index = views.index(view) + step
        if index < 0:
            self.transcript.load_earlier()
        elif index >= len(views):
            self.transcript.load_later()
        else:
            views[index].focus()

    def action_message_version(self, step: int) -> None:
        """Show the previous/next version of the focused message; the branch below it follows
        (each version keeps its own continuation). Without a focused message: the last reply's."""
        if self._busy():
            return
        view = self._focused_view()
        if view is None:
            self.switch_version(step)
            return
        siblings = self.store.siblings(view.message)
        index = next(i for i, s in enumerate(siblings) if s.id == view.message.id) + step
        if not 0 <= index < len(siblings):
            self.app.bell()
            return
        leaf = self.store.deepest_leaf(siblings[index].id)
        self.store.update_session(self.session.id, leaf_id=leaf)
        self.load_session(self.session.id, show=siblings[index].id)

    # --- changing -----------------------------------------------------------------------------

    def action_message_edit(self) -> None:
        """Put the message in the input box; Enter saves it as a new version (ChatScreen then
        answers an edited message of yours again). Ctrl+E cancels."""
        if self._busy():
            return
        message = self.target_message(lambda m: m.role == Role.USER)
        if message is None:
            self.notify(_("Nothing to edit yet."))
            return
        self._editing = message
        box = self.query_one(ChatInput)
        box.load_text(message.content)
        box.move_cursor(box.document.end)
        box.focus()
        whose = (
            _("your message")
            if message.role == Role.USER
            else _("{name}'s reply", name=self._speaker(message))
        )
        self.update_status(
            _("editing {whose} · Enter saves a new version · Ctrl+E cancels", whose=whose)
        )

    def action_message_regenerate(self, same_seed: bool = False) -> None:
        """A new version of the reply (a new reply to a message of yours). `same_seed`: with the
        reply's own parameters and seed, which gives the same text again on the same engine."""
        if self._busy() or self.engine is None:
            return
        message = self.target_message(lambda m: m.role != Role.USER or not same_seed)
        if message is None:
            return
        params = self.params
        if same_seed:
            if message.role == Role.USER or "params" not in message.meta:
                self.notify(_("Only a generated reply has parameters and a seed to reuse."))
                return
            try:
                params = GenerationParams(
                    **{**message.meta["params"], "seed": message.meta["seed"]}
                )
            except (TypeError, ValueError, KeyError):
                self.notify(_("This reply's saved parameters cannot be read."), severity="error")
                return
        try:
            turn = self.conversation.regenerate(message)
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
            return
        if turn is None:
            self.notify(_("A greeting answers nothing: there is nothing to regenerate it from."))
            return
        # Show the branch down to the message answered; the new version streams below it.
        self.store.update_session(self.session.id, leaf_id=turn.parent_id)
        self.load_session(self.session.id)
        count = len(self.store.children(turn.parent_id)) + 1
        self._next_versions = (count, count)
        self._run_generation(turn, params)

    def action_message_delete(self) -> None:
        if self._busy():
            return
        message = self.target_message()
        if message is None:
            return
        below = max(0, self.session.length - 1 - message.depth)
        what = _(" and the {count} message(s) below it", count=below) if below else ""

        def delete(confirmed: bool | None) -> None:
            if confirmed:
                self.store.delete_message(message.id)
                self.load_session(self.session.id)
                self.notify(_("Message deleted."))

        preview = message.content.strip().splitlines()[0][:40] if message.content.strip() else ""
        self.app.push_screen(
            ConfirmScreen(_("Delete “{preview}”{what}?", preview=preview, what=what)), delete
        )

    def action_message_branch(self) -> None:
        if self._busy():
            return
        message = self.target_message()
        if message is None:
            return
        fork = self.store.fork_session(message.id, f"{self.session.title} ⑂")
        self.load_session(fork.id)
        self.refresh_sidebar()
        self.notify(
            _("New session “{title}” from here; the original is unchanged.", title=fork.title)
        )

    # --- looking ------------------------------------------------------------------------------

    def action_message_copy(self) -> None:
        message = self.target_message()
        if message is not None:
            self.app.copy_to_clipboard(message.content)
            self.notify(_("Copied the message (through the terminal: OSC 52)."))

    def action_message_info(self) -> None:
        message = self.target_message(lambda m: m.role != Role.USER)
        if message is not None:
            self.app.push_screen(MessageInfoScreen(message, self._speaker(message)))


def describe_message(message: Message, speaker: str) -> str:
    """How a message was made, as plain lines: what a reply needs to be reproduced."""
    meta = message.meta
    when = datetime.fromtimestamp(message.created_at).strftime("%Y-%m-%d %H:%M:%S")
    lines = [
        _(
            "{speaker} · message {id} · {status} · {when}",
            speaker=speaker,
            id=message.id,
            status=message.status.value,
            when=when,
        )
    ]
    if "edited_from" in meta:
        lines.append(_("edited from message {id}", id=meta["edited_from"]))
    engine = meta.get("engine") if isinstance(meta.get("engine"), dict) else {}
    facts = [
        (N_("model"), meta.get("model")),
        (N_("adapter"), engine.get("adapter")),
        (N_("template"), meta.get("template")),
        (
            N_("engine"),
            " ".join(str(engine[k]) for k in ("engine", "device", "dtype") if engine.get(k)),
        ),
        (N_("quantization"), engine.get("quantization")),
        (N_("seed"), meta.get("seed")),
        (N_("prompt tokens"), meta.get("prompt_tokens")),
        (N_("evaluated (not from cache)"), meta.get("prompt_eval_tokens")),
        (N_("reply tokens"), meta.get("completion_tokens")),
        (N_("first token after"), _seconds(meta.get("ttft_s"))),
        (N_("total time"), _seconds(meta.get("total_s"))),
        (
            N_("speed"),
            _("{rate} tok/s", rate=meta["tokens_per_s"]) if meta.get("tokens_per_s") else None,
        ),
        (N_("finished by"), meta.get("finish_reason")),
        (N_("error"), meta.get("error")),
    ]
    lines += [f"{_(name)}: {value}" for name, value in facts if value not in (None, "", "none")]
    if isinstance(meta.get("params"), dict):
        params = json.dumps(meta["params"], ensure_ascii=False, indent=1, sort_keys=True)
        lines.append(_("parameters: {params}", params=params))
    if len(lines) == 1:
        lines.append(_("Nothing was recorded about how this message was made."))
    return "\n".join(lines)


def _seconds(value) -> str | None:
    return (
        _("{seconds} s", seconds=f"{value:.2f}")
        if isinstance(value, int | float) and value
        else None
    )


class MessageInfoScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,i,q", "dismiss", N_("Close"))]
    DEFAULT_CSS = """
    MessageInfoScreen { align: center middle; }
    MessageInfoScreen > VerticalScroll {
        width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: round $primary; padding: 0 1; background: $surface;
    }
    """

    def __init__(self, message: Message, speaker: str):
        super().__init__()
        self.text = describe_message(message, speaker)

    def compose(self):
        with VerticalScroll():
            yield Static(Text(self.text))
