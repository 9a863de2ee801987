"""Continuing a reply, and drafting your next message (impersonate): Conversation's
`continue_reply` and `impersonate`, both planned by `_answer_plan` as the speaker's reply would be.

A mixin of `sessions.conversation.Conversation`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from engines.base import ChatMessage, CosplayError, GenerationParams
from engines.i18n import _
from sessions.context import PromptPlan
from sessions.conversation_turns import ASSISTANT, ReplyEvents
from sessions.group import plan_turn
from sessions.history_window import TokenEstimate
from sessions.kvstates import SessionStates
from sessions.models import Message, Role
from sessions.prompt import (
    NAME_AWARE_TEMPLATES,
    StoredBranch,
    UserPersona,
    expand_macros,
    plan_prompt,
)
from sessions.runtime import use_persona
from sessions.turns import continue_reply

# SillyTavern's default impersonation prompt (default_impersonation_prompt in its
# public/scripts/openai.js); a session may set its own as settings["impersonation_prompt"].
IMPERSONATION_PROMPT = (
    "[Write your next reply from the point of view of {{user}}, using the chat history so far "
    "as a guideline for the writing style of {{user}}. Don't write as {{char}} or system. "
    "Don't describe actions of {{char}}.]"
)


class ConversationDrafts:
    """Needs from the conversation: store, session, session_id, workspace, cast,
    lore_placement, _engine."""

    def continue_reply(
        self,
        message: Message,
        params: GenerationParams,
        cancel: threading.Event,
        events: ReplyEvents | None = None,
    ) -> Message:
        """Write more of the reply `message`, the last message of the branch, into it (the
        prompt is the one it answered, ending inside it; see turns.continue_reply). Its speaker
        replies with its adapter, template and preset, as a regenerate would. Stops once
        `cancel` is set, keeping what was written; an engine error is saved on it and raised
        (one before any new text, such as a server that cannot continue, leaves it as it was)."""
        engine = self._engine()
        events = events or ReplyEvents()
        message = self.store.get_message(message.id)
        if message.role != Role.ASSISTANT:
            raise CosplayError(_("Only a reply can be continued; this message is yours."))
        if message.id != self.session.leaf_id:
            raise CosplayError(
                _(
                    "Only the last message of the chat can be continued; branch a new session from this one (b on the message) to continue it there."
                )
            )
        if message.parent_id is None:
            raise CosplayError(
                _("A greeting cannot be continued; send your first message instead.")
            )
        shown: ChatMessage = {"role": "assistant", "content": message.content}
        written = TokenEstimate(engine.count_tokens)(shown) if message.content else 0
        plan, reply_params, facts = self._answer_plan(
            message.parent_id, message.name, params, extra_tokens=written
        )
        self.last_plan = plan
        events.started(message.name or ASSISTANT, plan)
        return continue_reply(
            self.store,
            engine,
            message=message,
            prompt=plan.messages,
            params=reply_params,
            cancel=cancel,
            on_piece=events.piece,
            extra_meta=facts,
        )

    def impersonate(
        self,
        params: GenerationParams,
        cancel: threading.Event,
        on_piece: Callable[[str], None] | None = None,
    ) -> str:
        """A draft of your next message, written by the model in your persona's name (its
        `{{user}}`) from the chat so far; nothing is saved. The prompt is the next reply's
        (the window, persona and lore apply) plus SillyTavern's impersonation instruction; a
        template that writes speakers' names (cosplay: 某某曰：) names you instead."""
        engine = self._engine()
        session = self.session
        user = UserPersona.from_value(session.settings.get("user")).name
        last = self.store.branch_tail(self.session_id, limit=1)
        cast = self.cast
        speaker = (last[-1].name if last and last[-1].name in cast else cast[0]) if cast else ""
        char = speaker or ASSISTANT
        instruction = expand_macros(
            session.settings.get("impersonation_prompt") or IMPERSONATION_PROMPT,
            char=char,
            user=user,
        )
        extra = TokenEstimate(engine.count_tokens)({"role": "user", "content": instruction})
        plan, draft_params, _ = self._answer_plan(
            session.leaf_id, speaker, params, extra_tokens=extra
        )
        messages = list(plan.messages)
        named = engine.template_name in NAME_AWARE_TEMPLATES  # the prompt ends 你的名字曰：
        if not named and messages and messages[-1].get("role") == "user":  # no two in a row
            last_line = messages[-1]
            messages[-1] = {**last_line, "content": f"{last_line['content']}\n\n{instruction}"}
        elif not named:
            messages.append({"role": "user", "content": instruction})
        stops = [s for s in (f"\n{char}:", f"\n{char}：") if s not in draft_params.stop]
        draft_params = dataclasses.replace(draft_params, stop=[*draft_params.stop, *stops])
        SessionStates(self.store.path.parent).bind(engine, self.session_id)
        speaking = getattr(engine, "speaker", "")
        if named:
            engine.set_template(engine.template_name, speaker=user)
        text = ""
        stream = engine.stream_chat(messages, draft_params, cancel)
        try:
            for piece in stream:
                text += piece
                if on_piece is not None:
                    on_piece(piece)
                if cancel.is_set():
                    break
        finally:
            stream.close()
            if named:
                engine.set_template(engine.template_name, speaker=speaking)
        text = text.strip()
        for prefix in (f"{user}:", f"{user}："):
            if text.startswith(prefix):
                text = text[len(prefix) :].lstrip()
        return text

    def _answer_plan(
        self,
        leaf_id: int | None,
        speaker: str,
        params: GenerationParams,
        *,
        extra_tokens: int = 0,
    ) -> tuple[PromptPlan, GenerationParams, dict]:
        """The prompt, parameters and reply facts of `speaker`'s (a cast member's, else the
        plain assistant's) reply to `leaf_id`, planned with `extra_tokens` more kept free for
        what the prompt gets besides (a reply's text so far, an instruction)."""
        engine = self._engine()
        room = min(params.max_new_tokens + extra_tokens, 131072)
        planning = dataclasses.replace(params, max_new_tokens=room)
        keep = {"max_new_tokens": params.max_new_tokens}
        if speaker and speaker in self.cast:
            turn = plan_turn(
                self.store,
                self.session_id,
                engine,
                planning,
                self.workspace.personas,
                speaker,
                leaf_id=leaf_id,
                lore_placement=self.lore_placement,
            )
            facts = {"persona": speaker, "adapter": turn.adapter}
            return turn.plan, dataclasses.replace(turn.params, **keep), facts
        use_persona(engine, None)
        branch = StoredBranch(self.store, self.session_id, leaf_id)
        personas = self.workspace.personas
        plan = plan_prompt(
            self.session, branch, engine, planning, personas=personas,
            lore_placement=self.lore_placement,
        )  # fmt: skip
        return plan, params, {}
