"""DRY, XTC, dynamic temperature, top-nσ and mirostat (issue 14) on both engines.

The GPU engine's processors (engines/hf_samplers.py) are checked on hand-built logits against
their definitions, then on the tiny random model through `model.generate` and the engine. The
CPU engine's llama.cpp chain (engines/llamacpp_sampling.py) runs in a child process (native
code: a crash there fails a test instead of killing pytest), on the tiny model and the real
SmolLM2: with the new samplers off it samples exactly as `Llama.generate` did, and each one
changes the distribution as designed. The params' validation comes first, the parameters panel
last; the remote engine's request body is checked in tests/test_openai_remote.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engines.base import CosplayError, GenerationParams
from engines.checked import InvalidValue
from tests.hf_support import HFEngine, installed

needs_torch = pytest.mark.skipif(
    not installed("torch", "transformers"), reason="the GPU engine's extras are not installed"
)
ROOT = Path(__file__).resolve().parents[1]
NO_BREAKERS = ["\u2603\u2603\u2603"]  # a breaker no token holds: repeats run unbroken
REPEAT_PROMPT = [
    {
        "role": "user",
        "content": "Repeat after me: the cat sat on the mat, the cat sat on the mat, "
        "the cat sat on the mat",
    }
]


def extended_repeats(sequence: list[int], start: int) -> list[int]:
    """For each token from `start` on, the longest repeat of the tokens before it that it
    continued: how many tokens before an earlier occurrence of it equal the tokens before it.
    (The definition DRY penalizes, written the slow, obvious way.)"""
    found = []
    for p in range(start, len(sequence)):
        best = 0
        for j in range(p - 1):
            if sequence[j + 1] != sequence[p]:
                continue
            n = 0
            while n <= j and sequence[j - n] == sequence[p - 1 - n]:
                n += 1
            best = max(best, n)
        found.append(best)
    return found


def dry_reference(sequence: list[int], multiplier: float, base: float, allowed: int) -> dict:
    """DRY's penalty per token id (those with none left out), from `extended_repeats`."""
    penalties = {}
    for token in set(sequence):
        length = extended_repeats([*sequence, token], len(sequence))[0]
        if length >= allowed:
            penalties[token] = multiplier * base ** (length - allowed)
    return penalties


def test_extended_repeats_reference():
    #            0  1  2  3  4  5  6  7
    sequence = [1, 2, 3, 4, 5, 1, 2, 3, 4]
    assert extended_repeats(sequence, 8) == [3]  # 4 followed 1 2 3 before
    assert extended_repeats(sequence, 5) == [0, 1, 2, 3]


# --- params ---------------------------------------------------------------------------------


def test_new_fields_are_off_by_default_and_old_saved_params_still_load():
    params = GenerationParams()
    assert not params.uses_new_samplers()
    assert params.dry_sequence_breakers == ["\n", ":", '"', "*"]
    saved_before = {"temperature": 0.7, "top_p": 0.9, "seed": 5, "stop": []}  # an old reply
    assert GenerationParams(**saved_before).to_dict() == {
        **GenerationParams().to_dict(),
        **saved_before,
    }
    for on in (
        {"dry_multiplier": 0.8},
        {"xtc_probability": 0.5},
        {"dynatemp_range": 0.5},
        {"top_n_sigma": 1.0},
        {"mirostat_mode": 2},
    ):
        assert GenerationParams(**on).uses_new_samplers(), on
    assert not GenerationParams(dry_multiplier=0.8, dry_penalty_last_n=0).uses_new_samplers()


