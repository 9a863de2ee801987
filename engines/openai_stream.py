"""Reading one chat completion's server-sent events (engines/openai_remote.py): the reply's
text pieces, and what the stream said about itself on the way (token usage, the finish
reason, whether it ended with `[DONE]`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

from engines.errors import GenerationError
from engines.i18n import _
from engines.openai_http import error_text, sse_events


class ChatStream:
    """The events of `response`, from the server at `url`."""

    def __init__(self, response, url: str) -> None:
        self._response, self._url = response, url
        self.usage: dict = {}  # the last `usage` object sent (stream_options.include_usage)
        self.finish: str | None = None  # the last finish_reason sent
        self.ended = False  # `[DONE]` came
        self.pieces = 0  # text pieces yielded

    def texts(self, cancel: threading.Event) -> Iterator[str]:
        """The reply's text pieces until `[DONE]`, the stream's end or `cancel`; an error
        event is a GenerationError (a malformed one: ValueError)."""
        for field, payload in sse_events(self._response):
            if cancel.is_set():
                return
            if payload == "[DONE]":
                self.ended = True
                return
            chunk = json.loads(payload) if field == "data" else {"error": payload}
            if "error" in chunk:
                raise GenerationError(
                    _(
                        "The server at {url} stopped the reply ({problem}); check the server's log.",
                        url=self._url,
                        problem=error_text(payload.encode()),
                    )
                )
            self.usage = chunk.get("usage") or self.usage
            for choice in chunk.get("choices") or []:
                self.finish = choice.get("finish_reason") or self.finish
                text = (choice.get("delta") or {}).get("content")
                if text and not cancel.is_set():
                    self.pieces += 1
                    yield text
