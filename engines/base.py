"""The engine protocol every backend implements, its parameters and (from engines/errors.py)
its errors.

Nothing here imports a heavy library: the TUI and the session layer import this
module freely, and an engine module is imported only when that engine is chosen.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict, runtime_checkable

from engines.checked import Checked, bounded
from engines.errors import (  # noqa: F401  re-exported: the errors live in engines/errors.py
    AdapterError,
    ContextOverflowError,
    CosplayError,
    GenerationError,
    ModelLoadError,
    TemplateError,
)
from engines.i18n import _


class ChatMessage(TypedDict, total=False):
    """One prompt message: role is system, user or assistant; name is the speaker."""

    role: str
    content: str
    name: str


# llama.cpp's default DRY sequence breakers: a repeat stops at a new line, a speaker's colon,
# a quote and an asterisk (roleplay's actions), so names and formatting are never penalized.
DRY_SEQUENCE_BREAKERS = ("\n", ":", '"', "*")


def _breakers_are_text(breakers: list[str]) -> None:
    if any(not breaker for breaker in breakers):
        raise ValueError(_("a DRY sequence breaker cannot be empty"))
    if any(len(breaker) > 40 for breaker in breakers):  # llama.cpp cuts longer ones
        raise ValueError(_("a DRY sequence breaker is at most 40 characters"))


@dataclass(init=False)
class GenerationParams(Checked):
    """Sampling settings for one reply. Unknown fields are refused, not ignored; every value
    is checked when set (engines/checked.py): a bad one raises InvalidValue."""

    temperature: float = bounded(0.8, ge=0.0, le=5.0)
    top_p: float = bounded(0.95, gt=0.0, le=1.0)
    top_k: int = bounded(40, ge=0)
    min_p: float = bounded(0.05, ge=0.0, le=1.0)
    typical_p: float = bounded(1.0, gt=0.0, le=1.0)
    repetition_penalty: float = bounded(1.1, gt=0.0, le=5.0)
    no_repeat_ngram_size: int = bounded(0, ge=0)
    max_new_tokens: int = bounded(512, ge=1, le=131072)
    seed: int | None = bounded(None, ge=0, lt=2**32)
    stop: list[str] = bounded(list)
    do_sample: bool = True
    num_beams: int = bounded(1, ge=1, le=16)
    # The samplers below have llama.cpp's (and SillyTavern's) names, and defaults that leave
    # them off, so a reply saved before they existed reads back as the same settings.
    # DRY ("don't repeat yourself"): a token that would extend a repeat of the context longer
    # than dry_allowed_length loses multiplier * base ** (length - allowed) from its logit;
    # a repeat never runs across a sequence breaker.
    dry_multiplier: float = bounded(0.0, ge=0.0, le=10.0)  # 0 = off
    dry_base: float = bounded(1.75, ge=1.0, le=10.0)
    dry_allowed_length: int = bounded(2, ge=1, le=1000)
    dry_penalty_last_n: int = bounded(-1, ge=-1)  # tokens looked back at: -1 = all, 0 = off
    dry_sequence_breakers: list[str] = bounded(
        lambda: list(DRY_SEQUENCE_BREAKERS), max_length=64, check=_breakers_are_text
    )
    # XTC ("exclude top choices"): with probability xtc_probability, every token at least
    # xtc_threshold likely is removed but the least likely of them.
    xtc_threshold: float = bounded(0.1, ge=0.0, le=1.0)
    xtc_probability: float = bounded(0.0, ge=0.0, le=1.0)  # 0 = off
    # Dynamic temperature: from temperature - range (a sure model) to temperature + range
    # (an unsure one), by the normalized entropy of the candidates ** exponent.
    dynatemp_range: float = bounded(0.0, ge=0.0, le=5.0)  # 0 = off
    dynatemp_exponent: float = bounded(1.0, gt=0.0, le=10.0)
    # Top-nσ: keeps the tokens whose logit is within n standard deviations of the highest.
    top_n_sigma: float = bounded(-1.0, ge=-1.0, le=100.0)  # <= 0 = off
    # Mirostat (the CPU engine and llama-server): 1 or 2 targets a surprise of tau, learning
    # at rate eta; it replaces top-k, typical, top-p, min-p and XTC.
    mirostat_mode: int = bounded(0, ge=0, le=2)  # 0 = off
    mirostat_tau: float = bounded(5.0, ge=0.0, le=20.0)
    mirostat_eta: float = bounded(0.1, ge=0.0, le=1.0)

    @property
    def dry_enabled(self) -> bool:
        """DRY is on: a multiplier above 0 and a range that is not 0."""
        return self.dry_multiplier > 0 and self.dry_penalty_last_n != 0

    def uses_new_samplers(self) -> bool:
        """Whether DRY, XTC, dynamic temperature, top-nσ or mirostat is on."""
        return bool(
            self.dry_enabled
            or self.xtc_probability > 0
            or self.dynatemp_range > 0
            or self.top_n_sigma > 0
            or self.mirostat_mode
        )


@dataclass
class GenerationStats:
    """What one reply cost: stored with the reply so it can be reproduced and compared."""

    prompt_tokens: int = 0
    prompt_eval_tokens: int = 0  # prompt tokens actually evaluated (the rest: the KV cache)
    completion_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    finish_reason: Literal["stop", "length", "cancelled", "error"] = "stop"
    seed: int | None = None

    @property
    def tokens_per_s(self) -> float:
        decode_s = self.total_s - self.ttft_s
        if self.completion_tokens <= 1 or decode_s <= 0:
            return 0.0
        return (self.completion_tokens - 1) / decode_s

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@runtime_checkable
class Engine(Protocol):
    """A loaded model that turns chat messages into a stream of text pieces."""

    model_name: str  # what the user loaded: a file name, a directory or a repo id
    template_name: str  # the chat template in use
    context_length: int  # tokens the context window holds
    last_stats: GenerationStats | None  # set when a stream_chat generator finishes
    kind: str  # its entry in engines/registry.py ("cpu", "gpu", "remote"; the demo: "demo")
    adapter_format: str | None  # what load_adapter takes: "gguf", "peft", "name" (None: any)
    active_adapter: str | None  # the adapter in use, None for the base model
    default_adapter: str | None  # the adapter used when a persona names none (the first --adapter)

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: GenerationParams,
        cancel: threading.Event,
        *,
        prefill: str = "",
    ) -> Iterator[str]:
        """Yield the reply piece by piece; stop at the next token once `cancel` is set.

        `prefill`: the start of the reply, already written (continuing a reply): the prompt
        then ends inside the assistant's turn right after it, and the pieces continue it
        (not repeating it). An engine that cannot do that raises a CosplayError."""
        ...

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Tokens of the prompt these messages render to, generation prompt included."""
        ...

    def load_adapter(self, name: str, path: str) -> None:
        """Load a LoRA adapter next to the base model (never reloading it) under `name`."""
        ...

    @property
    def adapter_sources(self) -> dict[str, str]:
        """Each loaded adapter's name and where it was loaded from."""
        ...

    def set_adapter(self, name: str | None) -> None:
        """Activate a loaded LoRA adapter by name, or none for the base model."""
        ...

    def set_template(self, name: str | None, *, speaker: str = "") -> None:
        """Render prompts with the named chat template (None: the load-time choice), writing
        `speaker` as the replying character where the template names it."""
        ...

    def describe(self) -> dict[str, str]:
        """Short facts for the status line: engine, device, dtype, adapter…"""
        ...

    def close(self) -> None:
        """Free the model."""
        ...
