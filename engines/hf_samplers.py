"""The GPU engine's DRY, XTC, top-nσ and dynamic temperature, as transformers LogitsProcessors,
and the sampling chain that puts them in llama.cpp's order (as the CPU engine's,
engines/llamacpp_sampling.py):

    (repetition penalty) → DRY → top-nσ → top-k → typical → top-p → min-p → XTC → temperature

transformers runs a `logits_processor` list after its own penalties and before its own
warpers (temperature first, then top-k, top-p, min-p, typical). When one of these samplers is
on, `sampling_chain` takes the warpers over in that order and `generation_config` leaves
transformers' own off; with them all off transformers samples as before, so a saved reply's
seed still gives its text. Mirostat is the CPU engine's (and llama-server's) only.

Each follows llama.cpp's definition (src/llama-sampling.cpp); the code is our own.
"""

from __future__ import annotations

import functools
import math

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from engines.base import GenerationParams

_MAX_EXPONENT_LOG = math.log(torch.finfo(torch.float32).max)


class DryLogitsProcessor(LogitsProcessor):
    """DRY: a token that would continue a repeat of the context lowers its logit.

    For each earlier place the context's last token occurred, the repeat there is how many
    tokens before it equal the context's end (never reaching back past a sequence breaker at
    the end); the token that followed it would extend that repeat. A repeat at least
    `allowed_length` long costs that token `multiplier * base ** (length - allowed_length)`
    (the longest repeat counts). Only the last `last_n` tokens are looked at (-1: all)."""

    def __init__(
        self,
        multiplier: float,
        base: float,
        allowed_length: int,
        last_n: int,
        breakers: torch.Tensor,
    ):
        self.multiplier, self.base, self.allowed_length = multiplier, base, allowed_length
        self.last_n = last_n
        self.breakers = breakers  # bool per token id: the token's text holds a breaker
        # multiplier * base ** exponent must stay a finite float32 (llama.cpp caps it too): a
        # token is pushed far down, never to -inf, which could leave no token to sample
        room = _MAX_EXPONENT_LOG - math.log(max(multiplier, 1.0)) - 1.0
        self.max_exponent = room / math.log(base) if base > 1 else math.inf

    def repeat_lengths(self, sequence: torch.Tensor, vocab: int) -> torch.Tensor:
        """Per token id, the longest repeat that token would extend (0: none)."""
        lengths = torch.zeros(vocab, dtype=torch.long, device=sequence.device)
        if self.last_n > 0:
            sequence = sequence[-self.last_n :]
        size = sequence.shape[0]
        if size < 2:
            return lengths
        if self.breakers.device != sequence.device:
            self.breakers = self.breakers.to(sequence.device)
        breakers = self.breakers
        in_vocab = sequence < breakers.shape[0]
        is_breaker = breakers[sequence.clamp(max=breakers.shape[0] - 1)] & in_vocab
        # how far back from the end a repeat may reach: up to the last breaker
        breaks = torch.nonzero(is_breaker).flatten()
        limit = size - 1 - int(breaks[-1]) if breaks.numel() else size
        if limit <= 0:
            return lengths
        # earlier places the last token occurred: each is the end of a candidate repeat
        ends = torch.nonzero(sequence[:-1] == sequence[-1]).flatten()
        length = torch.ones_like(ends)
        growing = torch.arange(ends.numel(), device=ends.device)  # repeats still matching
        for back in range(1, limit):
            growing = growing[ends[growing] >= back]
            if growing.numel() == 0:
                break
            growing = growing[sequence[ends[growing] - back] == sequence[size - 1 - back]]
            length[growing] += 1
        followers = sequence[ends + 1]
        lengths.scatter_reduce_(0, followers, length, reduce="amax")
        return lengths

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
        for row in range(scores.shape[0]):
            lengths = self.repeat_lengths(input_ids[row], scores.shape[1])
            hit = lengths >= self.allowed_length
            if not bool(hit.any()):
                continue
            exponent = (lengths[hit] - self.allowed_length).to(torch.float32)
            exponent = exponent.clamp(max=self.max_exponent)
            penalty = self.multiplier * self.base**exponent
            scores[row, hit] -= penalty.to(scores.dtype)
        return scores


