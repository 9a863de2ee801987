"""Build the prompt for one turn so that it fits the context window.

Order of sacrifice: example dialogues go first (block by block, last block
first), then the oldest history rounds — dropped in blocks, so the start of the
prompt stays the same for several turns and the engine's KV cache keeps
hitting. The persona/system text and the current round are never dropped; if
they alone do not fit, that is a ContextOverflowError.

Planning never reads more history than the window can hold. The history is read
from the newest message back, a page at a time (a `Window` of sessions/history_window.py),
each message with an estimate of what it adds to the prompt (`TokenEstimate`; the caller
keeps them per message, so a long chat is counted once, not on every turn). The estimates
choose the cut; the assembled prompt is then counted exactly, once, and again only when
it does not fit (or when the count shows that more fits than estimated). A round
starts at each message the speaker sees as the user's; the cut is at such a
message, moved forward to the first one past a multiple of BLOCK_MESSAGES in the
branch (`depth`: messages above it), so it stays put for about DROP_BLOCK turns
however much of the chat was read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from engines.base import ChatMessage, ContextOverflowError
from engines.i18n import _
from sessions.history_window import FIRST_PAGE, Count, Entry, Window, list_window

# Rounds dropped together when history overflows: the prompt prefix then changes
# only once every DROP_BLOCK turns instead of on every turn.
DROP_BLOCK = 4
# The same block measured in messages (a round is a message and its reply): the cut is
# anchored on multiples of it in the branch, which a window knows without reading the start.
BLOCK_MESSAGES = 2 * DROP_BLOCK
MAX_PAGE = 2048


@dataclass(frozen=True)
class Injection:
    """A message put into the history `depth` messages from its end (0: after the message
    answered), as SillyTavern's at-depth prompts: lore, the Author's Note. Near the end, a
    change in it leaves the start of the prompt, and so the engine's KV cache, as it was."""

    depth: int
    role: str
    content: str
    what: str  # what the inspector calls it ("lore: 赤壁之战", "author's note")


@dataclass
class PromptPlan:
    """The messages the next reply's prompt holds, their token count and what was left out."""

    messages: list[ChatMessage]
    prompt_tokens: int  # the engine's exact count of `messages`
    # History rounds left out (by the budget or by max_rounds); None where the planner did not
    # read that far back (a long chat): then `dropped_messages` says how much was left out.
    dropped_rounds: int | None = 0
    dropped_examples: int = 0  # example-dialogue blocks left out
    notes: list[str] = field(default_factory=list)
    dropped_messages: int = 0  # messages of the branch above the first one kept
    # The prompt's parts in order, as (name, number of messages): system, examples, memory,
    # history, injection (a message put in at depth), input (the message answered),
    # post_history; a name may come more than once; the prompt inspector counts their tokens.
    parts: list[tuple[str, int]] = field(default_factory=list)
    lore: list[str] = field(default_factory=list)  # the lorebook entries that fired
    # What went where besides the history: (what, where), e.g. ("lore: 赤壁之战", "at depth 4
    # as system"), ("author's note", …), ("memory", …); for the prompt inspector.
    placed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def summary(self) -> str:
        parts = []
        if self.dropped_rounds:
            parts.append(_("{count} earlier round(s) left out", count=self.dropped_rounds))
        elif self.dropped_rounds is None and self.dropped_messages:
            parts.append(_("{count} earlier message(s) left out", count=self.dropped_messages))
        if self.dropped_examples:
            parts.append(_("{count} example dialogue(s) left out", count=self.dropped_examples))
        return _(", ").join(parts)


def split_rounds(history: list[ChatMessage]) -> list[list[ChatMessage]]:
    """Group messages into rounds; a round starts at each user message."""
    rounds: list[list[ChatMessage]] = []
    for message in history:
        if message.get("role") == "user" or not rounds:
            rounds.append([message])
        else:
            rounds[-1].append(message)
    return rounds


# --- the plan -------------------------------------------------------------------------------


def build_prompt(
    *,
    system: str,
    history: list[ChatMessage],
    count_tokens: Count,
    budget: int,
    max_rounds: int | None = None,
    examples: list[list[ChatMessage]] | None = None,
    post_history: str = "",
) -> PromptPlan:
    """Fit system text + examples + history (+ post-history instructions) into `budget` tokens.

    `history` ends with the turn being answered. `max_rounds` keeps at most that many
    earlier rounds besides the current one (the seed chat server's "max history rounds").
    """
    return plan_window(
        list_window(history, count_tokens),
        system=system,
        count_tokens=count_tokens,
        budget=budget,
        max_rounds=max_rounds,
        examples=examples,
        post_history=post_history,
    )