@pytest.mark.parametrize(
    "bad",
    [
        {"dry_multiplier": -1},
        {"dry_base": 0.5},
        {"dry_allowed_length": 0},
        {"dry_penalty_last_n": -2},
        {"dry_sequence_breakers": [""]},
        {"dry_sequence_breakers": "\n"},
        {"dry_sequence_breakers": ["x" * 41]},
        {"dry_sequence_breakers": [":"] * 65},
        {"xtc_threshold": 1.5},
        {"xtc_probability": 2},
        {"dynatemp_range": -0.1},
        {"dynatemp_exponent": 0},
        {"top_n_sigma": -3},
        {"mirostat_mode": 3},
        {"mirostat_eta": 5},
    ],
)
def test_absurd_values_are_refused(bad):
    with pytest.raises(InvalidValue) as caught:
        GenerationParams(**bad)
    assert caught.value.field == next(iter(bad)) and caught.value.field in str(caught.value)


# --- GPU engine: the processors on hand-built logits -----------------------------------------


@pytest.fixture(scope="module")
def torch():
    if not installed("torch", "transformers"):
        pytest.skip("the GPU engine's extras are not installed")
    import torch

    return torch


def dry(torch, multiplier=1.0, base=2.0, allowed=2, last_n=-1, breakers=()):
    from engines.hf_samplers import DryLogitsProcessor

    mask = torch.zeros(16, dtype=torch.bool)
    mask[list(breakers)] = True
    return DryLogitsProcessor(multiplier, base, allowed, last_n, mask)


def dry_scores(torch, processor, sequence):
    return processor(torch.tensor([sequence]), torch.zeros(1, 16))[0].tolist()


def test_dry_penalizes_the_token_that_extends_a_repeat(torch):
    # ... 1 2 3 4 ... 1 2 3 → 4 would make "1 2 3 4" twice: a repeat of 3 ≥ allowed 2
    scores = dry_scores(torch, dry(torch, multiplier=0.8, base=1.75), [1, 2, 3, 4, 5, 1, 2, 3])
    assert scores[4] == pytest.approx(-0.8 * 1.75 ** (3 - 2))
    assert [s for i, s in enumerate(scores) if i != 4] == [0.0] * 15


def test_dry_longest_repeat_counts_and_short_ones_are_allowed(torch):
    # 7 followed "2 3" (a repeat of 2) and 6 followed "9 3" (a repeat of 1: below allowed 2)
    scores = dry_scores(torch, dry(torch, base=2.0), [2, 3, 7, 9, 3, 6, 8, 2, 3])
    assert scores[7] == pytest.approx(-1.0)  # 1.0 * 2 ** (2 - 2)
    assert scores[6] == 0.0
    # the same 7 after a repeat of 4: the longest one sets the penalty
    scores = dry_scores(torch, dry(torch, base=2.0), [5, 2, 3, 7, 1, 5, 2, 3, 7, 2, 1, 5, 2, 3])
    assert scores[7] == pytest.approx(-(2.0 ** (4 - 2)))


def test_dry_repeats_stop_at_a_sequence_breaker_and_outside_the_window(torch):
    sequence = [1, 2, 3, 4, 5, 1, 2, 3]
    assert dry_scores(torch, dry(torch, breakers=[5]), sequence)[4] == pytest.approx(-2.0)
    # a breaker in the repeat: it reaches back to it, not over it: "2 3" → 1 * 2 ** 0
    assert dry_scores(torch, dry(torch, breakers=[1]), sequence)[4] == -1.0
    assert dry_scores(torch, dry(torch, breakers=[2]), sequence)[4] == 0.0  # "3" alone: 1 < 2
    assert dry_scores(torch, dry(torch, breakers=[3]), sequence) == [0.0] * 16  # ends on one
    assert dry_scores(torch, dry(torch, last_n=4), sequence) == [0.0] * 16  # 1 2 3 4 too far


def test_dry_huge_repeats_stay_finite(torch):
    scores = dry_scores(torch, dry(torch, multiplier=5.0, base=10.0), [3] * 400)
    assert math.isfinite(scores[3]) and scores[3] < -1e30


