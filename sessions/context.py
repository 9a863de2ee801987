"""Build the prompt for one turn so that it fits the context window.

Order of sacrifice: example dialogues go first (block by block, last block
first), then the oldest history rounds — dropped in blocks of several rounds,
so the start of the prompt stays the same for several turns and the engine's
KV cache keeps hitting. The persona/system text and the current round are
never dropped; if they alone do not fit, that is a ContextOverflowError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from engines.base import ChatMessage, ContextOverflowError

# Rounds dropped together when history overflows: the prompt prefix then changes
# only once every DROP_BLOCK turns instead of on every turn.
DROP_BLOCK = 4


@dataclass
class PromptPlan:
    messages: list[ChatMessage]
    prompt_tokens: int
    dropped_rounds: int = 0  # history rounds left out (by the budget or by max_rounds)
    dropped_examples: int = 0  # example-dialogue blocks left out
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        parts = []
        if self.dropped_rounds:
            parts.append(f"{self.dropped_rounds} earlier round(s) left out")
        if self.dropped_examples:
            parts.append(f"{self.dropped_examples} example dialogue(s) left out")
        return ", ".join(parts)


def split_rounds(history: list[ChatMessage]) -> list[list[ChatMessage]]:
    """Group messages into rounds; a round starts at each user message."""
    rounds: list[list[ChatMessage]] = []
    for message in history:
        if message.get("role") == "user" or not rounds:
            rounds.append([message])
        else:
            rounds[-1].append(message)
    return rounds


def build_prompt(
    *,
    system: str,
    history: list[ChatMessage],
    count_tokens: Callable[[list[ChatMessage]], int],
    budget: int,
    max_rounds: int | None = None,
    examples: list[list[ChatMessage]] | None = None,
    post_history: str = "",
) -> PromptPlan:
    """Fit system text + examples + history (+ post-history instructions) into `budget` tokens.

    `history` ends with the turn being answered. `max_rounds` keeps at most that many
    earlier rounds besides the current one (the seed chat server's "max history rounds").
    """
    examples = list(examples or [])
    rounds = split_rounds(history)
    dropped = 0
    if max_rounds is not None and len(rounds) - 1 > max_rounds:
        dropped = len(rounds) - 1 - max_rounds

    def assemble(n_examples: int, n_dropped: int) -> list[ChatMessage]:
        head: list[ChatMessage] = [{"role": "system", "content": system}] if system else []
        for block in examples[:n_examples]:
            head.extend(block)
        body = [m for r in rounds[n_dropped:] for m in r]
        tail: list[ChatMessage] = (
            [{"role": "system", "content": post_history}] if post_history else []
        )
        return head + body + tail

    n_examples = len(examples)
    tokens = count_tokens(assemble(n_examples, dropped))
    while tokens > budget and n_examples > 0:
        n_examples -= 1
        tokens = count_tokens(assemble(n_examples, dropped))

    if tokens > budget:
        # Smallest number of extra rounds to drop (binary search: cost falls as we drop),
        # then rounded up to a whole block so the prefix stays put for a while.
        low, high = dropped + 1, len(rounds) - 1
        if low > high or count_tokens(assemble(0, high)) > budget:
            raise ContextOverflowError(
                f"The persona and your message take {count_tokens(assemble(0, len(rounds) - 1))} "
                f"tokens, more than the {budget} this context allows; shorten the message, "
                "lower max new tokens, or load the model with a larger context (--n-ctx)."
            )
        while low < high:
            middle = (low + high) // 2
            if count_tokens(assemble(0, middle)) <= budget:
                high = middle
            else:
                low = middle + 1
        dropped = min(math.ceil(low / DROP_BLOCK) * DROP_BLOCK, len(rounds) - 1)
        tokens = count_tokens(assemble(0, dropped))

    return PromptPlan(
        messages=assemble(n_examples, dropped),
        prompt_tokens=tokens,
        dropped_rounds=dropped,
        dropped_examples=len(examples) - n_examples,
    )