class XtcLogitsProcessor(LogitsProcessor):
    """XTC, exclude top choices: with `probability`, when two or more tokens are at least
    `threshold` likely, all of them but the least likely are removed. A threshold above 0.5
    can hold one token only, so it does nothing (as in llama.cpp)."""

    def __init__(self, threshold: float, probability: float, seed: int):
        self.threshold, self.probability = threshold, probability
        self.generator = torch.Generator().manual_seed(seed)  # its own draws, on the CPU

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
        for row in range(scores.shape[0]):
            draw = float(torch.rand((), generator=self.generator))
            if self.threshold > 0.5 or draw >= self.probability:
                continue
            probs = torch.softmax(scores[row].float(), dim=-1)
            above = probs >= self.threshold
            if int(above.sum()) < 2:
                continue
            kept = int(torch.where(above, probs, torch.inf).argmin())
            above[kept] = False
            scores[row, above] = -math.inf
        return scores


class TopNSigmaLogitsProcessor(LogitsProcessor):
    """Top-nσ: keeps the tokens whose logit is at most n standard deviations (of the logits
    still in play) below the highest."""

    def __init__(self, n: float):
        self.n = n

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
        for row in range(scores.shape[0]):
            logits = scores[row].float()
            finite = logits[torch.isfinite(logits)]
            if finite.numel() < 2:
                continue
            floor = finite.max() - self.n * finite.std(correction=0)
            scores[row, logits < floor] = -math.inf
        return scores


class DynamicTemperatureLogitsProcessor(LogitsProcessor):
    """Dynamic temperature: the logits divided by a temperature between temperature - range
    (at least 0) and temperature + range, by how unsure the model is: the entropy of the
    candidates' probabilities over its maximum (all equally likely), to the `exponent`."""

    def __init__(self, temperature: float, spread: float, exponent: float):
        self.low = max(0.0, temperature - spread)
        self.high = temperature + spread
        self.exponent = exponent

    def temperature_for(self, logits: torch.Tensor) -> float:
        finite = torch.isfinite(logits)
        count = int(finite.sum())
        probs = torch.softmax(logits.float(), dim=-1)
        entropy = float(-(probs[probs > 0] * probs[probs > 0].log()).sum())
        normalized = entropy / math.log(count) if count > 1 else 0.0
        return self.low + (self.high - self.low) * min(1.0, normalized) ** self.exponent

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
        for row in range(scores.shape[0]):
            if int(torch.isfinite(scores[row]).sum()) < 2:
                continue
            temperature = self.temperature_for(scores[row])
            if temperature <= 0:  # as temperature 0: only the most likely token is left
                top = scores[row].argmax()
                keep = scores[row, top].clone()
                scores[row] = -math.inf
                scores[row, top] = keep
            else:
                scores[row] = scores[row] / temperature
        return scores


@functools.lru_cache(maxsize=2)
def breaker_mask(tokenizer, breakers: tuple[str, ...]) -> torch.Tensor:
    """Per token id, whether its text holds a sequence breaker (as llama.cpp counts a token
    that contains one; a breaker split across tokens is not seen)."""
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=False)
    return torch.tensor([any(b in text for b in breakers) for text in texts], dtype=torch.bool)


def takes_over(params: GenerationParams) -> bool:
    """Whether `sampling_chain` replaces transformers' own warpers for these params."""
    return sampling(params) and (
        params.top_n_sigma > 0 or params.xtc_probability > 0 or params.dynatemp_range > 0
    )


def sampling(params: GenerationParams) -> bool:
    return params.do_sample and params.temperature > 0 and params.num_beams == 1


def sampling_chain(params: GenerationParams, tokenizer, seed: int) -> LogitsProcessorList:
    """The processors these params add to transformers' own (an empty list: none)."""
    chain = LogitsProcessorList()
    if params.dry_enabled:
        mask = breaker_mask(tokenizer, tuple(params.dry_sequence_breakers))
        chain.append(
            DryLogitsProcessor(
                params.dry_multiplier,
                params.dry_base,
                params.dry_allowed_length,
                params.dry_penalty_last_n,
                mask,
            )
        )
    if not takes_over(params):
        return chain
    if params.top_n_sigma > 0:
        chain.append(TopNSigmaLogitsProcessor(params.top_n_sigma))
    if params.top_k > 0:
        chain.append(TopKLogitsWarper(params.top_k))
    if params.typical_p < 1.0:
        chain.append(TypicalLogitsWarper(params.typical_p))
    if params.top_p < 1.0:
        chain.append(TopPLogitsWarper(params.top_p))
    if params.min_p > 0:
        chain.append(MinPLogitsWarper(params.min_p))
    if params.xtc_probability > 0:
        chain.append(XtcLogitsProcessor(params.xtc_threshold, params.xtc_probability, seed))
    if params.dynatemp_range > 0:
        chain.append(
            DynamicTemperatureLogitsProcessor(
                params.temperature, params.dynatemp_range, params.dynatemp_exponent
            )
        )
    elif params.temperature != 1.0:
        chain.append(TemperatureLogitsWarper(params.temperature))
    return chain