def test_xtc_removes_the_top_choices_but_the_least_likely_of_them(torch):
    from engines.hf_samplers import XtcLogitsProcessor

    logits = torch.tensor([[0.4, 0.3, 0.2, 0.06, 0.04]]).log()
    out = XtcLogitsProcessor(0.15, 1.0, seed=0)(None, logits.clone())[0]
    assert out[:2].tolist() == [-math.inf, -math.inf]  # 0.4 and 0.3 go, 0.2 (the last) stays
    assert out[2:].tolist() == pytest.approx(logits[0, 2:].tolist())
    # one token above the threshold, a threshold above 0.5, or probability 0: unchanged
    for threshold, probability in ((0.35, 1.0), (0.6, 1.0), (0.15, 0.0)):
        out = XtcLogitsProcessor(threshold, probability, seed=0)(None, logits.clone())
        assert torch.equal(out, logits), (threshold, probability)


def test_xtc_acts_with_its_probability_and_its_seed(torch):
    from engines.hf_samplers import XtcLogitsProcessor

    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()

    def removed(seed):
        processor = XtcLogitsProcessor(0.25, 0.3, seed=seed)
        return [bool(processor(None, logits.clone())[0, 0].isinf()) for _ in range(400)]

    assert 0.22 < sum(removed(1)) / 400 < 0.38
    assert removed(1) == removed(1) and removed(1) != removed(2)


def test_top_n_sigma_keeps_the_tokens_within_n_sigma_of_the_top(torch):
    from engines.hf_samplers import TopNSigmaLogitsProcessor

    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, -math.inf]])
    sigma = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0]).std(correction=0).item()  # √2
    out = TopNSigmaLogitsProcessor(1.0)(None, logits.clone())[0]
    kept = [i for i, v in enumerate(out.tolist()) if v != -math.inf]
    assert kept == [i for i in range(5) if 4.0 - logits[0, i].item() <= sigma] == [0, 1]
    out = TopNSigmaLogitsProcessor(3.0)(None, logits.clone())[0]
    assert out[:5].tolist() == logits[0, :5].tolist()  # 3σ ≈ 4.2 reaches them all


def test_dynamic_temperature_follows_the_entropy(torch):
    from engines.hf_samplers import DynamicTemperatureLogitsProcessor

    processor = DynamicTemperatureLogitsProcessor(1.0, 0.5, 1.0)
    flat = torch.zeros(8)
    sure = torch.tensor([20.0, 0, 0, 0, 0, 0, 0, 0])
    assert processor.temperature_for(flat) == pytest.approx(1.5)  # entropy at its maximum
    assert processor.temperature_for(sure) == pytest.approx(0.5, abs=1e-3)  # almost none
    mid = torch.tensor([2.0, 1.0, 0, 0, -1, -1, -2, -2])
    probs = torch.softmax(mid, 0)
    normalized = float(-(probs * probs.log()).sum()) / math.log(8)
    assert processor.temperature_for(mid) == pytest.approx(0.5 + normalized)
    squared = DynamicTemperatureLogitsProcessor(1.0, 0.5, 2.0)
    assert squared.temperature_for(mid) == pytest.approx(0.5 + normalized**2)
    out = processor(None, mid.clone()[None])[0]
    assert out.tolist() == pytest.approx((mid / (0.5 + normalized)).tolist())
    # a range down to 0 on a sure model: only the top token is left
    greedy = DynamicTemperatureLogitsProcessor(0.3, 0.5, 50.0)(None, sure.clone()[None])[0]
    assert greedy[0] == 20.0 and bool(greedy[1:].isinf().all())


