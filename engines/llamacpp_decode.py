"""The CPU engine's decode loop over a llama-cpp-python `Llama` (`llm`): what its KV cache
reuses, shifting that cache, evaluating a prompt and sampling a reply a token at a time, and
stopping a long prompt evaluation when the reply is cancelled.

Functions of the `Llama` the engine owns (engines/llamacpp.py keeps the state: the lock, the
token cache, the cancel event); llama_cpp is imported only when one is called.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from engines.errors import GenerationError
from engines.i18n import _

if TYPE_CHECKING:
    from engines.base import GenerationParams


def reusable_prefix(llm, tokens: list[int]) -> int:
    """How many prompt tokens llama.cpp will take from its KV cache (mirrors Llama.generate)."""
    common = _common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
    return common - 1 if common == len(tokens) and common > 0 else common


def shift(llm, keep: int, drop: int) -> bool:
    """Remove `drop` cached tokens after the first `keep` and move the rest down, as
    llama-server's context shift does; False where this model's memory cannot shift."""
    import llama_cpp

    evaluated = llm.n_tokens
    if keep + drop > evaluated:
        return False
    memory = llama_cpp.llama_get_memory(llm.ctx)
    if not memory or not llama_cpp.llama_memory_can_shift(memory):
        return False
    if not llama_cpp.llama_memory_seq_rm(memory, 0, keep, keep + drop):
        return False
    llama_cpp.llama_memory_seq_add(memory, 0, keep + drop, -1, -drop)
    llm.input_ids[keep : evaluated - drop] = llm.input_ids[keep + drop : evaluated].copy()
    llm.n_tokens = evaluated - drop
    llm._requires_eval = True
    return True


def generate(
    llm, tokens: list[int], params: GenerationParams, seed: int, context_length: int
) -> Iterator[int]:
    """The reply's tokens: the prompt evaluated but its last token, that token alone, then
    one token sampled and evaluated at a time, as `Llama.generate` does, through our own
    sampler chain (engines/llamacpp_sampling.py: DRY, XTC, top-nσ, dynamic temperature,
    mirostat). The last token sampled is never evaluated: the KV cache holds what
    `Llama.generate` would leave."""
    from engines.llamacpp_sampling import build_chain

    chain = build_chain(
        params, vocab=llm._model.vocab, n_vocab=llm.n_vocab(), seed=seed,
        context_length=context_length,
    )  # fmt: skip
    try:
        chain.remember_prompt(tokens)
        evaluate_all_but_last(llm, tokens)
        llm.eval(tokens[-1:])
        while True:
            token = chain.sample(llm.ctx)
            yield token
            llm.eval([token])
    finally:
        chain.close()


def evaluate_all_but_last(llm, tokens: list[int]) -> None:
    """Evaluate the prompt up to its last token, which `generate` then evaluates alone. The
    first reply token's logits then never depend on how much of the prompt the cache held
    (llama.cpp's batched and one-token kernels round differently), so a regenerate with the
    same seed writes the same text."""
    common = _common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens[:-1])
    if common == len(tokens) - 1 and common == llm.n_tokens:
        return
    llm._ctx.kv_cache_seq_rm(-1, common, -1)
    llm.n_tokens = common
    if common < len(tokens) - 1:
        llm.eval(tokens[common:-1])


def set_abort(llm, callback) -> None:
    """llama.cpp asks `callback` between graph nodes whether to stop (None: never asks). On
    only while the prompt is evaluated (seconds for a long one), where the per-token cancel
    check cannot reach."""
    import llama_cpp

    if callback is None:
        callback = ctypes.cast(None, llama_cpp.ggml_abort_callback)
    llama_cpp.llama_set_abort_callback(llm.ctx, callback, None)


def tokens_until_cancelled(generator: Iterator[int], cancel: threading.Event) -> Iterator[int]:
    """The generator's tokens; an evaluation aborted by the cancel event just ends them, one
    that fails otherwise is a GenerationError."""
    try:
        yield from generator
    except RuntimeError as exc:  # llama_decode returned non-zero; 2: aborted
        if not str(exc).startswith("llama_decode returned"):
            raise  # not llama.cpp's: a bug of ours, shown as one
        if not cancel.is_set():
            raise GenerationError(
                _(
                    "llama.cpp failed while writing the reply ({problem}); retry, and if it fails again load the model with a smaller --n-ctx.",
                    problem=exc,
                )
            ) from exc


def _common_prefix(a: list[int], b: list[int]) -> int:
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    return common
