"""One message in the transcript: a header (speaker, status, version) and a Markdown body.

A streaming reply grows through `Markdown.get_stream()`, which appends to the
last block instead of re-rendering the whole reply on every token. Model text
is Markdown, never Rich markup: `[bold]` shows as `[bold]`. Lines break by the CJK
rules (tui/widgets/cjk_wrap.py): none starts with `，` or `。`.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from engines.i18n import N_, _
from sessions.models import Message, Role, Status
from tui.actions import CHAT, MESSAGE, key_label
from tui.widgets.cjk_wrap import TranscriptMarkdown

STATUS_MARKS = {
    Status.PARTIAL: N_("… incomplete"),
    Status.CANCELLED: N_("■ stopped"),
    Status.ERROR: N_("✗ error"),
}
CONTINUE = next(a for a in CHAT if a.id == "continue")


def cut_mark(keys: str) -> str:
    """What a reply cut by max_new_tokens says in its header: that it was cut, how to go on."""
    return _("✂ cut at max new tokens · {keys} continues", keys=keys)


class MessageView(Vertical, can_focus=True):
    """Focusable (click it, or Alt+↑ from the input box): the keys of tui.actions.MESSAGE then
    act on it."""

    BINDINGS = [action.binding("screen.") for action in MESSAGE]
    DEFAULT_CSS = """
    MessageView { height: auto; padding: 0 1; margin: 0 0 1 0; }
    MessageView:focus { background: $boost; }
    MessageView:focus > .header { color: $text; }
    MessageView > .header { height: 1; color: $text-muted; }
    MessageView > Markdown { margin: 0; padding: 0; }
    MessageView.user { border-left: thick $secondary; }
    MessageView.assistant { border-left: thick $primary; }
    MessageView.error > .header { color: $error; }
    """

    def __init__(self, message: Message, *, speaker: str, versions: tuple[int, int] = (1, 1)):
        super().__init__(classes=message.role.value)
        self.message = message
        self.speaker = speaker
        self.versions = versions
        self._stream: MarkdownStream | None = None

    def compose(self):
        yield Static(self._header_text(), classes="header")
        yield TranscriptMarkdown(self.message.content)  # CJK line breaking

    def _header_text(self) -> Text:
        text = Text(self.speaker, style="bold")
        index, count = self.versions
        if count > 1:
            text.append(f"  ‹{index}/{count}›", style="dim")
        mark = STATUS_MARKS.get(self.message.status)
        if mark:
            text.append(f"  {_(mark)}", style="italic")
        elif self.message.role == Role.ASSISTANT and self.message.meta.get("finish_reason") == (
            "length"
        ):
            keys_of = getattr(self.app, "keys_of", None)  # the user's key for it, if rebound
            keys = keys_of(CONTINUE) if keys_of else key_label(CONTINUE.keys)
            text.append(f"  {cut_mark(keys)}", style="italic")
        if self.message.role == Role.ASSISTANT and self.message.meta.get("error"):
            text.append(f"  {self.message.meta['error']}", style="italic")
        return text

    @property
    def body(self) -> Markdown:
        return self.query_one(Markdown)

    def begin_stream(self) -> None:
        self._stream = Markdown.get_stream(self.body)

    async def write(self, piece: str) -> None:
        if self._stream is None:
            self.begin_stream()
        await self._stream.write(piece)

    async def end_stream(self, message: Message) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.show_message(message)

    def show_message(self, message: Message) -> None:
        """Show this message's header (status, marks) for `message`, a newer record of it."""
        self.message = message
        self.set_class(message.status == Status.ERROR, "error")
        self.query_one(".header", Static).update(self._header_text())