def test_the_chain_runs_in_llama_cpps_order_and_mirostat_is_refused(torch):
    from transformers import GenerationConfig

    from engines import hf_samplers
    from engines.hf_gen import generation_config

    everything = GenerationParams(
        dry_multiplier=0.8, top_n_sigma=1.0, xtc_probability=0.5, dynatemp_range=0.3, top_k=20,
        typical_p=0.9, top_p=0.9, min_p=0.05, temperature=0.7,
    )  # fmt: skip
    chain = hf_samplers.sampling_chain(everything, _FakeTokenizer(), seed=1)
    assert [type(p).__name__ for p in chain] == [
        "DryLogitsProcessor", "TopNSigmaLogitsProcessor", "TopKLogitsWarper",
        "TypicalLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper", "XtcLogitsProcessor",
        "DynamicTemperatureLogitsProcessor",
    ]  # fmt: skip
    config = generation_config(GenerationConfig(), everything, 16, [0], 0)
    assert (config.temperature, config.top_k, config.top_p, config.min_p) == (1.0, 0, 1.0, None)
    assert config.typical_p == 1.0 and config.do_sample
    # the old settings keep transformers' own warpers (a saved reply's seed gives its text)
    plain = GenerationParams(temperature=0.7, top_k=20, dry_multiplier=0.8)
    assert [type(p).__name__ for p in hf_samplers.sampling_chain(plain, _FakeTokenizer(), 1)] == [
        "DryLogitsProcessor"
    ]
    config = generation_config(GenerationConfig(), plain, 16, [0], 0)
    assert (config.temperature, config.top_k) == (0.7, 20)
    greedy = GenerationParams(do_sample=False, xtc_probability=1.0, dry_multiplier=1.0)
    assert len(hf_samplers.sampling_chain(greedy, _FakeTokenizer(), 1)) == 1  # DRY only
    with pytest.raises(CosplayError, match="Mirostat runs on the CPU engine"):
        generation_config(GenerationConfig(), GenerationParams(mirostat_mode=1), 16, [0], 0)


class _FakeTokenizer:
    """Sixteen one-character tokens, "\\n" at id 10."""

    def __len__(self):
        return 16

    def batch_decode(self, ids, skip_special_tokens=False):
        return ["\n" if i == 10 else chr(ord("a") + i) for [i] in ids]


def test_breakers_are_the_tokens_whose_text_holds_one(torch):
    from engines.hf_samplers import breaker_mask

    mask = breaker_mask(_FakeTokenizer(), ("\n", "c"))
    assert torch.nonzero(mask).flatten().tolist() == [2, 10]


# --- GPU engine: the tiny random model ----------------------------------------------------


@pytest.fixture(scope="module")
def hf_engine(tiny_llama, torch):
    engine = HFEngine(tiny_llama["hf"])
    yield engine
    engine.close()


def generate_ids(engine, params, prompt_ids, seed=0):
    """Our config and processors through a bare `model.generate` on the engine's model."""
    import torch as t

    from engines.hf_gen import generation_config
    from engines.hf_samplers import sampling_chain

    config = generation_config(engine.base_model.generation_config, params, 48, [], 0)
    config.eos_token_id = None
    t.manual_seed(seed)
    out = engine.base_model.generate(
        input_ids=t.tensor([prompt_ids]),
        attention_mask=t.ones((1, len(prompt_ids)), dtype=t.long),
        generation_config=config,
        logits_processor=sampling_chain(params, engine.tokenizer, seed),
    )
    return out[0].tolist()


def test_dry_stops_the_tiny_models_repeats(hf_engine):
    prompt = hf_engine.encode(hf_engine.render([{"role": "user", "content": "你好"}]))
    plain = GenerationParams(do_sample=False, repetition_penalty=1.0)
    dry_on = dataclasses.replace(plain, dry_multiplier=10.0, dry_sequence_breakers=NO_BREAKERS)
    before = extended_repeats(generate_ids(hf_engine, plain, prompt), len(prompt))
    after = extended_repeats(generate_ids(hf_engine, dry_on, prompt), len(prompt))
    assert max(before) > 4  # the random model loops when left alone
    assert max(after) < 2, after  # every repeat of 2 was stopped (allowed length 2)


