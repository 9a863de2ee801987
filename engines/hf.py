"""GPU engine: a Hugging Face model through transformers, PEFT persona adapters, bitsandbytes.

Runs on CUDA, MPS or the CPU (fp32: slow but correct, which is how the tests run
it). The prompt is rendered with the tokenizer's own chat template or a named one
from `engines.templates` and tokenized (reusing the ids sampled for the previous
reply when the prompt continues it), then compared with the ids the previous
turn's `DynamicCache` holds: the cache is cropped to the common prefix and only
the rest is computed. Switching adapters never reloads the base
model — PEFT keeps every loaded adapter next to it and only flips which one is
active — but it drops the cache, whose keys and values the old adapter made.

Helpers: `hf_prompt` (render, token ids, stops, a reply's plan), `hf_load` (source, device,
dtype, quantization), `hf_adapters` (safety and fit checks), `hf_gen` (sampling, cancel,
thread, prefix cache).
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import StoppingCriteriaList

from engines import registry
from engines.base import (
    ChatMessage,
    CosplayError,
    GenerationError,
    GenerationParams,
    GenerationStats,
)
from engines.hf_adapters import AdapterMixin
from engines.hf_gen import (
    POLL_S,
    GenerationRun,
    PrefixCache,
    TokenStreamer,
    Watch,
    decode_after,
    stream_texts,
)
from engines.hf_load import (
    MODEL_IGNORE,
    context_length_of,
    load_config,
    load_model,
    load_tokenizer,
    pick_placement,
    quiet_library_logs,
    resolve_source,
)
from engines.hf_prompt import HFPrompt
from engines.hf_samplers import sampling_chain
from engines.i18n import _
from engines.templates import TemplateSwitch
from engines.textstream import TextAssembler


class HFEngine(HFPrompt, AdapterMixin, TemplateSwitch):
    kind = "gpu"  # its entry in engines/registry.py
    adapter_format = registry.get(kind).adapter_format

    @classmethod
    def from_spec(cls, spec, progress=None) -> HFEngine:
        """`progress` is not called: transformers loads without a hook to report or stop."""
        return cls(
            spec.model,
            template=spec.template,
            load_8bit=spec.load_8bit,
            load_4bit=spec.load_4bit,
            trust_remote_code=spec.trust_remote_code,
            n_ctx=spec.n_ctx,
        )

    def __init__(
        self,
        model: str | Path,
        *,
        template: str | None = None,
        adapters: dict[str, str] | None = None,
        load_8bit: bool = False,
        load_4bit: bool = False,
        trust_remote_code: bool = False,
        n_ctx: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        allow_pickle_adapters: bool = False,
        cache_dir: str | Path | None = None,
    ):
        quiet_library_logs()
        ref = str(model)
        self.cache_dir = cache_dir
        self.path = resolve_source(
            ref, what="model", cache_dir=cache_dir, ignore_patterns=MODEL_IGNORE
        )
        local = Path(ref).expanduser().is_dir()
        self.model_name = self.path.name if local else ref
        self.placement = pick_placement(
            device=device, dtype=dtype, load_8bit=load_8bit, load_4bit=load_4bit
        )
        config = load_config(self.path, self.model_name, trust_remote_code)
        self.tokenizer = load_tokenizer(self.path, self.model_name, trust_remote_code)
        self.base_model = load_model(
            self.path, self.model_name, config, self.placement, trust_remote_code
        )
        self.model = (
            self.base_model
        )  # becomes a PeftModel wrapping base_model once an adapter loads
        self.context_length = context_length_of(config, n_ctx)
        self.last_stats: GenerationStats | None = None
        self.allow_pickle_adapters = allow_pickle_adapters
        self._lock = threading.RLock()
        self._prefix = PrefixCache()
        # The last prompt + reply and the last prompt, each with its ids, longest first.
        self._memory: list[tuple[str, list[int]]] = []

        tok = self.tokenizer
        self._bos_text = tok.bos_token or ""
        self._eos_text = tok.eos_token or ""
        probe = tok("a").input_ids
        self._add_bos = (
            tok.bos_token_id is not None and bool(probe) and probe[0] == tok.bos_token_id
        )
        self._init_template(
            template, getattr(tok, "chat_template", None), self.model_name, self._eos_text
        )

        self._adapters: dict[str, str] = {}  # our name -> PEFT's name
        self._adapter_sources: dict[str, str] = {}
        self.active_adapter: str | None = None
        self.default_adapter: str | None = None  # used when a persona names none
        for name, source in (adapters or {}).items():
            self.load_adapter(name, source)

    # --- generation --------------------------------------------------------------------

    def _adapter_context(self) -> contextlib.AbstractContextManager:
        if self.model is not self.base_model and self.active_adapter is None:
            return self.model.disable_adapter()
        return contextlib.nullcontext()

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: GenerationParams,
        cancel: threading.Event,
        *,
        prefill: str = "",
    ) -> Iterator[str]:
        """Stream the reply; beam search (num_beams > 1) cannot stream, so it yields the reply once.
        With `prefill` the prompt ends with it inside the assistant's turn (the ids sampled for
        it reused when it is the reply just written), and the new tokens are decoded after the
        prompt's last ones, so a word's leading space at the join is kept."""
        with self._lock:
            self._require_open()
            turn = self._plan(messages, params, prefill)
            cache, reused = (None, 0)
            if not turn.beams:  # beam search grows a cache to num_beams rows: it gets its own
                cache, reused = self._prefix.prepare(turn.ids, self.base_model.config)
            stats = GenerationStats(
                prompt_tokens=len(turn.ids),
                prompt_eval_tokens=len(turn.ids) - reused,
                seed=turn.seed,
            )
            self.last_stats = None
            halt = threading.Event()
            watch = Watch(cancel, halt)
            streamer = None
            if not turn.beams:
                streamer = TokenStreamer(
                    self.tokenizer, skip_prompt=True, timeout=POLL_S, skip_special_tokens=True
                )
                streamer.context = turn.context
            device = self.base_model.device
            kwargs = dict(
                input_ids=torch.tensor([turn.ids], device=device),
                attention_mask=torch.ones((1, len(turn.ids)), dtype=torch.long, device=device),
                generation_config=turn.config,
                stopping_criteria=StoppingCriteriaList([watch]),
                logits_processor=sampling_chain(params, self.tokenizer, turn.seed),
                streamer=streamer,
                past_key_values=cache,
            )
            run = GenerationRun(self.model, kwargs, turn.seed, self._adapter_context())
            assembler = TextAssembler(turn.stops)
            run.start()
            try:
                if streamer is not None:
                    for text in stream_texts(streamer, run, cancel):
                        piece = assembler.feed(text.encode("utf-8"))
                        if piece:
                            yield piece
                        if assembler.stopped:
                            halt.set()  # the rest of the reply would be cut anyway
                            break
                while run.is_alive():  # beams wait here, still answering cancel through `watch`
                    run.join(POLL_S)
                if turn.beams and run.output is not None and not cancel.is_set():
                    new = run.output[0, len(turn.ids) :].tolist()
                    reply = decode_after(self.tokenizer, turn.context, new)
                    piece = assembler.feed(reply.encode("utf-8"))
                    if piece:
                        yield piece
            finally:
                halt.set()
                run.join()
                tail = assembler.finish()
                self._finish(turn, stats, run, cache is not None, assembler, watch, cancel)
            if run.error is not None:
                raise self._generation_error(run.error)
            if tail:
                yield tail

    def _finish(self, turn, stats, run, cached, assembler, watch, cancel) -> None:
        """Stats, the prefix cache's ids, and the text → ids memory after one reply."""
        new: list[int] = []
        if run.output is not None:
            sequence = run.output[0].tolist()
            new = sequence[len(turn.ids) :]
            if cached:
                self._prefix.remember(sequence)
        elif cached:
            self._prefix.clear()  # generate failed: what the cache holds is unknown
        eog = bool(new) and new[-1] in turn.eos_ids
        reply_ids = new[:-1] if eog else new
        # Remember the sampled ids for the text shown, but only if they spell exactly that text
        # (not after a stop string, a cancel ahead of the stream, or a hidden special token).
        self._memory = [(turn.prompt, turn.ids)]
        if reply_ids and decode_after(self.tokenizer, turn.context, reply_ids, False) == (
            assembler.text
        ):
            self._memory.insert(0, (turn.prompt + assembler.text, turn.ids + reply_ids))
        stats.completion_tokens = len(reply_ids)
        if watch.first_token_at is not None:
            stats.ttft_s = watch.first_token_at - turn.started
        stats.total_s = time.perf_counter() - turn.started
        if run.error is not None:
            stats.finish_reason = "error"
        elif cancel.is_set():
            stats.finish_reason = "cancelled"
        elif not eog and not assembler.stopped and len(new) >= turn.config.max_new_tokens:
            stats.finish_reason = "length"
        self.last_stats = stats

    def _generation_error(self, exc: BaseException) -> CosplayError:
        if isinstance(exc, CosplayError):
            return exc
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
            return GenerationError(
                _(
                    "The GPU ran out of memory while generating; lower max tokens or max history rounds, or load the model with --load-4bit."
                )
            )
        return GenerationError(
            _(
                "Generation failed inside transformers ({error}: {problem}).",
                error=type(exc).__name__,
                problem=exc,
            )
        )

    def next_token_logits(self, messages: list[ChatMessage]) -> torch.Tensor:
        """Logits for the token after the prompt, with the active adapter (or none): for checks."""
        with self._lock, torch.inference_mode(), self._adapter_context():
            self._require_open()
            ids = torch.tensor([self.encode(self.render(messages))], device=self.base_model.device)
            return self.model(input_ids=ids).logits[0, -1].float().cpu()

    # --- the rest of the protocol --------------------------------------------------------

    def describe(self) -> dict[str, str]:
        return {
            "engine": "transformers",
            "device": self.placement.device,
            "dtype": self.placement.dtype_name,
            "quantization": self.placement.quantization,
            "adapter": self.active_adapter or "none",
        }

    def _require_open(self) -> None:
        if self.base_model is None:
            raise CosplayError(
                _("The model {model} was closed; load it again.", model=self.model_name)
            )

    def close(self) -> None:
        with self._lock:
            if getattr(self, "base_model", None) is None:
                return
            # Dropping our references frees the weights and the KV cache at once: nothing of
            # theirs is in a reference cycle (tests/test_startup.py). The cycle collector, half
            # a second with torch loaded, runs only if something else still holds them.
            held = [weakref.ref(self.model), weakref.ref(self.base_model)]
            if self._prefix.cache is not None:
                held.append(weakref.ref(self._prefix.cache))
            self._prefix.clear()
            self._memory = []
            self.model = None
            self.base_model = None
            self._adapters.clear()
            self._adapter_sources.clear()
            self.active_adapter = None
            if any(ref() is not None for ref in held):
                gc.collect()
            if torch.cuda.is_initialized():  # hand the freed blocks back to the driver
                torch.cuda.empty_cache()
