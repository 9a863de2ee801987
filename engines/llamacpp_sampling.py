"""The CPU engine's sampler chain, built from llama.cpp's own samplers in llama.cpp's order.

llama-cpp-python's `Llama.generate` builds a fixed chain (penalties, top-k, typical, top-p,
min-p, temperature, dist) with no DRY, XTC, dynamic temperature or top-nσ. This builds the chain
common/sampling.cpp builds for llama-cli and llama-server:

    penalties → DRY → top-nσ → top-k → typical → top-p → min-p → XTC → temperature → dist

Mirostat replaces everything after DRY with temperature → mirostat; sampling off (greedy) keeps
penalties and DRY, then takes the most likely token. With the new samplers off the chain is the
one `Llama.generate` builds, sampler for sampler, so a seed gives the same reply as before.

The repetition penalty sees only the reply's tokens (as `Llama.generate` has it), DRY the prompt
too, as far back as dry_penalty_last_n (-1: the whole context): repeats of earlier turns are what
it is for.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import llama_cpp

from engines.errors import GenerationError
from engines.i18n import _

if TYPE_CHECKING:
    from engines.base import GenerationParams

REPEAT_LAST_N = 64  # the repetition penalty's window: Llama's last_n_tokens_size default
MIROSTAT_M = 100  # mirostat 1's m, as llama.cpp and llama-cpp-python fix it


class SamplerChain:
    """A llama.cpp sampler chain that owns its samplers; `sample` picks the next token from the
    context's last logits and records it (penalties and DRY remember what was picked)."""

    def __init__(self) -> None:
        self._chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        self.names: list[str] = []  # the samplers in order, for tests and the curious
        self._dry = None  # the DRY sampler (owned by the chain), fed the prompt's tokens
        self._dry_window = 0  # how many of the last tokens DRY looks back at

    def add(self, name: str, sampler, *, dry_window: int = 0) -> None:
        if not sampler:
            raise GenerationError(
                _(
                    "llama.cpp could not make the {name} sampler from these settings; change that sampler's settings in the generation parameters or turn it off.",
                    name=name,
                )
            )
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)
        self.names.append(name)
        if dry_window:
            self._dry, self._dry_window = sampler, dry_window

    def remember_prompt(self, tokens: list[int]) -> None:
        """Feed the prompt's tokens to DRY, which looks for repeats across the whole context."""
        if self._dry is not None:
            for token in tokens[-self._dry_window :]:
                llama_cpp.llama_sampler_accept(self._dry, token)

    def sample(self, ctx, idx: int = -1) -> int:
        return llama_cpp.llama_sampler_sample(self._chain, ctx, idx)

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)  # frees the samplers it owns too
            self._chain, self._dry = None, None

    def __del__(self) -> None:
        if llama_cpp is not None:  # (gone at interpreter exit)
            self.close()


def _dry_window(params: GenerationParams, context_length: int) -> int:
    """DRY's window in tokens. -1 means the whole context: llama.cpp's own -1 reads the
    training context, which this llama.cpp's init no longer takes, so we give it in tokens."""
    if params.dry_penalty_last_n == -1:
        return context_length
    return min(params.dry_penalty_last_n, context_length)


def _dry(vocab, params: GenerationParams, last_n: int):
    breakers = [breaker.encode("utf-8") for breaker in params.dry_sequence_breakers]
    array = (ctypes.c_char_p * len(breakers))(*breakers)
    return llama_cpp.llama_sampler_init_dry(
        vocab,
        params.dry_multiplier,
        params.dry_base,
        params.dry_allowed_length,
        last_n,
        array,
        len(breakers),
    )


def build_chain(
    params: GenerationParams, *, vocab, n_vocab: int, seed: int, context_length: int
) -> SamplerChain:
    """The sampler chain for one reply (a fresh one each reply: penalties, DRY and mirostat
    keep state, and a seed must give the same reply again)."""
    chain = SamplerChain()
    try:
        chain.add(
            "penalties",
            llama_cpp.llama_sampler_init_penalties(
                n_vocab, REPEAT_LAST_N, params.repetition_penalty, 0.0, 0.0
            ),
        )
        if params.dry_enabled:
            window = _dry_window(params, context_length)
            chain.add("dry", _dry(vocab, params, window), dry_window=window)
        temperature = params.temperature if params.do_sample else 0.0
        if temperature == 0.0:
            chain.add("greedy", llama_cpp.llama_sampler_init_greedy())
            return chain
        if params.mirostat_mode:
            chain.add("temperature", llama_cpp.llama_sampler_init_temp(temperature))
            if params.mirostat_mode == 1:
                miro = llama_cpp.llama_sampler_init_mirostat(
                    n_vocab, seed, params.mirostat_tau, params.mirostat_eta, MIROSTAT_M
                )
            else:
                miro = llama_cpp.llama_sampler_init_mirostat_v2(
                    seed, params.mirostat_tau, params.mirostat_eta
                )
            chain.add(f"mirostat v{params.mirostat_mode}", miro)
            return chain
        if params.top_n_sigma > 0:
            chain.add("top-n-sigma", llama_cpp.llama_sampler_init_top_n_sigma(params.top_n_sigma))
        chain.add("top-k", llama_cpp.llama_sampler_init_top_k(params.top_k))
        chain.add("typical", llama_cpp.llama_sampler_init_typical(params.typical_p, 1))
        chain.add("top-p", llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        chain.add("min-p", llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        if params.xtc_probability > 0:
            chain.add(
                "xtc",
                llama_cpp.llama_sampler_init_xtc(
                    params.xtc_probability, params.xtc_threshold, 1, seed
                ),
            )
        if params.dynatemp_range > 0:
            temp = llama_cpp.llama_sampler_init_temp_ext(
                temperature, params.dynatemp_range, params.dynatemp_exponent
            )
            chain.add("dynamic temperature", temp)
        else:
            chain.add("temperature", llama_cpp.llama_sampler_init_temp(temperature))
        chain.add("dist", llama_cpp.llama_sampler_init_dist(seed))
    except BaseException:
        chain.close()
        raise
    return chain
