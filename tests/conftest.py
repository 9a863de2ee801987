"""Shared fixtures: tiny random models built once per test session, a private data home, torch
held to the CI's two cores, and `wait_until` for pilot tests (a condition, not a sleep)."""

from __future__ import annotations

import os

import pytest

from tests.tiny_models import TinyConfig, build


@pytest.fixture(autouse=True)
def cosplay_home(tmp_path, monkeypatch):
    """Every test gets its own data directory and cache dir (engines/gguf_checked.py); nothing
    touches the real user's files."""
    home = tmp_path / "home"
    monkeypatch.setenv("COSPLAY_HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("COSPLAY_LANG", "en")  # tests read English whatever the locale
    return home


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """{'gguf': Path, 'hf': Path}: the same tiny random Llama in both formats."""
    return build(tmp_path_factory.mktemp("tiny_llama"), TinyConfig(arch="llama"))


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory):
    """{'gguf': Path, 'hf': Path}: the same tiny random Qwen2 in both formats."""
    return build(tmp_path_factory.mktemp("tiny_qwen2"), TinyConfig(arch="qwen2", seed=1))


@pytest.fixture(scope="session")
def tiny_gguf(tiny_llama):
    return tiny_llama["gguf"]


@pytest.fixture(scope="module")
def torch():
    import torch

    return torch


@pytest.fixture
def cuda(torch):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.fixture
def cpu_only(torch):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only behaviour")


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The real SmolLM2-135M-Instruct GGUF in several quantizations: {'q4_1', 'f16', 'q8_0',
    'q4_0', 'q4_k_m'} → Path (see tests/real_model.py)."""
    from tests.real_model import build_all

    return build_all(tmp_path_factory.mktemp("smollm2"))


@pytest.fixture
def evaluated(engine, monkeypatch):
    """The sizes of the batches llama.cpp really evaluates for the module's CPU `engine`
    (the prompt's first, then one per sampled token), by wrapping Llama.eval."""
    counts: list[int] = []
    original = engine._llm.eval

    def counting_eval(tokens):
        counts.append(len(tokens))
        return original(tokens)

    monkeypatch.setattr(engine._llm, "eval", counting_eval)
    return counts


def pytest_configure(config):
    """torch's thread pool sized like CI's machine, so timings and load here match CI's."""
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))


async def wait_until(pilot, predicate, timeout: float = 10.0) -> None:
    """Let the app run until `predicate()` holds; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached in time")