def plan_window(
    window: Window,
    *,
    system: str,
    count_tokens: Count,
    budget: int,
    max_rounds: int | None = None,
    examples: list[list[ChatMessage]] | None = None,
    post_history: str = "",
    view: Callable[[list[ChatMessage]], list[ChatMessage]] | None = None,
    starts_round: Callable[[ChatMessage], bool] | None = None,
    memory: str = "",
    injections: list[Injection] | None = None,
) -> PromptPlan:
    """`build_prompt` over a window that reads the history back only as far as it must.

    `view` turns the kept history into prompt messages (the speaker's view of a scene; default:
    as they are); `starts_round(message)` says where a round starts (default: a user message).
    `memory` (a summary of what fell out of the window) goes in as a system message after the
    examples, before the first history message kept; `injections` go into the kept history at
    their depth (deeper than the history kept: at its start). Neither is ever dropped.
    """
    return _Planner(
        window,
        system=system,
        count_tokens=count_tokens,
        budget=budget,
        max_rounds=max_rounds,
        examples=list(examples or []),
        post_history=post_history,
        view=view or list,
        starts_round=starts_round or (lambda message: message.get("role") == "user"),
        memory=memory,
        injections=list(injections or []),
    ).plan()


@dataclass
class _Planner:
    """One plan's inputs: the history window, the system text, the token counter, the budget."""

    window: Window
    system: str
    count_tokens: Count
    budget: int
    max_rounds: int | None
    examples: list[list[ChatMessage]]
    post_history: str
    view: Callable[[list[ChatMessage]], list[ChatMessage]]
    starts_round: Callable[[ChatMessage], bool]
    memory: str = ""
    injections: list[Injection] = field(default_factory=list)

    def sections(self, n_examples: int, history: list[Entry]) -> list[tuple[str, list]]:
        """The prompt as (part name, its messages), in order; parts may be empty."""
        system: ChatMessage = {"role": "system", "content": self.system}
        memory: ChatMessage = {"role": "system", "content": self.memory}
        out: list[tuple[str, list[ChatMessage]]] = [
            ("system", [system] if self.system else []),
            ("examples", [m for block in self.examples[:n_examples] for m in block]),
            ("memory", [memory] if self.memory else []),
        ]
        shown = self.view([entry.message for entry in history])
        last = len(shown) - 1  # the message answered

        def add(start: int, end: int) -> None:
            out.append(("history", shown[start : min(end, last)]))
            if start <= last < end:
                out.append(("input", [shown[last]]))

        start = 0
        for at, injection in sorted(
            ((max(0, len(shown) - i.depth), i) for i in self.injections), key=lambda p: p[0]
        ):
            add(start, at)
            start = at
            out.append(("injection", [{"role": injection.role, "content": injection.content}]))
        add(start, len(shown))
        post: ChatMessage = {"role": "system", "content": self.post_history}
        out.append(("post_history", [post] if self.post_history else []))
        return out

    def assemble(self, n_examples: int, history: list[Entry]) -> list[ChatMessage]:
        return [m for _, messages in self.sections(n_examples, history) for m in messages]

    def starts(self) -> list[int]:
        """Indexes of the entries read that start a round."""
        return [i for i, e in enumerate(self.window.entries) if self.starts_round(e.message)]

    def first_considered(self, starts: list[int]) -> int | None:
        """Where the history that may be kept begins: the root, or the oldest round that
        max_rounds allows; None while neither has been read."""
        if self.max_rounds is not None and len(starts) > self.max_rounds:
            return starts[-(self.max_rounds + 1)]
        return 0 if self.window.complete else None

    def next_page(self, missing_tokens: float) -> int:
        average = max(1.0, self.window.average())
        return max(8, min(MAX_PAGE, int(missing_tokens / average * 1.25) + 8))

    def plan(self) -> PromptPlan:
        window = self.window
        # The current round (from the last round start) is always kept: read up to it.
        while not window.complete and not self.starts():
            window.extend(max(FIRST_PAGE, len(window.entries)))
        starts = self.starts()
        current = starts[-1] if starts else 0
        kept_always = window.entries[current:]
        base = self.count_tokens(self.assemble(0, kept_always))
        if base > self.budget:
            raise ContextOverflowError(
                _(
                    "The persona and your message take {count} tokens, more than the {budget} "
                    "this context allows; shorten the message, lower max new tokens, or load "
                    "the model with a larger context (--n-ctx).",
                    count=base,
                    budget=self.budget,
                )
            )
        # What the prompt costs besides the history (as the estimates see it), and so how many
        # estimated history tokens fit.
        allowance = self.budget - (base - window.tokens_from(current))

        # Read back until the history outgrows the allowance, or it all has been read.
        while True:
            starts = self.starts()
            first = self.first_considered(starts)
            if first is not None or not window.fits(0, allowance):
                break
            window.extend(self.next_page(allowance - window.tokens_from(0)))
        entries = window.entries
        current = starts[-1] if starts else 0  # (indexes moved as older pages came in)

        n_examples = len(self.examples)
        too_long = -1  # the latest cut known (exactly) not to fit
        if first is not None and window.fits(first, allowance):
            # All the history that may be kept fits, by the estimate: examples go first.
            while True:
                if n_examples == 0 and first == current:
                    tokens = base
                else:
                    tokens = self.count_tokens(self.assemble(n_examples, entries[first:]))
                if tokens <= self.budget:
                    return self.result(n_examples, first, tokens)
                if n_examples == 0:
                    too_long = first
                    break
                n_examples -= 1
        n_examples = 0
        cuts = [i for i in starts if i <= current and (first is None or i >= first)]
        if first is not None and first not in cuts:
            cuts.insert(0, first)  # the root (a greeting before any user message)

        def choose(allow: float) -> int | None:
            """The cut for `allow` estimated history tokens: the earliest that fits, moved on
            to the first round start past the next multiple of BLOCK_MESSAGES."""
            fitting: list[int] = []
            for i in reversed(cuts):  # latest first: count no further back than fits
                if i <= too_long or not window.fits(i, allow):
                    break
                fitting.insert(0, i)
            if not fitting:
                return None
            earliest = fitting[0]
            if earliest == first:
                return earliest  # nothing left out beyond max_rounds
            mark = math.ceil(entries[earliest].depth / BLOCK_MESSAGES) * BLOCK_MESSAGES
            return next((i for i in fitting if entries[i].depth >= mark), earliest)

        best: tuple[int, int] = (current, base)  # the current round alone always fits
        tried: set[int] = set()
        shortfall = 0  # tokens the estimate missed in the last exact count
        while (cut := choose(allowance - shortfall)) is not None and cut not in tried:
            tried.add(cut)
            tokens = base if cut == current else self.count_tokens(self.assemble(0, entries[cut:]))
            if tokens <= self.budget:
                best = min(best, (cut, tokens))
            else:
                too_long = max(too_long, cut)
            shortfall = tokens - (self.budget - allowance) - window.tokens_from(cut)
        return self.result(n_examples, *best)

    def result(self, n_examples: int, cut: int, tokens: int) -> PromptPlan:
        entries = self.window.entries
        complete = self.window.complete
        dropped_rounds: int | None = None
        if complete or self.window.unread is not None:
            unread = [] if complete else self.window.unread()
            left_out = unread + [e.message for e in entries[:cut]]
            dropped_rounds = sum(
                1 for i, message in enumerate(left_out) if i == 0 or self.starts_round(message)
            )
        sections = self.sections(n_examples, entries[cut:])
        messages = [m for _, part in sections for m in part]
        parts = [(name, len(part)) for name, part in sections if part]
        shown = sum(len(part) for name, part in sections if name in ("history", "input"))
        placed = [
            (
                i.what,
                _("at depth {depth} as {role}", depth=i.depth, role=i.role)
                + (_(" (above all history)") * (i.depth > shown)),
            )
            for i in self.injections
        ]
        if self.memory:
            placed.insert(0, (_("memory"), _("after the persona and examples, before the history")))
        return PromptPlan(
            messages=messages,
            parts=parts,
            placed=placed,
            prompt_tokens=tokens,
            dropped_rounds=dropped_rounds,
            dropped_examples=len(self.examples) - n_examples,
            dropped_messages=0 if complete and cut == 0 else entries[cut].depth,
        )
