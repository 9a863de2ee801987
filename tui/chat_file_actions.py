"""Chats to and from files in the TUI, as `cosplay sessions export/import` do: Markdown, text,
Cosplay JSON (the whole tree), SillyTavern JSONL and text-generation-webui JSON.

A mixin of ChatScreen, and the export dialog (a format and a path).
"""

from __future__ import annotations

import re
from pathlib import Path

from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select

from engines.base import CosplayError
from engines.i18n import N_, _
from tui.modals import TextPromptScreen

EXTENSIONS = {"md": ".md", "txt": ".txt", "json": ".json", "st": ".jsonl", "tgw": ".json"}
FORMAT_NAMES = {
    "md": N_("Markdown (the current branch)"),
    "txt": N_("plain text (the current branch)"),
    "json": N_("Cosplay JSON (every version, lossless)"),
    "st": N_("SillyTavern chat (.jsonl, versions as swipes)"),
    "tgw": N_("text-generation-webui chat (.json)"),
}


def default_path(title: str, fmt: str) -> str:
    """~/<title>.<ext>, the title made safe for a file name (Chinese kept)."""
    stem = re.sub(r"[\\/:*?\"<>|\x00-\x1f]+", "_", title).strip(" ._") or "chat"
    suffix = "-tgw" if fmt == "tgw" else ""
    return str(Path("~") / f"{stem[:60]}{suffix}{EXTENSIONS[fmt]}")


class ExportScreen(ModalScreen[tuple[str, str] | None]):
    """Choose a format and a path; dismisses with (format, path) or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", N_("Cancel"))]

    def __init__(self, title: str):
        super().__init__()
        self.session_title = title

    def compose(self):
        with Vertical(classes="dialog"):
            yield Label(_("Export this chat as:"), markup=False)
            yield Select(
                [(_(name), fmt) for fmt, name in FORMAT_NAMES.items()],
                value="md",
                allow_blank=False,
                id="format",
            )
            yield Label(_("to the file:"), markup=False)
            yield Input(default_path(self.session_title, "md"), id="path")
            yield Label(_("Enter to export, Esc to cancel"), markup=False)

    def on_select_changed(self, event: Select.Changed) -> None:
        self.query_one("#path", Input).value = default_path(self.session_title, str(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if path:
            self.dismiss((str(self.query_one("#format", Select).value), path))


class ChatFileActions:
    """Needs from the screen: store, workspace, session, load_session, refresh_sidebar."""

    def action_export_session(self) -> None:
        def export(choice: tuple[str, str] | None) -> None:
            if choice is None:
                return
            fmt, path = choice
            from sessions.chat_export import export_session

            target = Path(path).expanduser()
            try:
                text, notes = export_session(self.store, self.session.id, fmt)
                if target.is_dir():
                    raise CosplayError(_("{path} is a folder; give a file name.", path=target))
                target.write_text(text, encoding="utf-8")
            except CosplayError as exc:
                self.notify(str(exc), severity="error", timeout=8)
                return
            except OSError as exc:
                self.notify(
                    _(
                        "Cannot write {path} ({error}); choose another path.",
                        path=target,
                        error=exc.strerror or exc,
                    ),
                    severity="error",
                    timeout=8,
                )
                return
            self.notify(
                _("Exported to {path}.", path=target) + "".join(f"\n{note}" for note in notes)
            )

        self.app.push_screen(ExportScreen(self.session.title), export)

    def action_import_chat(self) -> None:
        def import_file(path: str | None) -> None:
            if not path:
                return
            from sessions.chat_import import import_into

            try:
                session, _parsed = import_into(self.workspace, Path(path).expanduser())
            except CosplayError as exc:
                self.notify(str(exc), severity="error", timeout=8)
                return
            self.load_session(session.id)
            self.refresh_sidebar()
            self.notify(
                _(
                    "Imported “{title}”: {count} message(s) on its branch.",
                    title=session.title,
                    count=session.length,
                )
            )

        self.app.push_screen(
            TextPromptScreen(
                _(
                    "Import a chat file (SillyTavern .jsonl, text-generation-webui .json, "
                    "Cosplay .json):"
                )
            ),
            import_file,
        )
