"""The history a prompt is planned from, read from the newest message back a page at a time
(a `Window` of `Entry`s, filled by a `Reader`), each message with an estimate of what it adds
to the prompt (`TokenEstimate`; the caller keeps them per message, so a long chat is counted
once, not on every turn). `sessions/context.py` plans the prompt over it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engines.base import ChatMessage, CosplayError

FIRST_PAGE = 32  # messages read first; later pages are sized from what is still missing

Count = Callable[[list[ChatMessage]], int]


# --- what one message costs ---------------------------------------------------------------

# Openings a message is counted after, by its role: a user turn before an assistant line and
# a full exchange before a user line, so templates that insist on alternating roles render,
# templates that fold the system text into the first user turn have none to fold, and a
# default system message that a template adds (SmolLM2's ChatML) is in both counts.
_DOT = "."
_BEFORE_ASSISTANT: list[ChatMessage] = [{"role": "user", "content": _DOT}]
_BEFORE_USER: list[ChatMessage] = [*_BEFORE_ASSISTANT, {"role": "assistant", "content": _DOT}]


class TokenEstimate:
    """What one history message adds to a prompt, in tokens: the engine's count of an opening
    plus the message, minus its count of the opening alone. Exact for templates that render
    each message on its own (ChatML and most); an estimate elsewhere. A template that cannot
    render the pair gets a rough size instead — the exact count of the whole prompt decides."""

    def __init__(self, count_tokens: Count):
        self._count = count_tokens
        self._bases: dict[str, int | None] = {}
        self.counted = 0  # messages counted with the engine (for tests and benchmarks)

    def __call__(self, message: ChatMessage) -> int:
        role = message.get("role", "user")
        opening = _BEFORE_ASSISTANT if role == "assistant" else _BEFORE_USER
        self.counted += 1
        try:
            if role not in self._bases:
                self._bases[role] = self._count(opening)
            base = self._bases[role]
            if base is not None:
                return max(1, self._count([*opening, message]) - base)
        except CosplayError:
            self._bases[role] = None
        return rough_tokens(message)


def rough_tokens(message: ChatMessage) -> int:
    """A size for a message no template rendered: about 3 bytes a token, plus its framing."""
    return len(message.get("content", "").encode("utf-8")) // 3 + 4


# --- the history, read from the newest message back ------------------------------------------


@dataclass
class Entry:
    """One history message as the prompt gets it (before the speaker's view), where it stands
    in its branch (`depth`: messages above it), what it is estimated to add to the prompt
    (None: not counted yet) and, for a stored message, its id."""

    message: ChatMessage
    depth: int
    tokens: int | None = None
    id: int | None = None


# read(limit) → the next `limit` branch messages above those read (fewer entries where some
# are left out of prompts), root side first, and whether the root has been read.
Reader = Callable[[int], tuple[list[Entry], bool]]


class Window:
    """The end of the history, read backwards as far as planning asks. A message is estimated
    (`estimate(message)`) only when planning reaches it; `counted` keeps those estimates of
    stored messages ({id: tokens}) for the caller to save."""

    def __init__(
        self,
        read: Reader,
        estimate: Callable[[ChatMessage], int],
        unread: Callable[[], list[ChatMessage]] | None = None,
    ):
        self.entries: list[Entry] = []  # root side first
        self.complete = False  # the root has been read: `entries` is the whole history
        self.counted: dict[int, int] = {}
        # The messages above those read, where the caller holds them anyway (a history in
        # memory): then left-out rounds are counted exactly however little was read.
        self.unread = unread
        self._read = read
        self._estimate = estimate
        self._sums = [0]  # _sums[k]: the estimated tokens of the last k entries

    def extend(self, limit: int) -> None:
        """Read up to `limit` more messages, above those read so far."""
        if not self.complete:
            older, self.complete = self._read(max(1, limit))
            self.entries[:0] = older

    def recent(self, count: int) -> list[ChatMessage]:
        """The last `count` history messages (fewer in a shorter history)."""
        while len(self.entries) < count and not self.complete:
            self.extend(max(count - len(self.entries), FIRST_PAGE))
        return [entry.message for entry in self.entries[-count:]] if count > 0 else []

    def tokens_from(self, index: int) -> int:
        """The estimated tokens of the entries from `index` to the end."""
        need = len(self.entries) - index
        while len(self._sums) <= need:
            self._count_next()
        return self._sums[need]

    def fits(self, index: int, allowance: float) -> bool:
        """Whether the entries from `index` on are estimated at `allowance` tokens or fewer,
        counting (from the end) only as many as it takes to tell."""
        need = len(self.entries) - index
        while len(self._sums) <= need and self._sums[-1] <= allowance:
            self._count_next()
        return len(self._sums) > need and self._sums[need] <= allowance

    def average(self) -> float:
        """Estimated tokens per message, over those counted (a guess before any)."""
        return self._sums[-1] / (len(self._sums) - 1) if len(self._sums) > 1 else 64.0

    def _count_next(self) -> None:
        entry = self.entries[-len(self._sums)]
        if entry.tokens is None:
            entry.tokens = self._estimate(entry.message)
            if entry.id is not None:
                self.counted[entry.id] = entry.tokens
        self._sums.append(self._sums[-1] + entry.tokens)


def list_window(history: list[ChatMessage], count_tokens: Count) -> Window:
    """A window over a history held in memory (its position is its depth)."""
    end = len(history)

    def read(limit: int) -> tuple[list[Entry], bool]:
        nonlocal end
        start = max(0, end - limit)
        page = [Entry(m, depth) for depth, m in enumerate(history[start:end], start)]
        end = start
        return page, start == 0

    return Window(read, TokenEstimate(count_tokens), unread=lambda: history[:end])
