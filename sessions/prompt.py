"""Turn a session (its persona and transcript) into the prompt for the next reply."""

from __future__ import annotations

from engines.base import Engine, GenerationParams
from sessions.context import PromptPlan, build_prompt
from sessions.models import Message, Session
from sessions.turns import history_messages

DEFAULT_SYSTEM = "You are a helpful assistant."


def plan_prompt(
    session: Session, branch: list[Message], engine: Engine, params: GenerationParams
) -> PromptPlan:
    """Persona text + as much recent history as fits n_ctx − max_new_tokens."""
    system = session.settings.get("system_prompt") or DEFAULT_SYSTEM
    max_rounds = session.settings.get("max_history_rounds")
    return build_prompt(
        system=system,
        history=history_messages(branch),
        count_tokens=engine.count_tokens,
        # Reserve room for the reply, but never more than half the window.
        budget=engine.context_length - min(params.max_new_tokens, engine.context_length // 2),
        max_rounds=max_rounds,
    )