@pytest.mark.parametrize(
    "on",
    [
        {"xtc_probability": 1.0, "xtc_threshold": 0.001},
        {"top_n_sigma": 0.3},
        {"dynatemp_range": 0.9},
    ],
)
def test_each_sampler_changes_the_tiny_models_reply_reproducibly(hf_engine, on):
    messages = [{"role": "user", "content": "hello there"}]
    base = dict(max_new_tokens=24, seed=3, repetition_penalty=1.0, temperature=1.0)
    plain = "".join(hf_engine.stream_chat(messages, GenerationParams(**base), threading.Event()))
    params = GenerationParams(**base, **on)
    one = "".join(hf_engine.stream_chat(messages, params, threading.Event()))
    two = "".join(hf_engine.stream_chat(messages, params, threading.Event()))
    assert one == two != plain


def test_mirostat_on_the_gpu_engine_is_one_clear_error(hf_engine):
    with pytest.raises(CosplayError, match="set mirostat to 0"):
        list(
            hf_engine.stream_chat(
                [{"role": "user", "content": "hi"}],
                GenerationParams(mirostat_mode=2),
                threading.Event(),
            )
        )


# --- CPU engine, in a child process ---------------------------------------------------------


def cpu_checks(model_path: str, repeat_text: str) -> dict:
    """Run in the child: what the llama.cpp chain does on this model, as plain data.
    `repeat_text`: a message the model answers greedily with repeats (DRY's test)."""
    import ctypes

    import llama_cpp
    import numpy as np

    from engines import llamacpp_decode as decode
    from engines.llamacpp import LlamaCppEngine
    from engines.llamacpp_sampling import build_chain

    engine = LlamaCppEngine(model_path, n_ctx=1024, n_threads=1)
    llm = engine._llm
    tokens = engine._fresh_tokens(engine.render(REPEAT_PROMPT))
    result: dict = {"prompt": len(tokens)}

    def ours(params: GenerationParams, seed: int, count: int) -> list[int]:
        llm.reset()
        generator = decode.generate(llm, tokens, params, seed, engine.context_length)
        out = [next(generator) for _ in range(count)]
        generator.close()
        return out

    def llama_generate(params: GenerationParams, seed: int, count: int) -> list[int]:
        llm.reset()
        llm.set_seed(seed)
        decode.evaluate_all_but_last(llm, tokens)  # as the engine did before its own chain
        generator = llm.generate(
            tokens, temp=params.temperature if params.do_sample else 0.0, top_k=params.top_k,
            top_p=params.top_p, min_p=params.min_p, typical_p=params.typical_p,
            repeat_penalty=params.repetition_penalty,
        )  # fmt: skip
        out = [next(generator) for _ in range(count)]
        generator.close()
        return out

    same = []
    for params in (
        GenerationParams(),
        GenerationParams(temperature=1.3, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.3),
        GenerationParams(typical_p=0.8, top_k=5),
        GenerationParams(do_sample=False),
    ):
        for seed in (1, 2):
            same.append(ours(params, seed, 24) == llama_generate(params, seed, 24))
    result["same_as_llama_generate"] = same

    greedy = GenerationParams(do_sample=False, repetition_penalty=1.0)
    dry_on = dataclasses.replace(greedy, dry_multiplier=4.0, dry_sequence_breakers=NO_BREAKERS)
    result["dry_cases"] = []
    plain_reply = None
    repeat_tokens = engine._fresh_tokens(engine.render([{"role": "user", "content": repeat_text}]))
    for name, params in (("plain", greedy), ("dry", dry_on)):
        llm.reset()
        generator = decode.generate(llm, repeat_tokens, params, 0, engine.context_length)
        reply = [next(generator) for _ in range(48)]
        generator.close()
        result[f"repeats_{name}"] = extended_repeats(repeat_tokens + reply, len(repeat_tokens))
        plain_reply = plain_reply or reply
    # llama.cpp's DRY sampler alone on a sequence: the logit it takes off each token
    for cut in (4, 12, 20, 30):
        sequence = repeat_tokens + plain_reply[:cut]
        sampler = llama_cpp.llama_sampler_init_dry(
            llm._model.vocab, 0.8, 1.75, 2, 1024,
            (ctypes.c_char_p * 1)(NO_BREAKERS[0].encode()), 1,
        )  # fmt: skip
        for token in sequence:
            llama_cpp.llama_sampler_accept(sampler, token)
        n_vocab = llm.n_vocab()
        data = (llama_cpp.llama_token_data * n_vocab)()
        for token in range(n_vocab):
            data[token].id, data[token].logit = token, 0.0
        candidates = llama_cpp.llama_token_data_array(data, n_vocab, -1, False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
        llama_cpp.llama_sampler_free(sampler)
        penalties = {str(d.id): -d.logit for d in data[:n_vocab] if d.logit != 0.0}
        result["dry_cases"].append({"sequence": sequence, "penalties": penalties})

    # The next token's distribution, sampled with fresh chains (one per seed) from the same
    # logits: the prompt is evaluated once.
    llm.reset()
    llm.eval(tokens)
    logits = np.ctypeslib.as_array(
        llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)
    ).copy()
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    result["top"] = int(logits.argmax())
    result["above_0.05"] = sorted(int(i) for i in np.nonzero(probs >= 0.05)[0])
    result["sigma"] = float(logits.std())
    result["max_logit"] = float(logits.max())
    result["logits"] = {}
    open_sampling = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0)
    cases = {
        "plain": {},
        "xtc": {"xtc_probability": 1.0, "xtc_threshold": 0.05},
        "top_n_sigma": {"top_n_sigma": 1.0},
        "cold": {"temperature": 0.3},
        "dynatemp_sure": {"temperature": 0.3, "dynatemp_range": 0.3, "dynatemp_exponent": 8.0},
        "dynatemp_unsure": {"temperature": 0.3, "dynatemp_range": 0.3, "dynatemp_exponent": 0.05},
        "mirostat": {"mirostat_mode": 2, "mirostat_tau": 0.1},
    }
    samples = {}
    for name, update in cases.items():
        params = GenerationParams(**{**open_sampling, **update})
        picked = []
        for seed in range(60):
            chain = build_chain(
                params, vocab=llm._model.vocab, n_vocab=llm.n_vocab(), seed=seed,
                context_length=1024,
            )  # fmt: skip
            picked.append(chain.sample(llm.ctx))
            if seed == 0:
                result.setdefault("names", {})[name] = chain.names
            chain.close()
        samples[name] = picked
        result["logits"].update({str(t): float(logits[t]) for t in picked})
    result["samples"] = samples
    everything = GenerationParams(
        dry_multiplier=0.8, top_n_sigma=1.0, xtc_probability=0.5, dynatemp_range=0.3
    )
    chain = build_chain(everything, vocab=llm._model.vocab, n_vocab=llm.n_vocab(), seed=0,
                        context_length=1024)  # fmt: skip
    result["names"]["everything"] = chain.names
    chain.close()
    # through stream_chat: every sampler on at once, seeded, twice
    replies = []
    for _ in range(2):
        llm.reset()
        params = dataclasses.replace(everything, seed=5, max_new_tokens=16)
        replies.append("".join(engine.stream_chat(REPEAT_PROMPT, params, threading.Event())))
    result["stream_replies"] = replies
    engine.close()
    return result


