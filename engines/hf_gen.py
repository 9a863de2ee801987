"""GPU engine, generation: sampling settings, the cancel criterion, the generation thread, the prefix cache."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria, TextIteratorStreamer
from transformers.cache_utils import DynamicCache

from engines.base import CosplayError, GenerationParams
from engines.hf_samplers import sampling, takes_over
from engines.i18n import _

POLL_S = 0.05  # how often the consumer checks that the generation thread is still alive
CONTEXT_IDS = 4  # ids before new text that it is decoded after (a continued reply, a new line)


def decode_after(tokenizer, context: list[int], ids: list[int], skip_special: bool = True) -> str:
    """`ids` decoded as they read after the ids `context`: SentencePiece tokenizers drop the
    leading space of a text's first word, which inside a text (continuing a reply) is kept."""
    return _Decoder(tokenizer, {"skip_special_tokens": skip_special}, context)(ids)


class _Decoder:
    def __init__(self, tokenizer, kwargs: dict, context: list[int]):
        self.tokenizer, self.kwargs, self.context = tokenizer, kwargs, list(context)
        self.head = tokenizer.decode(self.context, **kwargs) if self.context else ""

    def __call__(self, ids: list[int]) -> str:
        if self.context:
            whole = self.tokenizer.decode(self.context + ids, **self.kwargs)
            if whole.startswith(self.head):
                return whole[len(self.head) :]
        return self.tokenizer.decode(ids, **self.kwargs)


def generation_config(
    base: GenerationConfig,
    params: GenerationParams,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int | None,
) -> GenerationConfig:
    """Every sampling field set explicitly, so nothing silently falls back to the model's defaults.
    With top-nσ, XTC or dynamic temperature on, transformers' own warpers are left off: the
    processors of hf_samplers.sampling_chain sample in llama.cpp's order instead."""
    if params.mirostat_mode:
        raise CosplayError(
            _(
                "Mirostat runs on the CPU engine (and llama-server) only; set mirostat to 0 for this model."
            )
        )
    config = GenerationConfig.from_dict(base.to_dict())
    sample = sampling(params)
    warpers = sample and not takes_over(params)  # transformers' own temperature, top-k…
    settings: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        min_new_tokens=None,
        max_length=None,
        do_sample=sample,
        num_beams=params.num_beams,
        num_return_sequences=1,
        repetition_penalty=params.repetition_penalty,
        no_repeat_ngram_size=params.no_repeat_ngram_size,
        eos_token_id=eos_ids or None,
        pad_token_id=pad_id,
        # Explicit values, not None: None would pick up the model's generation_config defaults.
        # Greedy and beams get transformers' global defaults, which it does not warn about.
        temperature=params.temperature if warpers else 1.0,
        top_k=params.top_k if warpers else (0 if sample else 50),
        top_p=params.top_p if warpers else 1.0,
        min_p=(params.min_p or None) if warpers else None,
        typical_p=params.typical_p if warpers else 1.0,
    )
    if params.num_beams > 1:
        settings.update(early_stopping=True, length_penalty=1.0)
    for key, value in settings.items():
        setattr(config, key, value)
    return config


class Watch(StoppingCriteria):
    """Stops generation at the next token once the user cancels or the consumer saw a stop string.

    It is called after every generated token, so it also records when the first token
    came out and how many steps ran.
    """

    def __init__(self, cancel: threading.Event, halt: threading.Event):
        self.cancel = cancel
        self.halt = halt
        self.first_token_at: float | None = None
        self.steps = 0

    def __call__(self, input_ids, scores, **kwargs):
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.steps += 1
        stop = self.cancel.is_set() or self.halt.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class TokenStreamer(TextIteratorStreamer):
    """A TextIteratorStreamer that releases text after every token instead of every word.

    The stock one waits for a space, which holds back a whole line of text without
    spaces. Here only an incomplete UTF-8 character (decoded as U+FFFD) waits for
    its next token; the cache is still reset after a newline to keep decoding cheap.
    Text is decoded after the ids before it (`context`: the prompt's last ids when a reply
    is continued, the last line's after a newline), so a word's leading space survives.
    """

    _decoder: _Decoder | None = None

    @property
    def context(self) -> list[int]:
        return self._decoder.context if self._decoder else []

    @context.setter
    def context(self, ids: list[int]) -> None:
        self._decoder = _Decoder(self.tokenizer, self.decode_kwargs, ids[-CONTEXT_IDS:])

    def put(self, value) -> None:
        if value.dim() > 1:
            if value.shape[0] > 1:
                raise ValueError("TokenStreamer only supports a batch of one")
            value = value[0]
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self.token_cache.extend(value.tolist())
        if self._decoder is None:
            self.context = []
        text = self._decoder(self.token_cache)
        if text.endswith("\n"):
            printable = text[self.print_len :]
            self.context = self.context + self.token_cache
            self.token_cache, self.print_len = [], 0
        else:
            stable = text.rstrip("\ufffd")
            printable = stable[self.print_len :]
            self.print_len = max(self.print_len, len(stable))
        if printable:
            self.on_finalized_text(printable)


class GenerationRun(threading.Thread):
    """`model.generate` in a thread; an exception is kept for the consumer and still ends the stream."""

    def __init__(
        self, model, kwargs: dict[str, Any], seed: int, context: contextlib.AbstractContextManager
    ):
        super().__init__(name="cosplay-generate", daemon=True)
        self.model = model
        self.kwargs = kwargs
        self.seed = seed
        self.context = context
        self.output: torch.Tensor | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        streamer = self.kwargs.get("streamer")
        try:
            torch.manual_seed(self.seed)
            with torch.inference_mode(), self.context:
                self.output = self.model.generate(**self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            self.error = exc
            if streamer is not None:
                streamer.on_finalized_text("", stream_end=True)
        finally:
            self.model = None
            self.kwargs = {}


def stream_texts(streamer, run: GenerationRun, cancel: threading.Event) -> Iterator[str]:
    """Text from the streamer until it ends, the thread dies, or the user cancels."""
    while not cancel.is_set():
        try:
            text = next(streamer)
        except StopIteration:
            return
        except queue.Empty:
            if run.is_alive():
                continue
            # The thread ended; drain what it left, then stop.
            with contextlib.suppress(queue.Empty):
                while True:
                    text = streamer.text_queue.get_nowait()
                    if text is streamer.stop_signal:
                        return
                    yield text
            return
        yield text


class PrefixCache:
    """The previous turn's KV cache and the token ids it holds, cropped to the common prefix."""

    def __init__(self):
        self.cache: DynamicCache | None = None
        self.ids: list[int] = []

    def clear(self) -> None:
        self.cache, self.ids = None, []

    def prepare(self, ids: list[int], config) -> tuple[DynamicCache, int]:
        """A cache holding the longest reusable prefix of `ids`, and that prefix's length."""
        common = 0
        for a, b in zip(self.ids, ids, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)  # generate needs at least one new token to compute
        if self.cache is None or common <= 0:
            # A fresh cache, not crop(-everything): an oversized crop does not clear (transformers #47433).
            self.cache, self.ids = DynamicCache(config=config), []
            return self.cache, 0
        held = self.cache.get_seq_length()
        if held > common:
            self.cache.crop(-(held - common))
        self.ids = ids[:common]
        return self.cache, common

    def remember(self, sequence: list[int]) -> None:
        """After generate: the cache now holds the first `get_seq_length()` ids of the sequence."""
        if self.cache is None:
            return
        held = self.cache.get_seq_length()
        if held > len(sequence):
            self.clear()
        else:
            self.ids = sequence[:held]
