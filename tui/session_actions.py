"""Session and scene actions of the chat screen: new, rename, delete, personas, cast.

A mixin of ChatScreen, kept apart so the screen module stays about turns.
"""

from __future__ import annotations

from sessions.group import session_cast, set_cast
from tui.modals import ConfirmScreen, TextPromptScreen
from tui.personas_screen import PersonasScreen
from tui.widgets.chat_input import ChatInput
from tui.widgets.session_list import SessionList


class SessionActions:
    """Needs from the screen: workspace, store, personas, session, generating, load_session,
    refresh_sidebar."""

    @property
    def cast(self) -> list[str]:
        return session_cast(self.session)

    def action_personas(self) -> None:
        """Open the personas screen; choosing personas starts a new session with them."""

        def chosen(names: list[str] | None) -> None:
            if names and not self.generating:
                self.load_session(self.workspace.new_session(names).id)
                self.query_one(ChatInput).focus()

        self.app.push_screen(PersonasScreen(self.personas.directory), chosen)

    def action_add_character(self) -> None:
        def add(name: str | None) -> None:
            if not name:
                return
            if not self.personas.exists(name):
                self.notify(
                    f"There is no persona named {name!r}; see F3 Personas.", severity="error"
                )
                return
            self.session = set_cast(self.store, self.session.id, [*self.cast, name])
            self.notify(f"{name} joins the scene: {'、'.join(self.cast)}. Address with @名字.")

        self.app.push_screen(TextPromptScreen("Add which persona to this scene?"), add)

    def action_remove_character(self) -> None:
        def remove(name: str | None) -> None:
            if name and name in self.cast:
                self.session = set_cast(
                    self.store, self.session.id, [n for n in self.cast if n != name]
                )
                self.notify(f"{name} left the scene.")

        self.app.push_screen(
            TextPromptScreen(f"Remove whom? ({'、'.join(self.cast) or 'nobody here'})"), remove
        )

    def on_session_list_chosen(self, event: SessionList.Chosen) -> None:
        if self.generating:
            self.notify("Still replying: press Esc to stop first.", severity="warning")
            return
        if event.session_id != self.session.id:
            self.load_session(event.session_id)
        self.query_one(ChatInput).focus()

    def action_new_session(self) -> None:
        if self.generating:
            self.notify("Still replying: press Esc to stop first.", severity="warning")
            return
        self.load_session(self.workspace.new_session().id)
        self.query_one(ChatInput).focus()

    def action_rename_session(self) -> None:
        def rename(title: str | None) -> None:
            if title:
                self.session = self.store.update_session(self.session.id, title=title)
                self.refresh_sidebar()

        self.app.push_screen(TextPromptScreen("Rename this session:", self.session.title), rename)

    def action_delete_session(self) -> None:
        if self.generating:
            self.notify("Still replying: press Esc to stop first.", severity="warning")
            return

        def delete(confirmed: bool | None) -> None:
            if not confirmed:
                return
            self.store.delete_session(self.session.id)
            remaining = self.store.list_sessions()
            self.load_session(remaining[0].id if remaining else self.workspace.new_session().id)
            self.notify("Session deleted.")

        self.app.push_screen(
            ConfirmScreen(f"Delete “{self.session.title}” and all its messages?"), delete
        )
