"""Who answers a message: the turn (`Turn`), and Conversation's `answer`, `turn_after` and
`regenerate`, which work it out.

A turn is the message being answered and who answers it: the assistant in a plain chat, the
persona, or the characters of a group scene in order. `ReplyEvents` is what a caller is told while
a turn's replies stream. A mixin of `sessions.conversation.Conversation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sessions.context import PromptPlan
from sessions.group import choose_speakers
from sessions.models import Message, Role

ASSISTANT = "Assistant"  # the speaker of a plain chat's replies


@dataclass(frozen=True)
class Turn:
    """The message to answer and who answers it, in order (none: the plain assistant)."""

    parent_id: int
    speakers: tuple[str, ...] = ()


@dataclass
class ReplyEvents:
    """What a caller shows while replies stream: each reply's start, then its pieces."""

    started: Callable[[str, PromptPlan], None] = lambda speaker, plan: None
    piece: Callable[[str], None] = lambda text: None


class ConversationTurns:
    """Needs from the conversation: store, session, session_id, workspace, cast."""

    def turn_after(self, message: Message, pick: list[str] | None = None) -> Turn | None:
        """Who answers `message` (see `answer`); None when nobody does."""
        return self.answer(message, pick)[0]

    def answer(
        self, message: Message, pick: list[str] | None = None
    ) -> tuple[Turn | None, list[str]]:
        """Who answers `message`, and what to tell the user about it: the assistant in a plain
        chat, the persona in a persona chat, else the cast members its text addresses or the
        scene's order picks (`pick`: a choice made by hand). The turn is None when nobody
        answers (a manual order and nobody addressed, everyone muted); the notices say why,
        and name an `@` that matched nobody."""
        cast = self.cast
        if not cast:
            return Turn(message.id), []
        if len(cast) == 1 and not pick:
            return Turn(message.id, (cast[0],)), []
        chosen = choose_speakers(self.store, self.session, self.workspace.personas, message, pick)
        turn = Turn(message.id, tuple(chosen.speakers)) if chosen.speakers else None
        return turn, chosen.notices

    def regenerate(self, message: Message | None = None) -> Turn | None:
        """The turn that writes a new version of `message` (default: the last one) by its speaker
        again, or a new reply to it when it is yours; None when there is nothing to regenerate
        (an empty chat, a greeting)."""
        tail = [message] if message else self.store.branch_tail(self.session_id, limit=1)
        if not tail:
            return None
        last = tail[-1]
        if last.role == Role.USER:
            return self.turn_after(last)
        if last.parent_id is None:  # a greeting: no message to answer again
            return None
        speakers = (last.name,) if last.name and last.name in self.cast else ()
        return Turn(last.parent_id, speakers)
