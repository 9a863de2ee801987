"""A scripted engine for tests and `cosplay chat --demo`; never the default.

It replies with canned text (or the scripted replies it was given), one word
or CJK character per piece, and records every prompt it received so tests can
check what the real engine would have seen. A reply it is asked to continue
(`prefill`) goes on with the next scripted reply (or the demo text).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator

from engines.base import ChatMessage, GenerationParams, GenerationStats
from engines.templates import get_template

DEMO_REPLY = (
    "亮夜观天象，见东南风起，此天助也。*The demo engine is speaking:* load a real model "
    "with `cosplay chat --model path/to/model.gguf` for real replies. "
    "Markup such as [bold] stays literal."
)
_PIECE = re.compile(r"[\u3000-\u9fff\uff00-\uffef]|\s*[^\s\u3000-\u9fff\uff00-\uffef]+|\s+")


def split_pieces(text: str) -> list[str]:
    """Word-sized pieces (each CJK character on its own) that join back to `text`."""
    return _PIECE.findall(text)


class FakeEngine:
    kind = "demo"

    def __init__(
        self,
        replies: list[str] | None = None,
        *,
        delay: float = 0.0,
        context_length: int = 4096,
        template: str = "chatml",
        adapter_format: str | None = None,
    ):
        self.model_name = "demo"
        self.template_name = template
        self.context_length = context_length
        self.last_stats: GenerationStats | None = None
        self.prompts: list[list[ChatMessage]] = []  # every prompt received, for tests
        self.params: list[GenerationParams] = []
        self.prefills: list[str] = []  # the prefill of every prompt ("" for a new reply)
        self.adapter_format = adapter_format  # None: takes any adapter reference
        self.active_adapter: str | None = None
        self.default_adapter: str | None = None
        self.adapter_sources: dict[str, str] = {}  # what load_adapter was given, for tests
        self._replies = list(replies or [])
        self._delay = delay
        self._default_template = template
        self.speaker = ""
        self._template = get_template(template)

    def render(self, messages: list[ChatMessage], prefill: str = "") -> str:
        """The prompt text, as the local engines render it."""
        return self._template.render(messages, char_name=self.speaker, prefill=prefill)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        # Roughly one token per CJK character or per short word, like a real BPE tokenizer.
        return len(split_pieces(self.render(messages)))

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: GenerationParams,
        cancel: threading.Event,
        *,
        prefill: str = "",
    ) -> Iterator[str]:
        self.prompts.append([dict(m) for m in messages])  # type: ignore[misc]
        self.params.append(params)
        self.prefills.append(prefill)
        started = time.perf_counter()
        reply = self._replies.pop(0) if self._replies else DEMO_REPLY
        seed = secrets.randbits(32) if params.seed is None else params.seed  # as real engines
        prompt = self._template.render(messages, char_name=self.speaker, prefill=prefill)
        stats = GenerationStats(prompt_tokens=len(split_pieces(prompt)), seed=seed)
        stats.prompt_eval_tokens = stats.prompt_tokens
        self.last_stats = None
        pieces = split_pieces(reply)[: params.max_new_tokens]
        try:
            for index, piece in enumerate(pieces):
                if cancel.is_set():
                    stats.finish_reason = "cancelled"
                    break
                if self._delay:
                    time.sleep(self._delay)
                if index == 0:
                    stats.ttft_s = time.perf_counter() - started
                stats.completion_tokens += 1
                yield piece
            else:
                if len(split_pieces(reply)) > params.max_new_tokens:
                    stats.finish_reason = "length"
        finally:
            if cancel.is_set():  # also when the caller stopped reading at the cancel, as real ones
                stats.finish_reason = "cancelled"
            stats.total_s = time.perf_counter() - started
            self.last_stats = stats

    def load_adapter(self, name: str, path: str) -> None:
        self.adapter_sources[name] = str(path)

    def set_adapter(self, name: str | None) -> None:
        self.active_adapter = name

    def set_template(self, name: str | None, *, speaker: str = "") -> None:
        self._template = get_template(name or self._default_template)
        self.template_name, self.speaker = self._template.name, speaker

    def describe(self) -> dict[str, str]:
        facts = {"engine": "demo", "device": "none"}
        if self.active_adapter:
            facts["adapter"] = self.active_adapter
        return facts

    def close(self) -> None:
        pass
