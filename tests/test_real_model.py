"""The CPU engine on a real model (SmolLM2-135M-Instruct, see tests/real_model.py): every
quantization chats, the model's own template renders as llama-cpp-python renders it, no
template token reaches a saved reply, and the KV cache is reused turn after turn, after the
history overflows and after a restart."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from engines.base import GenerationParams
from engines.llamacpp import LlamaCppEngine
from sessions.models import Role
from sessions.store import Store
from sessions.turns import run_reply

QUESTION = "What is the capital of France?"
GREEDY = GenerationParams(temperature=0.0, do_sample=False, max_new_tokens=24, seed=0)


def ask(model, home, *extra, text=QUESTION):
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--home", str(home), "ask", "--model", str(model),
         "--temperature", "0", "--max-tokens", "48", *extra, text],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


@pytest.mark.parametrize("quant", ["q4_1", "q8_0", "q4_0", "q4_k_m", "f16"])
@pytest.mark.slow
def test_every_quantization_answers_greedily_in_a_subprocess(smollm2, tmp_path, quant):
    done = ask(smollm2[quant], tmp_path / "home", "--new")
    assert done.returncode == 0, done.stderr[-3000:]  # a segfault is -11 here, not a dead pytest
    assert "Paris" in done.stdout
    # llama.cpp's own log never reaches the terminal: only our two status lines
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("Loading ") and lines[-1].startswith("(session ")
    assert len(lines) == 2, done.stderr


BUFFERS = textwrap.dedent(
    """
    import json, logging, sys
    from engines import llamacpp_setup
    lines = []
    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
    logger = logging.getLogger("cosplay.llama_cpp")
    logger.addHandler(Collect()); logger.setLevel(logging.DEBUG)
    llamacpp_setup.prepare()
    before = llamacpp_setup.remove_extra_buffer_type(sys.argv[2]) if sys.argv[2] else []
    from engines.base import GenerationParams
    from engines.llamacpp import LlamaCppEngine
    import threading
    engine = LlamaCppEngine(sys.argv[1], n_ctx=256, n_threads=2)
    reply = "".join(engine.stream_chat([{"role": "user", "content": "What is the capital of France?"}],
                    GenerationParams(temperature=0, do_sample=False, max_new_tokens=16), threading.Event()))
    buffers = [line.split(":")[1].split()[0] for line in lines if "model buffer size" in line]
    print(json.dumps({"before": before, "buffers": buffers, "reply": reply}))
    """
)


def buffers_used(model, remove=""):
    done = subprocess.run(
        [sys.executable, "-c", BUFFERS, str(model), remove],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_taking_a_buffer_type_out_changes_where_weights_go_and_the_model_still_answers(smollm2):
    """The mechanism that takes AMX out, shown on a buffer type every x86 build has: with
    CPU_REPACK in the list Q4_0 weights are repacked; taken out, they stay in plain CPU
    buffers. (This machine has no AMX; on one that has, `prepare` takes "AMX" out the same way.)"""
    normal = buffers_used(smollm2["q4_0"])
    assert "CPU_REPACK" in normal["buffers"] and "AMX" not in normal["buffers"]
    assert "Paris" in normal["reply"]
    plain = buffers_used(smollm2["q4_0"], remove="CPU_REPACK")
    assert "CPU_REPACK" in plain["before"]
    assert "CPU_REPACK" not in plain["buffers"]
    assert "Paris" in plain["reply"]  # other kernels, other rounding: the words may differ later


# --- in-process: the F16 file (no quantized matmul kernels; the quantized ones are above) ---


@pytest.fixture(scope="module")
def engine(smollm2):
    engine = LlamaCppEngine(smollm2["f16"], n_ctx=1024, n_threads=2)
    yield engine
    engine.close()


def chat(engine, messages, params=GREEDY, cancel=None):
    return "".join(engine.stream_chat(messages, params, cancel or threading.Event()))


CONVERSATIONS = [
    [{"role": "user", "content": QUESTION}],
    [
        {"role": "system", "content": "你是诸葛亮，字孔明。"},
        {"role": "user", "content": "先生何往？"},
        {"role": "assistant", "content": "亮欲往东吴，说孙权以拒曹操。"},
        {"role": "user", "content": "What about Germany?"},
    ],
    [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.slow
def test_the_models_own_template_renders_as_llama_cpp_python_renders_it(engine, messages):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from engines.ggufinfo import read_gguf_info

    template = read_gguf_info(engine.model_path).chat_template
    reference = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|im_start|>")
    assert engine.template_name == "model"
    assert engine.render(messages) == reference(messages=messages).prompt


@pytest.mark.slow
def test_greedy_answer_and_no_template_token_in_saved_replies(engine, tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session("real")
    questions = [QUESTION, "What about Germany?", "Say goodbye in one word."]
    history, parent = [], None
    for index, question in enumerate(questions):
        user = store.add_message(session.id, Role.USER, question, parent_id=parent)
        history.append({"role": "user", "content": question})
        params = GREEDY if index < 2 else GenerationParams(temperature=1.0, seed=7)
        reply = run_reply(
            store, engine, session_id=session.id, parent_id=user.id, prompt=list(history),
            params=params, cancel=threading.Event(),
        )  # fmt: skip
        for token in ("<|im_end|>", "<|im_start|>", "<|endoftext|>"):
            assert token not in reply.content
        assert reply.content.strip()
        history.append({"role": "assistant", "content": reply.content})
        parent = reply.id
    assert "Paris" in history[1]["content"] and "Berlin" in history[3]["content"]
    store.close()


@pytest.mark.slow
def test_each_turn_evaluates_only_its_new_tokens(engine, evaluated):
    engine._llm.reset()
    engine._cache.clear()
    messages = [{"role": "system", "content": "你是诸葛亮，字孔明。Answer briefly."}]
    cached = 0  # prompt + reply tokens of the previous turn
    for turn, question in enumerate(["先生何往？", "Why?", "曹操何如人也？", "Thank you."]):
        messages.append({"role": "user", "content": question})
        evaluated.clear()
        reply = chat(engine, messages)
        stats = engine.last_stats
        # the prompt but its last token, then that token alone (see llamacpp_decode.evaluate_all_but_last)
        split = stats.prompt_eval_tokens > 1
        assert evaluated[0] + (evaluated[1] if split else 0) == stats.prompt_eval_tokens
        new_tokens = stats.prompt_tokens - cached
        if turn:
            # +1: the last sampled token was never evaluated
            assert stats.prompt_eval_tokens <= new_tokens + 1, (turn, stats)
        cached = stats.prompt_tokens + stats.completion_tokens
        messages.append({"role": "assistant", "content": reply})


def rounds(n):
    out = []
    for i in range(n):
        out += [
            {"role": "user", "content": f"Question {i}: name a city in country number {i}."},
            {"role": "assistant", "content": f"City number {i} is a fine place with a river."},
        ]
    return out


@pytest.mark.slow
def test_dropping_the_oldest_rounds_shifts_the_cache_instead_of_reevaluating(engine, evaluated):
    system = [{"role": "system", "content": "You are a geography tutor. 简短回答。"}]
    engine._llm.reset()
    engine._cache.clear()
    history = rounds(8) + [{"role": "user", "content": "And the capital of France?"}]
    reply = chat(engine, system + history)
    full = system + history + [{"role": "assistant", "content": reply}]
    # The next turn drops the four oldest rounds (sessions.context drops in blocks).
    truncated = system + full[1 + 8 :] + [{"role": "user", "content": "And Germany?"}]
    evaluated.clear()
    shifted_reply = chat(engine, truncated)
    stats = engine.last_stats
    new_text_tokens = len(engine._llm.tokenize(b"<|im_end|>\n<|im_start|>user\nAnd Germany?"
                                               b"<|im_end|>\n<|im_start|>assistant\n", add_bos=False, special=True))  # fmt: skip
    assert stats.prompt_eval_tokens <= new_text_tokens + 2, stats
    assert stats.prompt_eval_tokens < 0.5 * stats.prompt_tokens
    # Quality: the same greedy reply as a fresh evaluation of the truncated prompt.
    engine._llm.reset()
    engine._cache.clear()
    assert chat(engine, truncated) == shifted_reply


@pytest.mark.slow
def test_the_kv_cache_survives_a_restart(smollm2, tmp_path):
    state = tmp_path / "kv" / "1.kvstate"
    messages = [{"role": "system", "content": "You are a geography tutor."}] + rounds(6)
    messages.append({"role": "user", "content": QUESTION})
    first = LlamaCppEngine(smollm2["f16"], n_ctx=1024, n_threads=2)
    reply = chat(first, messages)
    size = first.save_state(state)
    tokens_cached = len(first._cache.tokens)
    first.close()
    assert size > 0 and state.is_file()

    messages += [
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "And Germany?"},
    ]
    restarted = LlamaCppEngine(smollm2["f16"], n_ctx=1024, n_threads=2)
    restarted.bind_state(state)
    after_restart = chat(restarted, messages)
    stats = restarted.last_stats
    new_tokens = stats.prompt_tokens - tokens_cached
    assert stats.prompt_eval_tokens <= 1.1 * new_tokens + 1, stats
    restarted.close()

    cold = LlamaCppEngine(smollm2["f16"], n_ctx=1024, n_threads=2)
    assert chat(cold, messages) == after_restart  # same greedy reply as re-reading everything
    assert cold.last_stats.prompt_eval_tokens == cold.last_stats.prompt_tokens
    cold.close()


@pytest.mark.slow
def test_a_state_file_for_other_settings_or_a_damaged_one_is_ignored(smollm2, tmp_path, caplog):
    state = tmp_path / "1.kvstate"
    messages = [{"role": "user", "content": QUESTION}]
    first = LlamaCppEngine(smollm2["f16"], n_ctx=1024, n_threads=2)
    reply = chat(first, messages)
    first.save_state(state)
    first.close()
    messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "Why?"}]

    other = LlamaCppEngine(smollm2["f16"], n_ctx=512, n_threads=2)  # another context size
    other.bind_state(state)
    chat(other, messages)
    assert other.last_stats.prompt_eval_tokens == other.last_stats.prompt_tokens
    assert state.is_file()  # kept: it is still good for the settings it was made with

    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2] + b"\x00" * 64)  # damaged blob, header intact
    other.close()
    same = LlamaCppEngine(smollm2["f16"], n_ctx=1024, n_threads=2)
    same.bind_state(state)
    with caplog.at_level(logging.DEBUG, logger="cosplay.llama_cpp"):
        text = chat(same, messages)
    assert text.strip() and same.last_stats.finish_reason in ("stop", "length")
    assert not state.exists()  # discarded
    same.close()


SWEEP = textwrap.dedent(
    """
    import ctypes, sys, threading, llama_cpp
    source, target, ftype = sys.argv[1], sys.argv[2], int(sys.argv[3])
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize = ftype, True
    if llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)):
        print("CANNOT-QUANTIZE"); sys.exit(0)   # e.g. types that need an importance matrix
    from engines.base import GenerationParams
    from engines.llamacpp import LlamaCppEngine
    engine = LlamaCppEngine(target, n_ctx=256, n_threads=2)
    list(engine.stream_chat([{"role": "user", "content": "hi"}],
         GenerationParams(do_sample=False, temperature=0, max_new_tokens=4), threading.Event()))
    print("OK", engine.last_stats.completion_tokens)
    """
)
# Every llama_ftype quantize can make here, including those whose kernels AMX and REPACK
# would take (Q4_0/Q4_1/Q8_0/Q4_K/Q5_K/Q6_K/IQ4_XS/IQ4_NL).
SWEEP_TYPES = {"Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_S": 14, "Q5_K_M": 17,
               "Q6_K": 18, "IQ4_NL": 25, "IQ4_XS": 30, "BF16": 32, "TQ2_0": 37}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", SWEEP_TYPES)
def test_no_quantization_type_crashes(smollm2, tmp_path, name):
    done = subprocess.run(
        [sys.executable, "-c", SWEEP, str(smollm2["f16"]), str(tmp_path / f"{name}.gguf"),
         str(SWEEP_TYPES[name])],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}"
    assert done.stdout.split()[-2:] == ["OK", "4"] or "CANNOT-QUANTIZE" in done.stdout


@pytest.mark.slow
def test_cancel_stops_a_long_prompt_evaluation_at_once(engine):
    import time

    engine._llm.reset()
    engine._cache.clear()
    long = [{"role": "user", "content": "word " * 900 + QUESTION}]  # seconds to evaluate here
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    assert chat(engine, long, GenerationParams(max_new_tokens=8), cancel=cancel) == ""
    assert time.monotonic() - started < 1.0
    assert engine.last_stats.finish_reason == "cancelled"
    assert "Paris" in chat(engine, [{"role": "user", "content": QUESTION}])  # still sound
