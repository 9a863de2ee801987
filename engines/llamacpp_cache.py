"""What the CPU engine's KV cache holds, and how the next prompt reuses it.

The cache is described by the text it spells and its token ids (prompt + reply
as they were evaluated). For the next prompt, `plan` finds the tokens to feed
llama.cpp so that as much as possible comes from the cache:

* the prompt continues the cached text → the cached ids + the new text's ids
  (re-tokenizing a sampled reply would split it differently and miss the cache);
* the prompt is the cached text with a span cut out after a fixed prefix (the
  oldest rounds dropped when the history overflows) → keep the prefix, remove
  the span from the KV cache and shift the rest down (llama-server's context
  shift), then only the new text is evaluated;
* otherwise the longest common prefix, cut at a token boundary.

Token boundaries are byte offsets into the cached text, from each token's piece;
when the pieces do not spell the text exactly (a tokenizer that adds a leading
space, say) only the first case applies.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

PROBE_BYTES = 64  # bytes of the text after the prefix used to find where the cache resumes
SHIFT_TRIES = 8  # token boundaries tried before the end of the common prefix


@dataclass
class Plan:
    """The next prompt's token ids and how much of the KV cache it keeps or shifts out."""

    tokens: list[int]  # the prompt as token ids
    keep: int = 0  # cached tokens kept at the start
    drop: int = 0  # cached tokens removed right after them (the KV shift); 0: none


@dataclass
class TokenCache:
    """The text the KV cache holds and its token ids (with each token's byte offset)."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)
    _offsets: list[int] | None = None  # byte offset where each token starts, then the end

    def set(self, text: str, tokens: list[int]) -> None:
        self.text, self.tokens, self._offsets = text, list(tokens), None

    def clear(self) -> None:
        self.set("", [])

    def offsets(self, piece: Callable[[int], bytes], leading_bos: bool) -> list[int]:
        """Byte offsets where the tokens start, then where the last one ends, for as many
        tokens as spell the start of the text (all of them, unless the text holds a U+FFFD for
        bytes that were not UTF-8, or the tokenizer adds a leading space)."""
        if self._offsets is None:
            data, offsets = self.text.encode("utf-8"), [0]
            for index, token in enumerate(self.tokens):
                part = b"" if (index == 0 and leading_bos) else piece(token)
                end = offsets[-1] + len(part)
                if data[offsets[-1] : end] != part:
                    break
                offsets.append(end)
            self._offsets = offsets
        return self._offsets

    def spelled(self, offsets: list[int]) -> bool:
        """Whether all the tokens spell all the text."""
        return len(offsets) == len(self.tokens) + 1 and offsets[-1] == len(self.text.encode())


def plan(
    cache: TokenCache,
    prompt: str,
    tokenize: Callable[[bytes], list[int]],
    fresh: Callable[[str], list[int]],
    piece: Callable[[int], bytes],
    leading_bos: bool,
) -> Plan:
    """The prompt's tokens, reusing the cache as described in the module docstring.

    `tokenize(bytes)` tokenizes a continuation (no BOS); `fresh(text)` a whole prompt."""
    if cache.text and prompt.startswith(cache.text):
        rest = prompt[len(cache.text) :]
        return Plan(cache.tokens + (tokenize(rest.encode("utf-8")) if rest else []))
    offsets = cache.offsets(piece, leading_bos)
    data, cached = prompt.encode("utf-8"), cache.text.encode("utf-8")
    common = _common_prefix(data, cached)
    keep = bisect_right(offsets, common) - 1  # tokens wholly inside the common prefix
    while keep > 0 and _continuation(data, offsets[keep]):
        keep -= 1  # tokenize the rest from a whole character
    first = 1 if leading_bos else 0
    if keep <= first:
        return Plan(fresh(prompt))
    # A span cut out of the cache? Try a few boundaries back: the cut's first tokens may
    # share a few bytes with what follows it. (Only where every token spells its text: the
    # tokens kept after the cut must spell the prompt.)
    tries = SHIFT_TRIES if cache.spelled(offsets) else 0
    for candidate in range(keep, max(keep - tries, first), -1):
        if _continuation(data, offsets[candidate]):
            continue
        start = offsets[candidate]
        resume = _resume(data, cached, offsets, candidate, start)
        if resume is not None:
            tail = data[start + len(cached) - offsets[resume] :]
            tokens = cache.tokens[:candidate] + cache.tokens[resume:]
            tokens += tokenize(tail) if tail else []
            return Plan(tokens, keep=candidate, drop=resume - candidate)
    return Plan(cache.tokens[:keep] + tokenize(data[offsets[keep] :]), keep=keep)


def spelled_reply(data: bytes, ends: list[int], shown: str) -> tuple[str, int]:
    """The reply as the cache keeps it: (text, number of tokens) for the most sampled tokens
    whose bytes read as the start of the shown text. `data` is the tokens' bytes, `ends[n]`
    where the first n end. Drops the token of a character cut in half at the end (the shown
    text dropped its bytes); keeps invalid bytes, shown as U+FFFD, as the text shows them."""
    for count in range(len(ends) - 1, 0, -1):
        text = data[: ends[count]].decode("utf-8", errors="replace")
        if shown.startswith(text):
            return text, count
    return "", 0


def _common_prefix(a: bytes, b: bytes) -> int:
    low, high = 0, min(len(a), len(b))
    while low < high:  # binary search on slice equality: C-speed compares
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _continuation(data: bytes, offset: int) -> bool:
    return offset < len(data) and (data[offset] & 0xC0) == 0x80


def _resume(data: bytes, cached: bytes, offsets: list[int], keep: int, start: int) -> int | None:
    """The token index from which the rest of the cache continues the prompt at `start`."""
    probe = data[start : start + PROBE_BYTES]
    if not probe:
        return None
    boundaries = {offset: index for index, offset in enumerate(offsets[:-1])}
    position = cached.find(probe, start + 1)
    while position >= 0:
        index = boundaries.get(position)
        if index is not None and index > keep:
            tail = cached[position:]
            if data[start : start + len(tail)] == tail:
                return index
        position = cached.find(probe, position + 1)
    return None
