"""CPU engine: a GGUF model through llama-cpp-python.

We render the prompt ourselves (the GGUF's own template or a named one) and
generate from tokens. To keep llama.cpp's KV cache hitting across turns, the
token ids of the last prompt and reply are remembered: when the next prompt
text starts with the text they spell, those ids are reused verbatim and only
the new text is tokenized — re-tokenizing a sampled reply would often split it
differently and break the prefix match inside it.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from engines.base import (
    AdapterError,
    ChatMessage,
    ContextOverflowError,
    CosplayError,
    GenerationParams,
    GenerationStats,
    ModelLoadError,
)
from engines.ggufinfo import read_gguf_info
from engines.templates import TemplateSwitch
from engines.textstream import TextAssembler

DEFAULT_N_CTX = 4096


class LlamaCppEngine(TemplateSwitch):
    adapter_format = "gguf"  # the LoRA form load_adapter takes

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
    ):
        path = Path(model_path).expanduser()
        info = read_gguf_info(path)
        self.model_path = path
        self.model_name = path.name
        trained_ctx = info.context_length or DEFAULT_N_CTX
        self.context_length = n_ctx or min(trained_ctx, DEFAULT_N_CTX)
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self.last_stats: GenerationStats | None = None
        self._lock = threading.RLock()

        from llama_cpp import Llama  # heavy: imported only when this engine is chosen

        try:
            self._llm = Llama(
                model_path=str(path),
                n_ctx=self.context_length,
                n_threads=self.n_threads,
                n_gpu_layers=n_gpu_layers,
                seed=secrets.randbits(32) if seed is None else seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {path} ({exc}); the file may be truncated, corrupt or "
                "of an architecture this llama.cpp does not know: download it again."
            ) from exc

        vocab = self._llm._model
        self._eos_text = self._piece(vocab.token_eos())
        self._bos_text = self._piece(vocab.token_bos()) if vocab.token_bos() >= 0 else ""
        self._add_bos = bool(vocab.add_bos_token())
        self._init_template(template, info.chat_template, path.name, self._eos_text)
        self.architecture = info.architecture

        self._cached_text = ""  # the text that _cached_tokens spell
        self._cached_tokens: list[int] = []
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

    def render(self, messages: list[ChatMessage]) -> str:
        # A template that writes the BOS token itself must not get a second one.
        bos = self._bos_text if self._add_bos else ""
        return self.template.render(
            messages, bos_token=bos, eos_token=self._eos_text, char_name=self.speaker
        )

    def _prompt_tokens(self, prompt: str) -> list[int]:
        add_bos = self._add_bos and not (self._bos_text and prompt.startswith(self._bos_text))
        if self._cached_text and prompt.startswith(self._cached_text):
            rest = prompt[len(self._cached_text) :]
            return self._cached_tokens + (self._tokenize(rest, add_bos=False) if rest else [])
        return self._tokenize(prompt, add_bos=add_bos)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        with self._lock:
            return len(self._prompt_tokens(self.render(messages)))

    # --- generation --------------------------------------------------------------------

    def _reusable_prefix(self, tokens: list[int]) -> int:
        """How many prompt tokens llama.cpp will take from its KV cache (mirrors Llama.generate)."""
        cached = self._llm.input_ids[: self._llm.n_tokens].tolist()
        common = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            common += 1
        return common - 1 if common == len(tokens) and common > 0 else common

    def stream_chat(
        self, messages: list[ChatMessage], params: GenerationParams, cancel: threading.Event
    ) -> Iterator[str]:
        if params.num_beams > 1:
            raise CosplayError(
                "Beam search runs on the GPU engine only; set beams to 1 for a GGUF model."
            )
        import llama_cpp

        with self._lock:
            started = time.perf_counter()
            prompt = self.render(messages)
            tokens = self._prompt_tokens(prompt)
            room = self.context_length - len(tokens)
            if room <= 0:
                raise ContextOverflowError(
                    f"The prompt takes {len(tokens)} tokens but the context holds "
                    f"{self.context_length}; lower max history rounds or load with a larger --n-ctx."
                )
            max_new = min(params.max_new_tokens, room)
            seed = secrets.randbits(32) if params.seed is None else params.seed
            self._llm.set_seed(seed)
            stats = GenerationStats(
                prompt_tokens=len(tokens),
                prompt_eval_tokens=len(tokens) - self._reusable_prefix(tokens),
                seed=seed,
            )
            self.last_stats = None
            assembler = TextAssembler(list(params.stop) + self.template.stop)
            generated: list[int] = []
            eog = False
            generator = self._llm.generate(
                tokens,
                temp=params.temperature if params.do_sample else 0.0,
                top_k=params.top_k,
                top_p=params.top_p,
                min_p=params.min_p,
                typical_p=params.typical_p,
                repeat_penalty=params.repetition_penalty,
            )
            try:
                for token in generator:
                    if not generated:
                        stats.ttft_s = time.perf_counter() - started
                    if llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token):
                        eog = True
                        break
                    generated.append(token)
                    piece = assembler.feed(self._llm.detokenize([token], special=False))
                    if piece:
                        yield piece
                    if assembler.stopped or cancel.is_set() or len(generated) >= max_new:
                        break
            finally:
                generator.close()
                tail = assembler.finish()
                if cancel.is_set():
                    stats.finish_reason = "cancelled"
                elif not eog and not assembler.stopped and len(generated) >= max_new:
                    stats.finish_reason = "length"
                stats.completion_tokens = len(generated)
                stats.total_s = time.perf_counter() - started
                if assembler.stopped:
                    # The reply shown is shorter than what was sampled: only the prompt is reusable.
                    self._cached_text, self._cached_tokens = prompt, tokens
                else:
                    self._cached_text = prompt + assembler.text  # the tail is in .text too
                    self._cached_tokens = tokens + generated
                self.last_stats = stats
            if tail:
                yield tail

    # --- adapters ----------------------------------------------------------------------

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load a GGUF LoRA adapter next to the base model (no reload); activate it with set_adapter."""
        import llama_cpp

        path = Path(path).expanduser()
        if not path.is_file():
            raise AdapterError(f"The LoRA adapter {path} does not exist; check the path.")
        with self._lock:
            if name in self._adapters:
                if self._adapter_sources[name] == str(path):
                    return
                raise AdapterError(
                    f"An adapter named {name!r} is already loaded from "
                    f"{self._adapter_sources[name]}; give this one another name."
                )
            handle = llama_cpp.llama_adapter_lora_init(self._llm.model, str(path).encode())
            if not handle:
                raise AdapterError(
                    f"llama.cpp refused the adapter {path}: it must be a GGUF LoRA made for this "
                    f"base model ({self.architecture}); export it with `cosplay export-gguf`."
                )
            self._adapters[name] = handle
            self._adapter_sources[name] = str(path)

    @property
    def adapter_sources(self) -> dict[str, str]:
        """Each loaded adapter's name and the file it was loaded from."""
        return dict(self._adapter_sources)

    def set_adapter(self, name: str | None) -> None:
        import llama_cpp

        if name is not None and name not in self._adapters:
            raise AdapterError(f"No adapter named {name!r} is loaded; load it first.")
        if name == self.active_adapter:
            return
        with self._lock:
            if name is None:
                llama_cpp.llama_set_adapters_lora(self._llm.ctx, None, 0, None)
            else:
                handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapters[name])
                scales = (ctypes.c_float * 1)(1.0)
                llama_cpp.llama_set_adapters_lora(self._llm.ctx, handles, 1, scales)
            # The KV cache was computed under the old adapter: start over.
            self._llm.reset()
            self._cached_text, self._cached_tokens = "", []
            self.active_adapter = name

    def describe(self) -> dict[str, str]:
        facts = {"engine": "llama.cpp", "device": "cpu", "threads": str(self.n_threads)}
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