def run_cpu_checks(model: Path, repeat_text: str) -> dict:
    code = "import json, sys; from tests.test_samplers import cpu_checks; "
    code += "print('RESULT ' + json.dumps(cpu_checks(sys.argv[1], sys.argv[2])))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(model), repeat_text],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]  # a crash is -11 here, not a dead pytest
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def cpu_real():
    from tests.real_model import shipped_gguf

    return run_cpu_checks(shipped_gguf(), REPEAT_PROMPT[0]["content"])


@pytest.fixture(scope="module")
def cpu_tiny(tiny_gguf):
    return run_cpu_checks(tiny_gguf, "你好")  # (the random model loops on this one)


def test_cpu_chain_samples_as_llama_generate_with_the_new_samplers_off(cpu_real, cpu_tiny):
    assert cpu_real["same_as_llama_generate"] == [True] * 8
    assert cpu_tiny["same_as_llama_generate"] == [True] * 8


def test_cpu_chain_order_is_llama_cpps(cpu_real):
    names = cpu_real["names"]
    assert names["plain"] == ["penalties", "top-k", "typical", "top-p", "min-p", "temperature",
                              "dist"]  # fmt: skip
    assert names["everything"] == [
        "penalties", "dry", "top-n-sigma", "top-k", "typical", "top-p", "min-p", "xtc",
        "dynamic temperature", "dist",
    ]  # fmt: skip
    assert names["mirostat"] == ["penalties", "temperature", "mirostat v2"]


