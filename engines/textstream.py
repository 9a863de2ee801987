"""Turn a stream of token bytes into text pieces: whole UTF-8 characters, stop strings cut.

Shared by the engines so both hold back the same things: an incomplete UTF-8
sequence (a Chinese character spans three bytes and often two tokens) and any
tail that could still become a stop string.
"""

from __future__ import annotations

import codecs


class TextAssembler:
    def __init__(self, stop: list[str]):
        self._stop = [s for s in stop if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # decoded text not yet emitted (could start a stop string)
        self.text = ""  # everything emitted so far
        self.stopped = False  # a stop string was found

    def feed(self, data: bytes) -> str:
        """Add the bytes of one token; return the text that is now safe to show."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(data)
        return self._release(final=False)

    def finish(self) -> str:
        """The end of generation: flush everything still held back. The bytes of a character
        cut in half (a reply stopped or cut by max_new_tokens mid-character) are dropped, not
        saved as U+FFFD."""
        if self.stopped:
            return ""
        self._decoder.reset()
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        cut = min((i for i in (self._pending.find(s) for s in self._stop) if i >= 0), default=-1)
        if cut >= 0:
            piece, self._pending, self.stopped = self._pending[:cut], "", True
        elif final:
            piece, self._pending = self._pending, ""
        else:
            keep = max((_overlap(self._pending, s) for s in self._stop), default=0)
            piece = self._pending[: len(self._pending) - keep]
            self._pending = self._pending[len(self._pending) - keep :]
        self.text += piece
        return piece


def _overlap(text: str, stop: str) -> int:
    """Length of the longest tail of `text` that is a proper prefix of `stop`."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-size:]):
            return size
    return 0
