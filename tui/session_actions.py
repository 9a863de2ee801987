"""Session and scene actions of the chat screen: new, rename, delete, personas, cast.

A mixin of ChatScreen, kept apart so the screen module stays about turns. Rename and delete act
on the session list's highlighted row while the list has focus (`r`, Delete there), else on
the open session (F2, F8).
"""

from __future__ import annotations

from engines.i18n import _
from sessions.group import (
    ReplyOrder,
    resolve_member,
    scene_members,
    scene_rules,
    session_cast,
    set_cast,
)
from sessions.models import Session
from tui.modals import ConfirmScreen, TextPromptScreen
from tui.personas_screen import PersonasScreen
from tui.preset_actions import PresetActions
from tui.user_screen import UserPersonaActions
from tui.widgets.chat_input import ChatInput
from tui.widgets.session_list import SessionList


class SessionActions(PresetActions, UserPersonaActions):
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
                    _("There is no persona named {name}; see F3 Personas.", name=repr(name)),
                    severity="error",
                )
                return
            self.session = set_cast(self.store, self.session.id, [*self.cast, name])
            self.notify(
                _(
                    "{name} joins the scene: {cast}. Address with @名字.",
                    name=name,
                    cast="、".join(self.cast),
                )
            )

        self.app.push_screen(TextPromptScreen(_("Add which persona to this scene?")), add)

    def action_remove_character(self) -> None:
        def remove(name: str | None) -> None:
            name = resolve_member(name or "", scene_members(self.cast, self.personas))
            if name:
                self.session = set_cast(
                    self.store, self.session.id, [n for n in self.cast if n != name]
                )
                self.notify(_("{name} left the scene.", name=name))

        self.app.push_screen(
            TextPromptScreen(
                _("Remove whom? ({cast})", cast="、".join(self.cast) or _("nobody here"))
            ),
            remove,
        )

    def action_scene(self) -> None:
        """The scene dialog: reply order, mute, reply only when mentioned, speak now."""
        from tui.group_screen import SceneScreen

        if len(self.cast) < 2:
            self.notify(_("This is not a group scene: add a character with F5 first."))
            return

        def closed(speaker: str | None) -> None:
            self.session = self.store.get_session(self.session.id)
            self.update_status()
            if speaker:
                self.speak_now(speaker)

        self.app.push_screen(SceneScreen(self.store, self.session.id, self.personas), closed)

    def speak_now(self, speaker: str) -> None:
        """`speaker` replies now, after the last message of the branch, whatever the order."""
        if self.generating:
            self.notify(_("Still replying: press Esc to stop first."), severity="warning")
            return
        if self.engine is None or self.session.leaf_id is None:
            self.notify(_("Nothing to answer yet: send a message first (with a model loaded)."))
            return
        last = self.store.get_message(self.session.leaf_id)
        turn, _plan = self.conversation.answer(last, pick=[speaker])
        self._run_generation(turn)

    def scene_status(self) -> list[str]:
        """The scene's part of the status line: its order and who is muted (a group only)."""
        if len(self.cast) < 2:
            return []
        rules = scene_rules(self.session)
        parts = [_("order {order}", order=rules.order.value)]
        if rules.muted:
            parts.append(
                _("muted {names}", names="、".join(n for n in self.cast if n in rules.muted))
            )
        if rules.mention_only and rules.order != ReplyOrder.MANUAL:
            only = "、".join(n for n in self.cast if n in rules.mention_only)
            parts.append(_("@only {names}", names=only))
        return parts

    def on_session_list_chosen(self, event: SessionList.Chosen) -> None:
        if self.generating:
            self.notify(_("Still replying: press Esc to stop first."), severity="warning")
            return
        if event.session_id != self.session.id:
            self.load_session(event.session_id)
        self.query_one(ChatInput).focus()

    def _target_session(self) -> Session:
        """The session rename and delete act on: the row under the cursor while the session
        list has focus, else the open one."""
        sidebar = self.query_one(SessionList)
        row = sidebar.highlighted_session if sidebar.has_focus else None
        return self.store.get_session(row.id) if row is not None else self.session

    def action_new_session(self) -> None:
        if self.generating:
            self.notify(_("Still replying: press Esc to stop first."), severity="warning")
            return
        self.load_session(self.workspace.new_session(reuse_empty=True).id)
        self.query_one(ChatInput).focus()

    def action_rename_session(self) -> None:
        target = self._target_session()

        def rename(title: str | None) -> None:
            if not title:
                return
            renamed = self.store.update_session(target.id, title=title)
            if renamed.id == self.session.id:
                self.session = renamed
            self.refresh_sidebar()

        question = _("Rename this session:") if target.id == self.session.id else _("Rename:")
        self.app.push_screen(TextPromptScreen(question, target.title), rename)

    def action_delete_session(self) -> None:
        target = self._target_session()
        if self.generating and target.id == self.session.id:
            self.notify(_("Still replying: press Esc to stop first."), severity="warning")
            return

        def delete(confirmed: bool | None) -> None:
            if not confirmed:
                return
            if self.generating and target.id == self.session.id:
                return
            order = [s.id for s in self.store.list_sessions()]
            self.store.delete_session(target.id)
            if target.id == self.session.id:  # open the one below it (else above, else new)
                place = order.index(target.id) if target.id in order else 0
                rest = order[place + 1 :] + order[:place][::-1]
                self.load_session(rest[0] if rest else self.workspace.new_session().id)
            else:
                self.refresh_sidebar()
                self.update_status()
            self.notify(_("Deleted “{title}”.", title=target.title))

        self.app.push_screen(
            ConfirmScreen(_("Delete “{title}” and all its messages?", title=target.title)), delete
        )
