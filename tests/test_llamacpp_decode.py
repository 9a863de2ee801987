"""engines/llamacpp_decode.py and the CPU engine's own errors: a cancelled evaluation ends the
reply quietly, a failed one and a sampler llama.cpp cannot make are one sentence (English or
简体中文), never a bare RuntimeError. The decode loop itself runs on the real model in
tests/test_real_model.py, tests/test_llamacpp_engine.py and tests/test_samplers.py."""

from __future__ import annotations

import threading

import pytest

from engines.errors import GenerationError
from engines.i18n import set_language
from engines.llamacpp_decode import tokens_until_cancelled


@pytest.fixture
def chinese():
    set_language("zh")
    yield
    set_language("en")


def failing(after: list[int]):
    yield from after
    raise RuntimeError("llama_decode returned -3")


def test_an_aborted_evaluation_just_ends_the_tokens():
    cancel = threading.Event()
    tokens = []
    for token in tokens_until_cancelled(failing([5, 6]), cancel):
        tokens.append(token)
        if token == 6:
            cancel.set()  # as the abort callback sees it: llama_decode then returns 2
    assert tokens == [5, 6]


def test_a_failed_evaluation_is_one_sentence_naming_the_fix():
    with pytest.raises(GenerationError) as caught:
        list(tokens_until_cancelled(failing([1]), threading.Event()))
    assert str(caught.value) == (
        "llama.cpp failed while writing the reply (llama_decode returned -3); retry, and if it "
        "fails again load the model with a smaller --n-ctx."
    )


def test_a_failed_evaluation_in_chinese(chinese):
    with pytest.raises(
        GenerationError, match=r"^llama\.cpp 在写回复时出错（llama_decode returned -3）"
    ):
        list(tokens_until_cancelled(failing([]), threading.Event()))


def test_a_sampler_llama_cpp_cannot_make_is_a_generation_error(chinese):
    from engines.llamacpp_sampling import SamplerChain

    chain = SamplerChain()
    try:
        with pytest.raises(GenerationError, match="无法用这些设置创建 top-k 采样器"):
            chain.add("top-k", None)  # what llama.cpp's init returns when it cannot make one
        set_language("en")
        with pytest.raises(GenerationError, match="could not make the xtc sampler from these"):
            chain.add("xtc", None)
        assert chain.names == []  # nothing half-added
    finally:
        chain.close()
