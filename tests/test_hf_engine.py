"""The GPU engine on CPU with the tiny random Llama and Qwen2: streaming, cancel, stops, templates,
beams, seeds, the prefix cache, errors, closing, and the CLI path.

Outputs are compared with a bare `model.generate` on the same weights, and the
tokens the model really computes are counted with forward hooks, so these tests
check the mechanics rather than the engine's own bookkeeping.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import subprocess
import sys
import threading
import time
import weakref

import pytest

from engines.base import (
    ContextOverflowError,
    CosplayError,
    GenerationError,
    GenerationParams,
)
from engines.templates import NAMED_TEMPLATES
from tests.hf_support import HFEngine, needs

# torch & co. are imported inside fixtures and tests, never while collecting the suite.
pytestmark = needs("torch", "transformers")


HELLO = [{"role": "user", "content": "Hello, how are you today?"}]
GREEDY = dict(do_sample=False, repetition_penalty=1.0)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request):
    return request.getfixturevalue(f"tiny_{request.param}")


@pytest.fixture(scope="module")
def engine(tiny):
    engine = HFEngine(tiny["hf"])
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def bare(tiny):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny["hf"]).eval()


@pytest.fixture(scope="module")
def llama_engine(tiny_llama):
    engine = HFEngine(tiny_llama["hf"])
    yield engine
    engine.close()


def chat(engine, messages, cancel=None, **params):
    return "".join(
        engine.stream_chat(messages, GenerationParams(**params), cancel or threading.Event())
    )


def bare_reply(engine, bare, messages, **generate_kwargs):
    return bare_generate(engine, bare, messages, **generate_kwargs)[0]


def bare_generate(engine, bare, messages, **generate_kwargs):
    """(text, new token ids without a final end-of-sequence) from a plain `generate`."""
    import torch

    ids = engine.encode(engine.render(messages))
    _, eos_ids = engine._stop_setup(GenerationParams())
    with torch.inference_mode():
        out = bare.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            eos_token_id=eos_ids,
            pad_token_id=eos_ids[0],
            **generate_kwargs,
        )
    new = out[0, len(ids) :].tolist()
    if new and new[-1] in eos_ids:
        new = new[:-1]
    return engine.tokenizer.decode(new, skip_special_tokens=True), new


class ForwardCounter:
    """Counts forward calls of the base model and the tokens each one embeds; can slow them down."""

    def __init__(self, engine, delay: float = 0.0, fail_at: int | None = None):
        self.calls: list[int] = []
        self.delay = delay
        self.fail_at = fail_at
        embed = engine.base_model.get_input_embeddings()
        self._handle = embed.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.calls.append(args[0].shape[1])
        if self.fail_at is not None and len(self.calls) >= self.fail_at:
            raise RuntimeError("boom: injected failure")
        if self.delay:
            time.sleep(self.delay)

    def remove(self):
        self._handle.remove()


@pytest.fixture
def counter(engine):
    made: list[ForwardCounter] = []

    def make(**kwargs):
        made.append(ForwardCounter(engine, **kwargs))
        return made[-1]

    yield make
    for c in made:
        c.remove()


# --- loading and describing ---------------------------------------------------------------


def test_loads_on_cpu_in_fp32_with_the_models_own_template(engine, tiny):
    from engines.base import Engine

    assert isinstance(engine, Engine)
    assert engine.describe() == {
        "engine": "transformers",
        "device": "cpu",
        "dtype": "float32",
        "quantization": "none",
        "adapter": "none",
    }
    assert engine.template_name == "model"
    assert engine.context_length == 512  # the tiny model's max_position_embeddings
    assert engine.model_name == "hf"


def test_count_tokens_matches_the_tokenized_prompt(engine):
    prompt = engine.render(HELLO)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert engine.count_tokens(HELLO) == len(
        engine.tokenizer(prompt, add_special_tokens=False).input_ids
    )


# --- streaming, stops, cancel ----------------------------------------------------------------


def test_streams_the_same_text_as_bare_generate(engine, bare):
    engine._prefix.clear()
    pieces = list(
        engine.stream_chat(HELLO, GenerationParams(max_new_tokens=40, **GREEDY), threading.Event())
    )
    assert len(pieces) >= 2, "the reply must arrive in several pieces"
    expected, new = bare_generate(engine, bare, HELLO, max_new_tokens=40, do_sample=False)
    assert "".join(pieces) == expected
    stats = engine.last_stats
    assert stats.prompt_tokens == engine.count_tokens(HELLO)
    assert stats.prompt_eval_tokens == stats.prompt_tokens  # nothing cached yet
    assert stats.completion_tokens == len(new)
    assert stats.finish_reason == ("length" if len(new) == 40 else "stop")
    assert stats.total_s >= stats.ttft_s > 0


def test_cancel_stops_within_one_token(engine, counter):
    cancel = threading.Event()
    count = counter(delay=0.01)
    stream = engine.stream_chat(HELLO, GenerationParams(max_new_tokens=300, **GREEDY), cancel)
    next(stream)
    cancel.set()
    forwards_at_cancel = len(count.calls)
    rest = list(stream)
    assert len(count.calls) <= forwards_at_cancel + 1, "at most the step in flight may finish"
    stats = engine.last_stats
    assert stats.finish_reason == "cancelled"
    assert stats.completion_tokens < 300
    assert isinstance(rest, list)


@pytest.mark.parametrize("via", ["params", "template"])
def test_stop_string_cuts_the_reply_and_halts_generation(engine, counter, via):
    engine._prefix.clear()
    full = chat(engine, HELLO, max_new_tokens=60, **GREEDY)
    start = next(i for i in range(4, len(full) - 3) if "\ufffd" not in full[i : i + 3])
    stop = full[start : start + 3]
    expected = full[: full.find(stop)]
    count = counter(delay=0.01)
    original = engine.template
    try:
        if via == "template":
            engine.template = dataclasses.replace(original, stop=[*original.stop, stop])
            text = chat(engine, HELLO, max_new_tokens=60, **GREEDY)
        else:
            text = chat(engine, HELLO, max_new_tokens=60, stop=[stop], **GREEDY)
    finally:
        engine.template = original
    assert text == expected
    assert engine.last_stats.finish_reason == "stop"
    assert len(count.calls) < 60, "generation must halt once the stop string is seen"


def test_generation_error_mid_stream_reaches_the_consumer(engine, counter):
    counter(fail_at=5)
    started = time.perf_counter()
    with pytest.raises(GenerationError, match="boom"):
        chat(engine, HELLO, max_new_tokens=50, **GREEDY)
    assert time.perf_counter() - started < 10
    assert engine.last_stats.finish_reason == "error"
    assert engine._prefix.cache is None  # what the cache holds is unknown after a failure


def test_context_overflow_is_a_clear_error(tiny_llama):
    engine = HFEngine(tiny_llama["hf"], n_ctx=8)
    with pytest.raises(ContextOverflowError, match="context holds 8"):
        chat(engine, HELLO, max_new_tokens=5)
    engine.close()


# --- sampling ----------------------------------------------------------------------------------


def test_beam_search_matches_bare_generate_and_does_not_stream(engine, bare):
    params = GenerationParams(max_new_tokens=16, num_beams=3, **GREEDY)
    searched = 0
    for text in ("Hello, how are you today?", "你好，我是诸葛亮。", "tell me a story"):
        messages = [{"role": "user", "content": text}]
        pieces = list(engine.stream_chat(messages, params, threading.Event()))
        assert len(pieces) <= 1
        expected = bare_reply(
            engine,
            bare,
            messages,
            max_new_tokens=16,
            num_beams=3,
            do_sample=False,
            early_stopping=True,
        )
        assert "".join(pieces) == expected
        searched += expected != bare_reply(
            engine, bare, messages, max_new_tokens=16, do_sample=False
        )
    assert searched, "beam search must differ from greedy somewhere (else this test proves nothing)"


def test_same_seed_same_text_different_seed_differs(engine):
    sampling = dict(max_new_tokens=30, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    a = chat(engine, HELLO, seed=11, **sampling)
    assert engine.last_stats.seed == 11
    b = chat(engine, HELLO, seed=11, **sampling)  # this one reuses the cached prompt
    assert engine.last_stats.prompt_eval_tokens == 1
    c = chat(engine, HELLO, seed=12, **sampling)
    assert a == b
    assert a != c
    unseeded = chat(engine, HELLO, **sampling)
    assert engine.last_stats.seed is not None and unseeded


def test_no_repeat_ngram_size_is_applied(llama_engine, monkeypatch):
    outputs = []
    original = llama_engine.model.generate

    def recording_generate(**kwargs):
        outputs.append(original(**kwargs))
        return outputs[-1]

    monkeypatch.setattr(llama_engine.model, "generate", recording_generate)
    prompt_len = llama_engine.count_tokens(HELLO)

    def bigrams(output):
        new = output[0, prompt_len:].tolist()
        return list(zip(new, new[1:], strict=False))

    chat(llama_engine, HELLO, max_new_tokens=80, **GREEDY)
    plain = bigrams(outputs[-1])
    assert len(plain) != len(set(plain)), "greedy on random weights repeats itself"
    chat(llama_engine, HELLO, max_new_tokens=80, no_repeat_ngram_size=2, **GREEDY)
    constrained = bigrams(outputs[-1])
    assert len(constrained) == len(set(constrained))


def test_generation_config_sets_every_field_explicitly(llama_engine):
    from engines.hf_gen import generation_config

    base = llama_engine.base_model.generation_config
    params = GenerationParams(
        temperature=0.7,
        top_p=0.9,
        top_k=0,
        min_p=0.1,
        typical_p=0.8,
        repetition_penalty=1.3,
        no_repeat_ngram_size=3,
    )
    config = generation_config(base, params, 33, [5], 0)
    assert (config.do_sample, config.temperature, config.top_p, config.top_k) == (True, 0.7, 0.9, 0)
    assert (config.min_p, config.typical_p, config.repetition_penalty) == (0.1, 0.8, 1.3)
    assert (config.no_repeat_ngram_size, config.max_new_tokens, config.eos_token_id) == (3, 33, [5])
    greedy = generation_config(base, GenerationParams(temperature=0.0), 10, [5], 0)
    assert greedy.do_sample is False  # temperature 0 means greedy, never a division by zero
    beams = generation_config(base, GenerationParams(num_beams=4), 10, [5], 0)
    assert (beams.num_beams, beams.do_sample) == (4, False)


# --- templates -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMED_TEMPLATES))
def test_each_named_template_renders_and_brings_its_stop_strings(tiny_llama, name):
    engine = HFEngine(tiny_llama["hf"], template=name)
    try:
        template = NAMED_TEMPLATES[name]
        assert engine.template is template and engine.template_name == name
        messages = [
            {"role": "system", "content": "曹洪"},
            {"role": "user", "content": "你好", "name": "曹仁"},
            {"role": "assistant", "content": "目今失了彝陵", "name": "曹洪"},
            {"role": "user", "content": "何不早回？", "name": "曹仁"},
        ]
        prompt = engine.render(messages)
        assert prompt == template.render(
            messages, bos_token="<|endoftext|>", eos_token="<|im_end|>"
        )
        assert "何不早回" in prompt
        assert engine.count_tokens(messages) == len(engine.encode(prompt))
        texts, eos_ids = engine._stop_setup(GenerationParams(stop=["END"]))
        special = set(engine.tokenizer.all_special_tokens)
        for stop in template.stop:
            if stop in special:
                assert engine.tokenizer.convert_tokens_to_ids(stop) in eos_ids
            else:
                assert stop in texts
        assert "END" in texts
        if name == "cosplay":
            assert {"曰：", "道：", "说："} <= set(texts)
        chat(engine, messages, max_new_tokens=3, **GREEDY)
        assert engine.last_stats.prompt_tokens == engine.count_tokens(messages)
    finally:
        engine.close()


# --- prefix cache -----------------------------------------------------------------------------


def test_prefix_cache_gives_the_uncached_text_and_computes_only_new_tokens(engine, counter):
    engine._prefix.clear()
    turn1 = chat(engine, HELLO, max_new_tokens=12, **GREEDY)
    first = engine.last_stats
    messages = [
        *HELLO,
        {"role": "assistant", "content": turn1},
        {"role": "user", "content": "Tell me a story."},
    ]
    count = counter()
    cached = chat(engine, messages, max_new_tokens=12, **GREEDY)
    stats = engine.last_stats
    assert count.calls[0] == stats.prompt_eval_tokens, (
        "the prefill computes exactly what stats report"
    )
    new_since_turn1 = stats.prompt_tokens - (first.prompt_tokens + first.completion_tokens)
    # +1: a reply cut by max_new_tokens leaves its last sampled token out of the cache.
    assert stats.prompt_eval_tokens <= new_since_turn1 + 1 < stats.prompt_tokens
    assert all(n == 1 for n in count.calls[1:])

    engine._prefix.clear()  # the same ids, all computed again
    del count.calls[:]
    uncached = chat(engine, messages, max_new_tokens=12, **GREEDY)
    assert count.calls[0] == engine.last_stats.prompt_eval_tokens == stats.prompt_tokens
    assert cached == uncached


def test_the_sampled_reply_ids_are_reused_for_the_next_prompt(engine, tiny):
    engine._prefix.clear()
    reply = chat(engine, HELLO, max_new_tokens=10, **GREEDY)
    messages = [
        *HELLO,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "Go on."},
    ]
    ids = engine.encode(engine.render(messages))
    sampled = engine._prefix.ids  # prompt + reply ids as generated (the last one not cached)
    assert ids[: len(sampled)] == sampled
    fresh = HFEngine(tiny["hf"])
    try:  # a fresh engine tokenizes the same text on its own, and the tokens spell the same text
        assert fresh.tokenizer.decode(
            fresh.encode(fresh.render(messages))
        ) == engine.tokenizer.decode(ids)
    finally:
        fresh.close()


def test_a_shorter_prompt_crops_the_cache(engine, counter):
    engine._prefix.clear()
    long = [
        *HELLO,
        {"role": "assistant", "content": "fine"},
        {"role": "user", "content": "and you?"},
    ]
    chat(engine, long, max_new_tokens=4, **GREEDY)
    other = [{"role": "user", "content": "Hello, how are you doing?"}]
    count = counter()
    text = chat(engine, other, max_new_tokens=8, **GREEDY)
    stats = engine.last_stats
    assert 0 < stats.prompt_eval_tokens < stats.prompt_tokens
    assert count.calls[0] == stats.prompt_eval_tokens
    engine._prefix.clear()
    assert chat(engine, other, max_new_tokens=8, **GREEDY) == text


# --- closing, loader, CLI ----------------------------------------------------------------------


def test_close_frees_the_model(tiny_llama):
    engine = HFEngine(tiny_llama["hf"])
    chat(engine, HELLO, max_new_tokens=3)
    model_ref = weakref.ref(engine.base_model)
    engine.close()
    gc.collect()
    assert model_ref() is None
    with pytest.raises(CosplayError, match="closed"):
        chat(engine, HELLO, max_new_tokens=3)
    engine.close()  # twice is fine


def test_loader_picks_this_engine_for_a_directory(tiny_llama):
    from engines.loader import ModelSpec, load_engine

    for engine_choice in ("auto", "gpu"):
        engine = load_engine(
            ModelSpec(model=str(tiny_llama["hf"]), engine=engine_choice, template="vicuna")
        )
        try:
            assert type(engine).__name__ == "HFEngine" and engine.template_name == "vicuna"
        finally:
            engine.close()


@pytest.mark.slow
def test_cli_ask_with_the_gpu_engine(tiny_llama, tmp_path):
    env = {**os.environ, "COSPLAY_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "ask",
            "--engine",
            "gpu",
            "--model",
            str(tiny_llama["hf"]),
            "--max-tokens",
            "5",
            "hi",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=os.getcwd(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "Traceback" not in result.stderr


# --- GPU only ---------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_load_picks_a_half_dtype_and_the_cache_still_matches(tiny_llama, cuda):
    engine = HFEngine(tiny_llama["hf"])
    try:
        facts = engine.describe()
        assert facts["device"] == "cuda" and facts["dtype"] in ("bfloat16", "float16")
        turn1 = chat(engine, HELLO, max_new_tokens=8, **GREEDY)
        messages = [
            *HELLO,
            {"role": "assistant", "content": turn1},
            {"role": "user", "content": "more"},
        ]
        cached = chat(engine, messages, max_new_tokens=8, **GREEDY)
        assert engine.last_stats.prompt_eval_tokens < engine.last_stats.prompt_tokens
        engine._prefix.clear()
        assert chat(engine, messages, max_new_tokens=8, **GREEDY) == cached
    finally:
        engine.close()
