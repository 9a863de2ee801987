"""What the remote engine sends a server to ask for a reply: the body of
`POST /v1/chat/completions`, its sampling settings by the names the servers read.

The OpenAI fields (model, messages, max_tokens, temperature, top_p, seed, stop) always go;
settings outside the OpenAI spec (top_k, min_p, typical_p, the repetition penalty, DRY, XTC,
dynamic temperature, top-nσ, mirostat) and `stream_options.include_usage` go as "extras", by
the names llama.cpp's llama-server and vLLM read, unless the server rejected them once
(`names_an_extra` recognises that error). Speaker names are not sent: role and content only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.base import ChatMessage, GenerationParams

# The names of the extras as a server's error message quotes them (prefixes for the families).
EXTRA_FIELDS = ("stream_options", "top_k", "min_p", "typical_p", "repeat_penalty",
                "repetition_penalty", "dry_", "xtc_", "dynatemp_", "top_n_sigma", "mirostat")  # fmt: skip


def sampler_fields(params: GenerationParams) -> dict:
    """DRY, XTC, dynamic temperature, top-nσ and mirostat by llama-server's names, only those
    switched on (a server that knows none of them is never sent one it would not need).
    Mirostat goes as `mirostat` (llama-server) and `mirostat_mode` (llama_cpp.server)."""
    fields: dict = {}
    if params.dry_enabled:
        fields.update(
            dry_multiplier=params.dry_multiplier,
            dry_base=params.dry_base,
            dry_allowed_length=params.dry_allowed_length,
            dry_penalty_last_n=params.dry_penalty_last_n,
            dry_sequence_breakers=list(params.dry_sequence_breakers),
        )
    if params.xtc_probability > 0:
        fields.update(xtc_probability=params.xtc_probability, xtc_threshold=params.xtc_threshold)
    if params.dynatemp_range > 0:
        fields.update(
            dynatemp_range=params.dynatemp_range, dynatemp_exponent=params.dynatemp_exponent
        )
    if params.top_n_sigma > 0:
        fields["top_n_sigma"] = params.top_n_sigma
    if params.mirostat_mode:
        fields.update(
            mirostat=params.mirostat_mode,
            mirostat_mode=params.mirostat_mode,
            mirostat_tau=params.mirostat_tau,
            mirostat_eta=params.mirostat_eta,
        )
    return fields


def chat_request(
    model: str,
    messages: list[ChatMessage],
    params: GenerationParams,
    seed: int,
    *,
    prefill: str = "",
    extras: bool = True,
) -> dict:
    """The streamed chat request for one reply; with `prefill`, the reply so far as a final
    assistant message the server is to continue."""
    sent = [{"role": m.get("role", "user"), "content": m.get("content", "")} for m in messages]
    if prefill:
        sent.append({"role": "assistant", "content": prefill})
    body: dict = {
        "model": model,
        "messages": sent,
        "stream": True,
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature if params.do_sample else 0.0,
        "top_p": params.top_p,
        "seed": seed,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if prefill:  # vLLM's names for "continue the last message", which llama-server reads too
        body.update(continue_final_message=True, add_generation_prompt=False)
    if extras:
        body["stream_options"] = {"include_usage": True}
        penalty = params.repetition_penalty
        body.update(top_k=params.top_k, min_p=params.min_p, typical_p=params.typical_p,
                    repeat_penalty=penalty, repetition_penalty=penalty)  # fmt: skip
        body.update(sampler_fields(params))
    return body


def names_an_extra(message: str) -> bool:
    """Whether a server's error message names one of the extras (then it is asked again
    without them)."""
    return any(field in message for field in EXTRA_FIELDS)