def test_cpu_dry_stops_the_real_models_repeat(cpu_real):
    # greedy, the real model copies "the cat sat on the mat" again and again (a repeat of 12
    # tokens); with DRY (multiplier 4, allowed length 2) the penalty grows 4, 7, 12.25… and
    # ends every repeat within two tokens past the allowed length (a sure model outbids the
    # first ones)
    assert max(cpu_real["repeats_plain"]) >= 12
    assert max(cpu_real["repeats_dry"]) <= 4, cpu_real["repeats_dry"]


def test_cpu_dry_stops_the_tiny_models_repeat(cpu_tiny):
    assert max(cpu_tiny["repeats_plain"]) > 4
    assert max(cpu_tiny["repeats_dry"]) <= 2, cpu_tiny["repeats_dry"]


@pytest.mark.parametrize("which", ["cpu_real", "cpu_tiny"])
def test_llama_cpps_dry_and_ours_take_the_same_penalty_off_each_token(request, which):
    """llama.cpp's DRY sampler (CPU engine), the definition written out, and the GPU engine's
    processor agree on every token's penalty, on sequences the model really wrote."""
    cases = request.getfixturevalue(which)["dry_cases"]
    assert any(case["penalties"] for case in cases)  # repeats were there to penalize
    for case in cases:
        expected = dry_reference(case["sequence"], 0.8, 1.75, 2)
        got = {int(token): value for token, value in case["penalties"].items()}
        assert got.keys() == expected.keys()
        assert [got[t] for t in expected] == pytest.approx(list(expected.values()), rel=1e-5)
    if not installed("torch", "transformers"):
        return
    import torch

    from engines.hf_samplers import DryLogitsProcessor

    for case in cases:
        sequence = case["sequence"]
        vocab = max(sequence) + 1
        processor = DryLogitsProcessor(0.8, 1.75, 2, -1, torch.zeros(vocab, dtype=torch.bool))
        scores = processor(torch.tensor([sequence]), torch.zeros(1, vocab))[0]
        ours = {t: -float(v) for t, v in enumerate(scores) if v != 0}
        expected = {int(t): v for t, v in case["penalties"].items()}
        assert ours.keys() == expected.keys()
        assert [ours[t] for t in expected] == pytest.approx(list(expected.values()), rel=1e-5)


def test_cpu_xtc_never_picks_the_top_choices_it_excludes(cpu_real):
    above = cpu_real["above_0.05"]
    assert len(above) >= 2, "the prompt must leave two likely tokens for XTC to act on"
    least_likely_above = min(above, key=lambda t: cpu_real["logits"].get(str(t), math.inf))
    plain, xtc = cpu_real["samples"]["plain"], cpu_real["samples"]["xtc"]
    assert cpu_real["top"] in plain  # without XTC the top token comes up
    assert not set(xtc) & (set(above) - {least_likely_above})


