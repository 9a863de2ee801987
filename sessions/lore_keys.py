"""Lorebook keys (SillyTavern's matchKeys): a plain key matches as a substring (or, with whole
words, between non-word characters); a `/pattern/flags` key as a regular expression, through the
`regex` module so that a search can time out. A hostile pattern gives up after REGEX_TIMEOUT_S,
and all regex keys of one activation share REGEX_TURN_BUDGET_S (a `RegexClock`): after it, they
count as not matching, and the clock names the books whose keys were cut short.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import Any

REGEX_TIMEOUT_S = 0.05  # a hostile key pattern gives up instead of hanging the turn
REGEX_TURN_BUDGET_S = 0.25  # all regex keys of one activation together; then they do not match

_JS_REGEX = re.compile(r"^/([\w\W]+?)/([gimsuy]*)$")
_UNESCAPED_SLASH = re.compile(r"(^|[^\\])/")


@lru_cache(maxsize=1024)
def parse_regex_key(key: str) -> Any | None:
    """A `/pattern/flags` key as a compiled pattern (the `regex` module, so a search can time
    out); None when the key is not one (then it matches as plain text), as parseRegexFromString."""
    match = _JS_REGEX.match(key)
    if not match or _UNESCAPED_SLASH.search(match.group(1)):
        return None
    import regex

    pattern = match.group(1).replace("\\/", "/", 1)
    flags = 0
    for letter in match.group(2):
        flags |= {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL}.get(letter, 0)
    try:
        return regex.compile(pattern, flags)
    except (regex.error, ValueError, OverflowError, RecursionError):
        return None


class RegexClock:
    """The time one activation's regex keys may take together (`seconds`). A key whose search
    runs out of time (its own REGEX_TIMEOUT_S, or what is left of the total) does not match,
    and nor does any regex key once the total is spent; `slow_books` names their books."""

    def __init__(self, seconds: float = REGEX_TURN_BUDGET_S):
        self.left = seconds
        self.slow_books: list[str] = []

    def search(self, pattern: Any, haystack: str, book: str) -> bool:
        if self.left > 0:
            start = time.perf_counter()
            try:
                return pattern.search(haystack, timeout=min(REGEX_TIMEOUT_S, self.left)) is not None
            except TimeoutError:
                pass
            finally:
                self.left -= time.perf_counter() - start
        if book not in self.slow_books:
            self.slow_books.append(book)
        return False


def key_matches(
    haystack: str,
    key: str,
    *,
    case_sensitive: bool,
    whole_words: bool,
    clock: RegexClock | None = None,
    book: str = "",
) -> bool:
    """SillyTavern's matchKeys: a regex key searches (within `clock`'s time, a fresh one's when
    None); else a substring, or with whole words a one-word key between non-word characters
    (ASCII ones, as JavaScript's `\\W`)."""
    pattern = parse_regex_key(key)
    if pattern is not None:
        return (clock or RegexClock()).search(pattern, haystack, book)
    if not case_sensitive:
        haystack, key = haystack.lower(), key.lower()
    if whole_words and len(key.split()) <= 1:
        bounded = rf"(?:^|\W)({re.escape(key)})(?:$|\W)"
        return re.search(bounded, haystack, re.ASCII) is not None
    return key in haystack
