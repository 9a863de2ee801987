"""The Cosplay Textual app and its factory (every path and the engine injectable, for tests)."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, SystemCommand
from textual.command import CommandPalette

import tui.cjk_compositing  # noqa: F401  (installs itself: CJK over another widget's edge)
from engines.base import CosplayError, Engine
from engines.i18n import _
from engines.loader import ModelSpec
from sessions.store import Store
from sessions.workspace import Workspace
from tui.actions import APP, CHAT, MESSAGE, Action, key_label
from tui.chat_screen import ChatScreen
from tui.keymap import config_keymap, read_keymap
from tui.modals import TextPromptScreen
from tui.translated import translated_command


class CosplayApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "Cosplay"
    BINDINGS = [action.binding() for action in APP if action.keys]

    def __init__(
        self,
        workspace: Workspace,
        engine: Engine | None,
        session_id: int | None = None,
        persona: str | None = None,
        *,
        owns_workspace: bool = False,
        start_notice: str = "",
    ):
        super().__init__()
        self.start_notice = start_notice  # why the first-start screen shows (a model gone)
        self.workspace = workspace
        self.store = workspace.store
        self.engine = engine
        # What the engine was loaded from: a switch that must free it first (engines/room.py)
        # loads it again by this if the new model fails; None: never freed first.
        self.engine_spec: ModelSpec | None = None
        self.session_id = session_id
        self.persona = persona
        self._owns_workspace = owns_workspace  # opened by make_app(home=): closed on exit

    def on_mount(self) -> None:
        config = self.workspace.config
        for warning in config.warnings:  # else on stderr, behind the screen
            self.notify(warning, severity="warning", timeout=12)
        try:
            self.set_keymap(config_keymap(config) or read_keymap(self.workspace.paths.keymap))
        except CosplayError as exc:
            self.notify(str(exc), severity="error", timeout=10)
        theme = str(config.get("ui.theme") or "")
        if theme and theme in self.available_themes:
            self.theme = theme
        elif theme:
            self.notify(
                _(
                    "In {path}, ui.theme {theme} is not a theme here; use one of {themes}.",
                    path=config.path,
                    theme=repr(theme),
                    themes=", ".join(sorted(self.available_themes)),
                ),
                severity="warning",
                timeout=12,
            )
        self.push_screen(ChatScreen(self.workspace, self.engine, self.session_id, self.persona))

    def on_unmount(self) -> None:
        if self._owns_workspace:
            self.workspace.close()

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
                screen.stop_memory()
            cancel_download = getattr(screen, "cancel_download", None)
            if cancel_download is not None:  # a download stops at its next chunk, kept to resume
                cancel_download()
        super().exit(*args, **kwargs)

    def action_training_monitor(self) -> None:
        def open_run(directory: str | None) -> None:
            if not directory:
                return
            path = Path(directory).expanduser()
            if not path.is_dir():
                self.notify(
                    _("{path} is not a directory; give a `cosplay train --out` folder.", path=path),
                    severity="error",
                )
                return
            from tui.training_screen import TrainingScreen

            self.push_screen(TrainingScreen(path))

        self.push_screen(
            TextPromptScreen(_("Training run directory (the --out of cosplay train):")), open_run
        )

    def action_models(self) -> None:
        from tui.models_screen import ModelsScreen

        self.push_screen(ModelsScreen(self.workspace, self.chat))

    def keys_of_id(self, action_id: str) -> str:
        """`keys_of` for the action with this id, else the palette's name for it."""
        action = next(a for a in CHAT + MESSAGE + APP if a.id == action_id)
        return self.keys_of(action) or f"Ctrl+P {_(action.title)}"

    def keys_of(self, action: Action) -> str:
        """The keys that run `action` here, as people write them: keys.toml's, else its own."""
        return key_label(self._keymap.get(action.id, action.keys))

    def action_command_palette(self) -> None:
        """Textual's palette (as App's), its search field's placeholder in the UI's language."""
        if self.use_command_palette and not CommandPalette.is_open(self):
            self.push_screen(
                CommandPalette(id="--command-palette", placeholder=_("Search for commands…"))
            )

    def search_themes(self) -> None:
        """Textual's theme picker (as App's), its placeholder in the UI's language."""
        from textual.theme import ThemeProvider

        self.push_screen(
            CommandPalette(providers=[ThemeProvider], placeholder=_("Search for themes…"))
        )

    def get_system_commands(self, screen):
        for command in super().get_system_commands(screen):
            yield translated_command(command)
        chat = self.chat
        for actions, target in ((CHAT, chat), (MESSAGE, chat), (APP, self)):
            for action in actions:
                keys = self.keys_of(action)
                help = _(action.help)
                help_text = help[0].upper() + help[1:]
                yield SystemCommand(
                    _(action.title),
                    f"{help_text} ({keys})" if keys else help_text,
                    lambda target=target, name=action.action: target.run_action(name),
                )


def make_app(
    *,
    home: str | Path | None = None,
    workspace: Workspace | None = None,
    store: Store | None = None,
    engine: Engine | None = None,
    session_id: int | None = None,
    persona: str | None = None,
    start_notice: str = "",
) -> CosplayApp:
    """Build the app on a workspace, on a store (tests: personas next to its database), or on
    the data dir `home` ($COSPLAY_HOME or the platform dir), which the app closes on exit."""
    owns = workspace is None and store is None
    if workspace is None:
        workspace = Workspace.of(store) if store is not None else Workspace(home)
    return CosplayApp(
        workspace,
        engine,
        session_id=session_id,
        persona=persona,
        owns_workspace=owns,
        start_notice=start_notice,
    )
