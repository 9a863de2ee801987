"""The GPU engine's prompt side: rendering messages with the chat template, token ids (the
ids sampled for the previous reply reused when the prompt continues it), stop strings and
special-token stops, and one reply's plan (`Turn`: prompt, ids, generation config, seed).
A mixin of engines/hf.py's HFEngine, whose state it reads."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from transformers import GenerationConfig

from engines.base import ChatMessage, ContextOverflowError, GenerationParams
from engines.hf_gen import CONTEXT_IDS, generation_config
from engines.i18n import _


@dataclass
class Turn:
    """One reply's plan: the prompt, its ids, and the settings derived from the params."""

    prompt: str
    ids: list[int]
    stops: list[str]
    eos_ids: list[int]
    config: GenerationConfig
    seed: int
    beams: bool
    started: float
    context: list[int]  # the prompt's last ids, which new text is decoded after (a prefill)


class HFPrompt:
    """For HFEngine: its `template`, `tokenizer`, `base_model`, `context_length`, `speaker`,
    `_memory`, `_lock`, `_bos_text`, `_eos_text` and `_add_bos`."""

    def render(self, messages: list[ChatMessage], prefill: str = "") -> str:
        return self.template.render(
            messages,
            bos_token=self._bos_text,
            eos_token=self._eos_text,
            char_name=self.speaker,
            prefill=prefill,
        )

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a rendered prompt.

        When the prompt continues the previous turn's prompt and reply, the ids sampled for
        that reply are reused and only the rest is tokenized: re-tokenizing a sampled reply
        often splits it differently, which would break the prefix cache inside it (the CPU
        engine does the same).
        """
        for known_text, known_ids in self._memory:  # longest first
            if prompt.startswith(known_text):
                rest = prompt[len(known_text) :]
                tail = self.tokenizer(rest, add_special_tokens=False).input_ids if rest else []
                return known_ids + tail
        ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        if self._add_bos and not (self._bos_text and prompt.startswith(self._bos_text)):
            ids = [self.tokenizer.bos_token_id, *ids]
        return ids

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        with self._lock:
            return len(self.encode(self.render(messages)))

    def _stop_setup(self, params: GenerationParams) -> tuple[list[str], list[int]]:
        """Text stop strings for the assembler; special-token stops become end-of-sequence ids.

        Special tokens are skipped when decoding, so `<|im_end|>` could never be matched as text.
        """
        eos = self.base_model.generation_config.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.append(self.tokenizer.eos_token_id)
        special = set(self.tokenizer.all_special_tokens) | set(
            getattr(self.tokenizer, "added_tokens_encoder", {})
        )
        texts = []
        for stop in [*params.stop, *self.template.stop]:
            if stop in special:
                eos_ids.append(self.tokenizer.convert_tokens_to_ids(stop))
            elif stop:
                texts.append(stop)
        return texts, sorted(set(eos_ids))

    def _plan(self, messages: list[ChatMessage], params: GenerationParams, prefill: str) -> Turn:
        started = time.perf_counter()
        prompt = self.render(messages, prefill)
        ids = self.encode(prompt)
        room = self.context_length - len(ids)
        if room <= 0:
            raise ContextOverflowError(
                _(
                    "The prompt takes {count} tokens but the context holds {context_length}; lower max history rounds or load with a larger --n-ctx.",
                    count=len(ids),
                    context_length=self.context_length,
                )
            )
        stops, eos_ids = self._stop_setup(params)
        pad_id = self.tokenizer.pad_token_id
        config = generation_config(
            self.base_model.generation_config,
            params,
            min(params.max_new_tokens, room),
            eos_ids,
            eos_ids[0] if pad_id is None and eos_ids else pad_id,
        )
        seed = secrets.randbits(32) if params.seed is None else params.seed
        context = ids[-CONTEXT_IDS:] if prefill else []
        return Turn(
            prompt, ids, stops, eos_ids, config, seed, params.num_beams > 1, started, context
        )
