"""Who you are ({{user}}): your name and a description, for this chat and, if you like, as the
default for new chats.

Each chat keeps a copy of who you were when it began (`settings["user"]`, written by
Workspace.new_session): its persona's greeting was written with that name, so changing the
default never renames you in older chats. Setting it here for the open chat rewrites the
greetings too while nothing has been said yet.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, TextArea

from engines.i18n import N_, _
from sessions.prompt import UserPersona
from tui.modals import SaveDialog


class UserPersonaScreen(SaveDialog, ModalScreen[tuple[UserPersona, bool] | None]):
    """Edit a user persona; dismissed with (persona, also the default for new chats) or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", N_("Cancel")),
        Binding("ctrl+s", "save", N_("Save"), priority=True),
    ]
    DEFAULT_CSS = """
    UserPersonaScreen #user_description { height: 4; }
    """

    def __init__(self, user: UserPersona, *, as_default: bool = True):
        super().__init__()
        self.user = user
        self.as_default = as_default

    def compose(self):
        with Vertical(classes="dialog"):
            yield Label(_("Who you are in this chat ({{user}} in cards)"), markup=False)
            yield Input(self.user.name, placeholder=_("your name"), id="user_name")
            yield Label(_("About you, for the prompt (may be empty; Ctrl+S saves)"), markup=False)
            yield TextArea(self.user.description, id="user_description", soft_wrap=True)
            yield Checkbox(_("Also for new chats (the default)"), self.as_default, id="as_default")
            with Horizontal(classes="buttons"):
                yield Button(_("Save"), variant="primary", id="save")
                yield Button(_("Cancel"), id="cancel")

    def on_mount(self) -> None:
        self.query_one("#user_name", Input).focus()

    def action_save(self) -> None:
        name = " ".join(self.query_one("#user_name", Input).value.split())
        if not name:
            self.notify(_("Give a name (it replaces {{user}})."), severity="warning", markup=False)
            return
        description = self.query_one("#user_description", TextArea).text.strip()
        as_default = self.query_one("#as_default", Checkbox).value
        self.dismiss((UserPersona(name, description), as_default))


class UserPersonaActions:
    """The chat screen's "Your persona" action (a mixin, through SessionActions). Needs from
    the screen: workspace, session, generating, load_session."""

    def action_user_persona(self) -> None:
        if self.generating:
            self.notify(_("Still replying: press Esc to stop first."), severity="warning")
            return
        current = self.workspace.session_user_persona(self.session)
        default = self.workspace.default_user_persona()

        def done(result: tuple[UserPersona, bool] | None) -> None:
            if result is None or self.generating:
                return
            user, as_default = result
            if as_default:
                self.workspace.set_default_user_persona(user)
            self.workspace.set_session_user_persona(self.session.id, user)
            self.load_session(self.session.id)  # a greeting may now say the new name
            where = _("this chat and new ones") if as_default else _("this chat")
            self.notify(_("You are {name} in {where}.", name=user.name, where=where))

        self.app.push_screen(
            UserPersonaScreen(current, as_default=default is None or default == current), done
        )