def test_cpu_top_n_sigma_keeps_only_tokens_near_the_top(cpu_real):
    floor = cpu_real["max_logit"] - 1.0 * cpu_real["sigma"]
    logits = cpu_real["logits"]
    assert all(logits[str(t)] >= floor for t in cpu_real["samples"]["top_n_sigma"])
    assert any(logits[str(t)] < floor for t in cpu_real["samples"]["plain"])


def test_cpu_dynamic_temperature_cools_a_sure_model_and_warms_an_unsure_one(cpu_real):
    samples = cpu_real["samples"]
    # exponent 8: entropy/max ** 8 ≈ 0 → temperature 0.3 - 0.3 = 0: greedy
    assert set(samples["dynatemp_sure"]) == {cpu_real["top"]}
    # exponent 0.05: ≈ 1 → temperature 0.6, warmer than 0.3 alone: more different tokens
    assert len(set(samples["dynatemp_unsure"])) > len(set(samples["cold"]))


def test_cpu_mirostat_with_a_low_target_keeps_to_the_likely_tokens(cpu_real):
    assert len(set(cpu_real["samples"]["mirostat"])) < len(set(cpu_real["samples"]["plain"]))


def test_cpu_every_sampler_at_once_streams_the_same_reply_for_a_seed(cpu_real):
    one, two = cpu_real["stream_replies"]
    assert one and one == two


# --- the parameters panel -------------------------------------------------------------------


async def test_the_panel_sets_the_samplers_in_folded_groups_at_80_by_24(tmp_path):
    from textual.widgets import Collapsible, Input

    from engines.fake import FakeEngine
    from sessions.store import Store
    from tests.conftest import wait_until
    from tui.app import make_app
    from tui.widgets.params_panel import ParamsPanel

    engine = FakeEngine(["一"])
    app = make_app(store=Store(tmp_path / "c.db"), engine=engine)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.chat
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: screen.query_one(ParamsPanel).display)
        panel = screen.query_one(ParamsPanel)
        groups = list(panel.query(Collapsible))
        assert [str(g.title) for g in groups] == [
            "DRY: no repeats", "XTC: no top choices", "Dynamic temperature", "Top-nσ",
            "Mirostat (CPU, server)",
        ]  # fmt: skip
        assert all(group.collapsed for group in groups)

        async def enter(field_id: str, value: str) -> None:
            field = panel.query_one(f"#{field_id}", Input)
            field.value = value
            field.focus()
            await pilot.press("enter")
            await pilot.pause()

        groups[0].collapsed = False
        await pilot.pause()
        await enter("dry_multiplier", "0.8")
        await enter("dry_sequence_breakers", '["\\n", "「"]')
        saved = screen.session.settings["params"]
        assert saved["dry_multiplier"] == 0.8 and saved["dry_sequence_breakers"] == ["\n", "「"]
        assert str(groups[0].title) == "DRY: no repeats · on"
        await enter("dry_sequence_breakers", "\\n")  # not JSON: refused, nothing saved
        assert panel.query_one("#dry_sequence_breakers").has_class("-invalid")
        assert screen.session.settings["params"]["dry_sequence_breakers"] == ["\n", "「"]
        await enter("dry_sequence_breakers", '["\\n", "「"]')
        await enter("mirostat_mode", "3")  # out of range: refused
        assert panel.query_one("#mirostat_mode").has_class("-invalid")
        await enter("mirostat_mode", "2")
        assert str(groups[4].title) == "Mirostat (CPU, server) · on"
        await pilot.press("ctrl+t")
        await pilot.click("#input")
        await pilot.press("x", "enter")
        await wait_until(pilot, lambda: not screen.generating and len(engine.params) == 1)
        sent = engine.params[0]
        assert (sent.dry_multiplier, sent.mirostat_mode) == (0.8, 2)
        assert sent.dry_sequence_breakers == ["\n", "「"]
