"""CPU engine: a GGUF model through llama-cpp-python.

We render the prompt ourselves (the GGUF's own template or a named one) and
generate from tokens. To keep llama.cpp's KV cache hitting across turns, the
token ids of the last prompt and reply are remembered (`llamacpp_cache`): a
prompt that continues them evaluates only its new text, one whose oldest rounds
were dropped shifts the cache instead of re-reading it, and a session's cache
can be saved to a file and restored after a restart (`llamacpp_state`). The decode
loop (evaluating the prompt, sampling a token at a time through `llamacpp_sampling`'s
chain, the context shift, stopping a long evaluation on cancel) is `llamacpp_decode`;
GGUF LoRA adapters are `llamacpp_adapters`.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from engines import llamacpp_cache, llamacpp_setup, registry
from engines import llamacpp_decode as decode
from engines.errors import ContextOverflowError, CosplayError, LoadCancelled, ModelLoadError
from engines.ggufinfo import read_gguf_info
from engines.i18n import _
from engines.llamacpp_adapters import LoraAdapters
from engines.llamacpp_cache import Plan, TokenCache, spelled_reply
from engines.llamacpp_setup import LoadProgress
from engines.llamacpp_state import KVStateFiles
from engines.templates import TemplateSwitch
from engines.textstream import TextAssembler

if TYPE_CHECKING:
    from engines.base import ChatMessage, GenerationParams, GenerationStats

DEFAULT_N_CTX = 4096

log = logging.getLogger("cosplay.llama_cpp")


def threads_for(requested: int | None) -> int:
    """The threads for decoding and for prompt evaluation (n_threads_batch) alike, as
    llama.cpp's own CLI does (-tb follows -t): --threads, else half the CPUs (at least one).

    Half, not all: ggml's threads spin at every barrier of a batch, so one descheduled thread
    stalls the others, and the TUI needs a CPU to draw the reply. Measured on the real SmolLM2
    (Q4_1, a 128-token prompt, both settings alternated in one process, 2 CPUs shared with
    other work; the medians of four such runs): prompt evaluation ran at 113-171 tokens/s with
    1 thread, 18-61 with 2. More threads than CPUs only slow llama.cpp down (and 100,000 crash
    libgomp)."""
    cores = os.cpu_count() or 2
    return min(requested or max(1, cores // 2), cores)


class LlamaCppEngine(LoraAdapters, KVStateFiles, TemplateSwitch):
    kind = "cpu"  # its entry in engines/registry.py
    adapter_format = registry.get(kind).adapter_format

    @classmethod
    def from_spec(cls, spec, progress: LoadProgress | None = None) -> LlamaCppEngine:
        return cls(
            spec.model,
            n_ctx=spec.n_ctx,
            n_threads=spec.n_threads,
            n_gpu_layers=spec.n_gpu_layers,
            template=spec.template,
            progress=progress,
        )

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        seed: int | None = None,
        template: str | None = None,
        adapters: dict[str, str] | None = None,
        progress: LoadProgress | None = None,
    ):
        """`progress(fraction)` is called as the weights load; a False from it stops the load
        (LoadCancelled). Ctrl+C stops it too, at once (KeyboardInterrupt)."""
        path = Path(model_path).expanduser()
        info = read_gguf_info(path)
        self.model_path = path
        self.model_name = path.name
        trained_ctx = info.context_length or DEFAULT_N_CTX
        if n_ctx is not None and n_ctx < 16:
            raise ModelLoadError(
                _("--n-ctx {n_ctx} is too small; give at least 16 tokens.", n_ctx=n_ctx)
            )
        if n_threads is not None and n_threads < 1:
            raise ModelLoadError(
                _("--threads {n_threads} must be at least 1.", n_threads=n_threads)
            )
        self.context_length = n_ctx or min(trained_ctx, DEFAULT_N_CTX)
        self.n_threads = threads_for(n_threads)
        self.n_gpu_layers = n_gpu_layers
        self.last_stats: GenerationStats | None = None
        self._lock = threading.RLock()

        llamacpp_setup.prepare()  # AMX off, llama.cpp's log to ours: before the first load
        from llama_cpp import Llama  # heavy: imported only when this engine is chosen

        stopped = False

        def report(fraction: float) -> bool:
            nonlocal stopped
            stopped = progress is not None and not progress(fraction)
            return not stopped

        try:
            with llamacpp_setup.load_options(report):  # (always: Ctrl+C stops a load at once)
                self._llm = Llama(
                    model_path=str(path),
                    n_ctx=self.context_length,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,  # prompt evaluation too (threads_for)
                    n_gpu_layers=n_gpu_layers,
                    seed=secrets.randbits(32) if seed is None else seed,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            if stopped:
                raise LoadCancelled(_("Loading {model} was stopped.", model=path.name)) from None
            if "context" in str(exc):  # the model loaded; its KV cache did not fit in memory
                raise ModelLoadError(
                    _(
                        "llama.cpp could not make a {context_length}-token context for {path} ({problem}); lower --n-ctx (the model was trained on {trained_ctx}).",
                        context_length=self.context_length,
                        path=path,
                        problem=exc,
                        trained_ctx=trained_ctx,
                    )
                ) from exc
            raise ModelLoadError(
                _(
                    "llama.cpp could not load {path} ({problem}); the file may be truncated, corrupt or of an architecture this llama.cpp does not know: download it again.",
                    path=path,
                    problem=exc,
                )
            ) from exc

        vocab = self._llm._model
        self._eos_text = self._piece(vocab.token_eos())
        self._bos_text = self._piece(vocab.token_bos()) if vocab.token_bos() >= 0 else ""
        self._add_bos = bool(vocab.add_bos_token())
        self._init_template(template, info.chat_template, path.name, self._eos_text)
        self.architecture = info.architecture

        self._cache = TokenCache()  # what the KV cache holds, as text and token ids
        self._cancel = threading.Event()  # the running reply's cancel event
        import llama_cpp

        self._abort_callback = llama_cpp.ggml_abort_callback(lambda _: self._cancel.is_set())
        self._state_file: Path | None = None  # a saved KV cache to restore when it helps
        self._adapters: dict[str, object] = {}  # name -> llama_adapter_lora_p
        self._adapter_sources: dict[str, str] = {}  # name -> the file it was loaded from
        self.active_adapter: str | None = None
        self.default_adapter: str | None = None  # used when a persona names none
        for name, adapter_path in (adapters or {}).items():
            self.load_adapter(name, adapter_path)

    # --- text <-> tokens ------------------------------------------------------------

    def _piece(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _tokenize(self, text: str, add_bos: bool) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def render(self, messages: list[ChatMessage], prefill: str = "") -> str:
        # A template that writes the BOS token itself must not get a second one.
        bos = self._bos_text if self._add_bos else ""
        return self.template.render(
            messages,
            bos_token=bos,
            eos_token=self._eos_text,
            char_name=self.speaker,
            prefill=prefill,
        )

    def _fresh_tokens(self, prompt: str) -> list[int]:
        """The whole prompt tokenized; BOS added unless the template wrote it."""
        add_bos = self._add_bos and not (self._bos_text and prompt.startswith(self._bos_text))
        return self._tokenize(prompt, add_bos=add_bos)

    def _plan(self, prompt: str) -> Plan:
        return llamacpp_cache.plan(
            self._cache,
            prompt,
            tokenize=lambda data: self._llm.tokenize(data, add_bos=False, special=True),
            fresh=self._fresh_tokens,
            piece=lambda token: self._llm.detokenize([token], special=True),
            leading_bos=bool(self._cache.tokens) and self._starts_with_added_bos(),
        )

    def _starts_with_added_bos(self) -> bool:
        """Whether the cached ids start with a BOS the cached text does not spell."""
        bos = self._llm._model.token_bos()
        return self._cache.tokens[0] == bos and not (
            self._bos_text and self._cache.text.startswith(self._bos_text)
        )

    def _prompt_tokens(self, prompt: str) -> list[int]:
        return self._plan(prompt).tokens

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        with self._lock:
            return len(self._prompt_tokens(self.render(messages)))

    # --- generation --------------------------------------------------------------------

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: GenerationParams,
        cancel: threading.Event,
        *,
        prefill: str = "",
    ) -> Iterator[str]:
        """With `prefill` the prompt ends with it, inside the assistant's turn. Continuing the
        reply just written, that prompt is the text the cache holds: its sampled token ids are
        reused as they are (no re-tokenizing at the join) and only the last of them, sampled
        but never evaluated, is evaluated."""
        if params.num_beams > 1:
            raise CosplayError(
                _("Beam search runs on the GPU engine only; set beams to 1 for a GGUF model.")
            )
        import llama_cpp

        with self._lock:
            started = time.perf_counter()
            prompt = self.render(messages, prefill)
            self._restore_if_better(prompt)
            plan = self._plan(prompt)
            if plan.drop and not decode.shift(self._llm, plan.keep, plan.drop):
                plan = Plan(self._fresh_tokens(prompt))
            tokens = plan.tokens
            room = self.context_length - len(tokens)
            if room <= 0:
                raise ContextOverflowError(
                    _(
                        "The prompt takes {count} tokens but the context holds {context_length}; lower max history rounds or load with a larger --n-ctx.",
                        count=len(tokens),
                        context_length=self.context_length,
                    )
                )
            max_new = min(params.max_new_tokens, room)
            seed = secrets.randbits(32) if params.seed is None else params.seed
            self._llm.set_seed(seed)
            from engines.base import GenerationStats  # (pydantic: not needed to load a model)

            stats = GenerationStats(
                prompt_tokens=len(tokens),
                prompt_eval_tokens=len(tokens) - decode.reusable_prefix(self._llm, tokens),
                seed=seed,
            )
            self.last_stats = None
            assembler = TextAssembler(list(params.stop) + self.template.stop)
            generated: list[int] = []
            reply_data, ends = bytearray(), [0]  # the tokens' bytes; where the first n end
            eog = False
            self._cancel = cancel  # the abort callback stops a long prompt evaluation too
            generator = decode.generate(self._llm, tokens, params, seed, self.context_length)
            decode.set_abort(self._llm, self._abort_callback)  # while the prompt is evaluated
            try:
                for token in decode.tokens_until_cancelled(generator, cancel):
                    if not generated:
                        stats.ttft_s = time.perf_counter() - started
                        decode.set_abort(self._llm, None)  # per-token checks are enough now
                    if llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token):
                        eog = True
                        break
                    generated.append(token)
                    data = self._llm.detokenize([token], special=False)
                    reply_data += data
                    ends.append(len(reply_data))
                    piece = assembler.feed(data)
                    if piece:
                        yield piece
                    if assembler.stopped or cancel.is_set() or len(generated) >= max_new:
                        break
            finally:
                decode.set_abort(self._llm, None)
                generator.close()
                tail = assembler.finish()
                if cancel.is_set():
                    stats.finish_reason = "cancelled"
                elif not eog and not assembler.stopped and len(generated) >= max_new:
                    stats.finish_reason = "length"
                stats.completion_tokens = len(generated)
                stats.total_s = time.perf_counter() - started
                # The reply's tokens stay in the cache as far as they spell the text shown; none
                # after a stop string (the text shown is shorter than what was sampled).
                if assembler.stopped:
                    self._cache.set(prompt, tokens)
                else:
                    text, count = spelled_reply(bytes(reply_data), ends, assembler.text)
                    self._cache.set(prompt + text, tokens + generated[:count])
                self.last_stats = stats
            if tail:
                yield tail

    def describe(self) -> dict[str, str]:
        facts = {"engine": "llama.cpp", "device": "cpu", "threads": str(self.n_threads)}
        if self.n_gpu_layers:  # what --gpu-layers did: offloaded, or nothing (a CPU-only build)
            import llama_cpp

            if not llama_cpp.llama_supports_gpu_offload():
                facts["gpu_layers"] = "GPU layers ignored (llama.cpp built without GPU)"
            else:
                count = "all" if self.n_gpu_layers < 0 else self.n_gpu_layers
                facts["gpu_layers"] = f"{count} layers on GPU"
        if self.active_adapter:
            facts["adapter"] = self.active_adapter
        return facts

    def close(self) -> None:
        with self._lock:
            llm = getattr(self, "_llm", None)
            if llm is not None:
                import llama_cpp

                for handle in self._adapters.values():
                    llama_cpp.llama_adapter_lora_free(handle)
                self._adapters.clear()
                self._adapter_sources.clear()
                llm.close()
                self._llm = None
