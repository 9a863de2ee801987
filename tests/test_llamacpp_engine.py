"""The CPU engine on the tiny random GGUF: streaming, cancel, prefix reuse, errors."""

import threading
import time

import pytest

from engines.base import ContextOverflowError, CosplayError, GenerationParams, ModelLoadError
from engines.llamacpp import LlamaCppEngine


@pytest.fixture(scope="module")
def engine(tiny_gguf):
    engine = LlamaCppEngine(tiny_gguf, n_ctx=512, n_threads=2)
    yield engine
    engine.close()


def chat(engine, messages, **params):
    return "".join(engine.stream_chat(messages, GenerationParams(**params), threading.Event()))


def test_loads_with_the_models_own_template(engine):
    assert engine.template_name == "model"
    assert engine.context_length == 512
    assert engine.describe()["engine"] == "llama.cpp"


def test_streams_several_pieces_and_records_stats(engine):
    pieces = list(
        engine.stream_chat(
            [{"role": "user", "content": "你好"}],
            GenerationParams(max_new_tokens=24, seed=1, stop=[]),
            threading.Event(),
        )
    )
    assert len(pieces) > 3
    stats = engine.last_stats
    assert stats.completion_tokens == 24 and stats.finish_reason == "length"
    assert stats.prompt_tokens == engine.count_tokens([{"role": "user", "content": "你好"}])
    assert stats.seed == 1 and stats.total_s >= stats.ttft_s > 0


def test_same_seed_same_text_different_seed_differs(engine):
    messages = [{"role": "user", "content": "tell me a story"}]
    a = chat(engine, messages, max_new_tokens=30, seed=11, temperature=1.0)
    engine._llm.reset()
    b = chat(engine, messages, max_new_tokens=30, seed=11, temperature=1.0)
    c = chat(engine, messages, max_new_tokens=30, seed=12, temperature=1.0)
    assert a == b
    assert a != c


def test_cancel_from_another_thread_stops_within_one_token(engine):
    cancel = threading.Event()
    received = []
    stream = engine.stream_chat(
        [{"role": "user", "content": "hi"}], GenerationParams(max_new_tokens=400, seed=3), cancel
    )
    for piece in stream:
        received.append(piece)
        if len(received) == 5:
            threading.Thread(target=cancel.set).start()
            time.sleep(0.05)
    assert engine.last_stats.finish_reason == "cancelled"
    # at most one token after the cancel was seen
    assert engine.last_stats.completion_tokens <= len(received) + 2 < 400


def test_turn_n_evaluates_only_the_new_tokens(engine, evaluated):
    engine._llm.reset()
    messages = [
        {"role": "system", "content": "你是诸葛亮。"},
        {"role": "user", "content": "先生何往？"},
    ]
    cached_before = 0  # tokens in the KV cache after the previous turn
    for turn in range(4):
        evaluated.clear()
        reply = chat(engine, messages, max_new_tokens=12, seed=turn)
        stats = engine.last_stats
        # The prompt but its last token, then the last token alone (so a same-seed regenerate
        # matches: tests/test_reproducible.py), then one eval per sampled token.
        split = stats.prompt_eval_tokens > 1
        prompt_evaluated = evaluated[0] + (evaluated[1] if split else 0)
        assert not split or evaluated[1] == 1
        assert prompt_evaluated == stats.prompt_eval_tokens
        if turn == 0:
            assert prompt_evaluated == stats.prompt_tokens
        else:
            # previous prompt + previous reply are cached; only the new part (+1 for the last
            # sampled token, which llama.cpp never evaluated) is computed
            assert prompt_evaluated <= stats.prompt_tokens - cached_before + 1
            assert prompt_evaluated < stats.prompt_tokens / 2
        cached_before = stats.prompt_tokens + stats.completion_tokens
        messages += [
            {"role": "assistant", "content": reply},
            {"role": "user", "content": f"第{turn}问"},
        ]


def test_stop_strings_cut_the_reply(engine):
    engine._llm.reset()
    messages = [{"role": "user", "content": "hi"}]
    full = chat(engine, messages, max_new_tokens=40, seed=5, temperature=0.0, do_sample=False)
    assert len(full) > 4
    stop = full[2:4]
    engine._llm.reset()
    cut = chat(engine, messages, max_new_tokens=40, seed=5, do_sample=False, stop=[stop])
    assert cut == full[: full.index(stop)]
    assert stop not in cut


def test_prompt_longer_than_the_context_is_a_clear_error(engine):
    with pytest.raises(ContextOverflowError, match="context holds 512"):
        chat(engine, [{"role": "user", "content": "word " * 600}])


def test_beams_are_refused_on_the_cpu_engine(engine):
    with pytest.raises(CosplayError, match="GPU engine only"):
        chat(engine, [{"role": "user", "content": "hi"}], num_beams=2)


def test_missing_non_gguf_and_truncated_files(tmp_path, tiny_gguf):
    with pytest.raises(ModelLoadError, match="does not exist"):
        LlamaCppEngine(tmp_path / "nope.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        LlamaCppEngine(text)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        LlamaCppEngine(truncated)
    with pytest.raises(ModelLoadError, match="directory"):
        LlamaCppEngine(tmp_path)


def test_prompt_evaluation_uses_the_threads_asked_for(tiny_gguf):
    """n_threads_batch follows --threads (llama-cpp-python would use every CPU), and without
    --threads both take the default of threads_for."""
    import os

    import llama_cpp

    from engines.llamacpp import threads_for

    for asked, expected in ((1, 1), (None, max(1, (os.cpu_count() or 2) // 2))):
        engine = LlamaCppEngine(tiny_gguf, n_ctx=64, n_threads=asked)
        try:
            assert threads_for(asked) == engine.n_threads == expected
            assert llama_cpp.llama_n_threads(engine._llm.ctx) == expected
            assert llama_cpp.llama_n_threads_batch(engine._llm.ctx) == expected
            assert engine.describe()["threads"] == str(expected)
        finally:
            engine.close()
