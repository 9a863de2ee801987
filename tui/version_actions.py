"""Versions of the conversation: regenerate a reply, edit and resend your last message, and
step through the versions both keep (the store's message tree never overwrites).

A mixin of ChatScreen, kept apart so the screen module stays about streaming turns.
"""

from __future__ import annotations

from engines.base import CosplayError
from engines.i18n import _
from sessions.models import Message, Role
from tui.widgets.chat_input import ChatInput
from tui.widgets.message_view import MessageView


class VersionActions:
    """Needs from the screen: store, engine, session, conversation, generating, _editing,
    _next_versions, load_session, start_reply, _run_generation, update_status."""

    def action_regenerate(self) -> None:
        if self.generating or self.engine is None:
            return
        tail = self.store.branch_tail(self.session.id, limit=1)
        if not tail:
            return
        last = tail[-1]
        if last.role == Role.USER:
            self.start_reply(last)
            return
        try:
            turn = self.conversation.regenerate()
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
            return
        if turn is None:
            return
        self.query(MessageView).last().remove()
        count = len(self.store.siblings(last)) + 1
        self._next_versions = (count, count)
        self._run_generation(turn)

    def action_edit_last(self) -> None:
        """Put your last message in the input box; Enter sends it as a new version of it
        (the old one and its replies are kept). Ctrl+E again cancels."""
        if self.generating:
            return
        box = self.query_one(ChatInput)
        if self._editing is not None:
            self._editing = None
            box.clear()
            self.update_status()
            return
        users = [m for m in self.latest_round() if m.role == Role.USER]
        if not users:
            self.notify(_("Nothing to edit yet: you have not sent a message in this session."))
            return
        self._editing = users[-1]
        box.load_text(users[-1].content)
        box.move_cursor(box.document.end)
        box.focus()
        self.update_status(_("editing your last message · Enter resends · Ctrl+E cancels"))

    def action_switch_version(self, step: int) -> None:
        """Show the previous/next version of the last reply or, when it has none, of your last
        message (regenerating and editing keep every version)."""
        if self.generating:
            return
        latest_round = self.latest_round()
        versions = self.store.versions(latest_round)
        branched = [m for m in latest_round if versions[m.id][1] > 1]
        if not branched:
            return
        current = branched[-1]
        siblings = self.store.siblings(current)
        index = next(i for i, s in enumerate(siblings) if s.id == current.id) + step
        if 0 <= index < len(siblings):
            leaf = self.store.deepest_leaf(siblings[index].id)
            self.store.update_session(self.session.id, leaf_id=leaf)
            self.load_session(self.session.id)

    def latest_round(self) -> list[Message]:
        """The end of the branch from your last message on (all of it when you have not spoken:
        greetings), read a page at a time from the leaf."""
        tail: list[Message] = []
        leaf = self.session.leaf_id
        while leaf is not None:
            page = self.store.branch_tail(self.session.id, leaf, limit=16)
            tail = page + tail
            users = [i for i, m in enumerate(tail) if m.role == Role.USER]
            if users:
                return tail[users[-1] :]
            leaf = page[0].parent_id if page else None
        return tail

    def resend_edited(self, text: str) -> None:
        """Save `text` as a new version of the message being edited; a message of yours is then
        answered again."""
        edited = self.conversation.edit(self._editing, text)
        self._editing = None
        self.query_one(ChatInput).clear()
        self.load_session(self.session.id)
        if edited.role == Role.USER:
            self.start_reply(edited)
