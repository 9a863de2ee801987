"""The Cosplay Textual app and its factory (every path and the engine injectable, for tests)."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, SystemCommand

from engines.base import Engine
from sessions.paths import data_paths
from sessions.store import Store
from tui.chat_screen import ChatScreen
from tui.modals import TextPromptScreen


class CosplayApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "Cosplay"

    def __init__(
        self,
        store: Store,
        engine: Engine | None,
        session_id: int | None = None,
        persona: str | None = None,
    ):
        super().__init__()
        self.store = store
        self.engine = engine
        self.session_id = session_id
        self.persona = persona

    def on_mount(self) -> None:
        self.push_screen(ChatScreen(self.store, self.engine, self.session_id, self.persona))

    @property
    def chat(self) -> ChatScreen:
        return next(s for s in self.screen_stack if isinstance(s, ChatScreen))

    def notify(self, message: str, *, markup: bool = False, **kwargs) -> None:
        """Notifications carry names, paths and error text from files, models and exceptions:
        always shown as text, never as markup (a card named `[/]` must not crash the app)."""
        super().notify(message, markup=False, **kwargs)

    def exit(self, *args, **kwargs) -> None:
        """Quitting mid-reply stops the reply first: the engine stops at its next token and
        the partial reply is saved as cancelled (else shutdown waits for the whole reply)."""
        for screen in self.screen_stack:
            if isinstance(screen, ChatScreen):
                screen.action_stop()
        super().exit(*args, **kwargs)

    def action_training_monitor(self) -> None:
        def open_run(directory: str | None) -> None:
            if not directory:
                return
            path = Path(directory).expanduser()
            if not path.is_dir():
                self.notify(
                    f"{path} is not a directory; give a `cosplay train --out` folder.",
                    severity="error",
                )
                return
            from tui.training_screen import TrainingScreen

            self.push_screen(TrainingScreen(path))

        self.push_screen(
            TextPromptScreen("Training run directory (the --out of cosplay train):"), open_run
        )

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        chat = self.chat
        entries = [
            ("New chat", "Start a new session (Ctrl+N)", chat.action_new_session),
            ("Rename chat", "Rename the current session (F2)", chat.action_rename_session),
            (
                "Delete chat",
                "Delete the current session after confirming (F8)",
                chat.action_delete_session,
            ),
            (
                "Regenerate reply",
                "Write the last reply again, keeping the old one (Ctrl+R)",
                chat.action_regenerate,
            ),
            ("Stop generating", "Stop the reply being written (Esc)", chat.action_stop),
            (
                "Edit last message",
                "Edit your last message and send it again, keeping the old one (Ctrl+E)",
                chat.action_edit_last,
            ),
            (
                "Previous version",
                "Show the previous version of the last reply or of your last message (Alt+←)",
                lambda: chat.action_switch_version(-1),
            ),
            (
                "Next version",
                "Show the next version of the last reply or of your last message (Alt+→)",
                lambda: chat.action_switch_version(1),
            ),
            (
                "Generation parameters",
                "Show or hide the parameters panel (Ctrl+T)",
                chat.action_toggle_params,
            ),
            (
                "Personas",
                "Browse, edit, import personas; start a chat with one (F3)",
                chat.action_personas,
            ),
            (
                "Add character to scene",
                "Add a persona to this session: a group scene",
                chat.action_add_character,
            ),
            (
                "Remove character from scene",
                "Take a persona out of this session",
                chat.action_remove_character,
            ),
            (
                "Toggle session list",
                "Show or hide the sessions sidebar (Ctrl+B)",
                chat.action_toggle_sidebar,
            ),
            (
                "Training monitor",
                "Watch a `cosplay train` run: its loss curve, live",
                self.action_training_monitor,
            ),
        ]
        for title, help_text, callback in entries:
            yield SystemCommand(title, help_text, callback)


def make_app(
    *,
    home: str | Path | None = None,
    store: Store | None = None,
    engine: Engine | None = None,
    session_id: int | None = None,
    persona: str | None = None,
) -> CosplayApp:
    """Build the app; with no store, open the one under `home` ($COSPLAY_HOME or the platform dir)."""
    if store is None:
        store = Store(data_paths(home).ensure().database)
    return CosplayApp(store, engine, session_id=session_id, persona=persona)
