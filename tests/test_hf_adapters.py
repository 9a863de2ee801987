"""PEFT persona adapters on the GPU engine (run on CPU): several loaded, switched without a
reload, base logits restored exactly, the prefix cache dropped on a switch, and the
refusals — pickle files, adapters made for another base model, non-LoRA adapters.

Adapters are built here with `init_lora_weights=False` (random, non-identity B) and
saved into temporary directories; nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import warnings

import pytest

from engines.base import AdapterError, GenerationParams
from tests.hf_support import HFEngine, needs

# torch & co. are imported inside fixtures and tests, never while collecting the suite.
pytestmark = needs("torch", "transformers", "peft")


HELLO = [{"role": "user", "content": "Hello, how are you today?"}]
GREEDY = dict(do_sample=False, repetition_penalty=1.0, max_new_tokens=10)


def save_adapter(model, directory, seed, *, safe=True, targets=("q_proj", "v_proj")):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    with warnings.catch_warnings():  # PEFT 0.21 calls a method transformers 5 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(directory, safe_serialization=safe)
    return directory


@pytest.fixture(scope="module")
def adapters(tiny_llama, tmp_path_factory):
    from transformers import AutoModelForCausalLM, GPTNeoXConfig, LlamaConfig

    root = tmp_path_factory.mktemp("adapters")
    hf = tiny_llama["hf"]

    def fresh():
        return AutoModelForCausalLM.from_pretrained(hf)

    small = LlamaConfig(
        vocab_size=400,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    neox = GPTNeoXConfig(
        vocab_size=400,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
    )
    return {
        "a": save_adapter(fresh(), root / "persona-a", 1),
        "b": save_adapter(
            fresh(), root / "persona.b", 2, targets=("q_proj", "v_proj", "down_proj")
        ),
        "pickle": save_adapter(fresh(), root / "pickled", 3, safe=False),
        "narrow": save_adapter(AutoModelForCausalLM.from_config(small), root / "narrow", 4),
        "neox": save_adapter(
            AutoModelForCausalLM.from_config(neox), root / "neox", 5, targets=("query_key_value",)
        ),
    }


@pytest.fixture
def engine(tiny_llama):
    engine = HFEngine(tiny_llama["hf"])
    yield engine
    engine.close()


def chat(engine, messages, **params):
    return "".join(engine.stream_chat(messages, GenerationParams(**params), threading.Event()))


def test_two_adapters_change_the_logits_and_disabling_restores_the_base_exactly(
    engine, adapters, torch
):
    base = engine.next_token_logits(HELLO)
    engine.load_adapter("a", adapters["a"])
    engine.load_adapter("b.persona", adapters["b"])  # a name PEFT could not take as is
    assert engine.adapters == ["a", "b.persona"]
    assert torch.equal(engine.next_token_logits(HELLO), base), "loading activates nothing"
    engine.set_adapter("a")
    logits_a = engine.next_token_logits(HELLO)
    engine.set_adapter("b.persona")
    logits_b = engine.next_token_logits(HELLO)
    assert not torch.allclose(logits_a, base, atol=1e-3)
    assert not torch.allclose(logits_b, logits_a, atol=1e-3)
    engine.set_adapter(None)
    assert torch.equal(engine.next_token_logits(HELLO), base)
    engine.set_adapter("a")
    assert torch.equal(engine.next_token_logits(HELLO), logits_a)
    assert engine.describe()["adapter"] == "a"
    for param in engine.model.parameters():
        assert not param.requires_grad, "inference_mode=True keeps adapters frozen"


def test_switching_does_not_reload_the_base_model(tiny_llama, engine, adapters):
    base = engine.base_model
    embedding = base.get_input_embeddings().weight.data_ptr()
    engine.load_adapter("a", adapters["a"])
    engine.load_adapter("b", adapters["b"])
    assert engine.model.get_base_model() is base

    started = time.perf_counter()
    reloaded = HFEngine(tiny_llama["hf"])
    reload_s = time.perf_counter() - started
    reloaded.close()

    switches = []
    for name in ["a", "b", None, "b", "a", None] * 3:
        started = time.perf_counter()
        engine.set_adapter(name)
        switches.append(time.perf_counter() - started)
    assert engine.base_model is base and engine.model.get_base_model() is base
    assert base.get_input_embeddings().weight.data_ptr() == embedding
    assert min(switches) * 10 < reload_s, (min(switches), reload_s)


def test_switching_drops_the_prefix_cache_and_matches_a_fresh_engine(tiny_llama, engine, adapters):
    engine.load_adapter("a", adapters["a"])
    engine.load_adapter("b", adapters["b"])
    engine.set_adapter("a")
    chat(engine, HELLO, **GREEDY)
    chat(engine, HELLO, **GREEDY)
    assert engine.last_stats.prompt_eval_tokens == 1, "same adapter: the cache hits"
    engine.set_adapter("b")
    with_b = chat(engine, HELLO, **GREEDY)
    assert engine.last_stats.prompt_eval_tokens == engine.last_stats.prompt_tokens
    engine.set_adapter(None)
    base_text = chat(engine, HELLO, **GREEDY)
    assert engine.last_stats.prompt_eval_tokens == engine.last_stats.prompt_tokens

    fresh = HFEngine(tiny_llama["hf"], adapters={"b": str(adapters["b"])})
    try:
        assert chat(fresh, HELLO, **GREEDY) == base_text, "loaded but not active: the base model"
        fresh.set_adapter("b")
        assert chat(fresh, HELLO, **GREEDY) == with_b
    finally:
        fresh.close()
    assert with_b != base_text


def test_a_pickle_adapter_is_refused_unless_allowed(engine, adapters):
    with pytest.raises(AdapterError, match=r"'old'.*pickle.*safetensors"):
        engine.load_adapter("old", adapters["pickle"])
    assert engine.model is engine.base_model, "nothing was attached"
    engine.load_adapter("old", adapters["pickle"], allow_pickle=True)
    engine.set_adapter("old")
    assert engine.describe()["adapter"] == "old"


def test_an_adapter_for_a_narrower_model_is_refused_before_touching_the_base(
    engine, adapters, torch
):
    before = engine.next_token_logits(HELLO)
    with pytest.raises(AdapterError) as caught:
        engine.load_adapter("narrow", adapters["narrow"])
    message = str(caught.value)
    assert "'narrow'" in message and "does not fit the base model hf" in message
    assert "takes 64 inputs but the adapter expects 32" in message
    assert engine.model is engine.base_model
    assert not any("lora" in name for name, _ in engine.base_model.named_modules())
    assert torch.equal(engine.next_token_logits(HELLO), before)


def test_an_adapter_for_another_architecture_is_refused(engine, adapters):
    engine.load_adapter("a", adapters["a"])
    with pytest.raises(AdapterError, match=r"'neox'.*does not fit the base model hf.*has no layer"):
        engine.load_adapter("neox", adapters["neox"])
    assert engine.adapters == ["a"]


def test_adapter_paths_and_kinds_are_checked(engine, adapters, tmp_path):
    with pytest.raises(AdapterError, match="does not exist"):
        engine.load_adapter("x", tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        engine.load_adapter("x", empty)
    prefix = tmp_path / "prefix"
    shutil.copytree(adapters["a"], prefix)
    config = json.loads((prefix / "adapter_config.json").read_text())
    (prefix / "adapter_config.json").write_text(
        json.dumps({**config, "peft_type": "PREFIX_TUNING"})
    )
    with pytest.raises(AdapterError, match="LoRA adapters only"):
        engine.load_adapter("x", prefix)
    with pytest.raises(AdapterError, match="No adapter named 'ghost'"):
        engine.set_adapter("ghost")
    engine.load_adapter("a", adapters["a"])
    engine.load_adapter("a", adapters["a"])  # the same again is fine
    with pytest.raises(AdapterError, match="already loaded"):
        engine.load_adapter("a", adapters["b"])


def test_an_adapter_from_the_hub_cache(tiny_llama, adapters, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    commit = "c" * 40
    repo = tmp_path / "cache" / "models--someone--persona"
    shutil.copytree(adapters["a"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    engine = HFEngine(tiny_llama["hf"], cache_dir=tmp_path / "cache")
    try:
        engine.load_adapter("hub", "someone/persona")
        with pytest.raises(AdapterError, match="not in the Hugging Face cache"):
            engine.load_adapter("other", "someone/not-downloaded")
    finally:
        engine.close()


def test_close_frees_a_model_with_adapters(tiny_llama, adapters):
    import gc
    import weakref

    engine = HFEngine(tiny_llama["hf"], adapters={"a": str(adapters["a"])})
    engine.set_adapter("a")
    chat(engine, HELLO, **GREEDY)
    ref = weakref.ref(engine.base_model)
    engine.close()
    gc.collect()
    assert ref() is None


@pytest.mark.gpu
def test_adapters_on_cuda_in_4bit(tiny_llama, adapters, cuda, torch):
    engine = HFEngine(tiny_llama["hf"], load_4bit=True)
    try:
        assert engine.describe()["device"] == "cuda"
        base = engine.next_token_logits(HELLO)
        engine.load_adapter("a", adapters["a"])
        engine.set_adapter("a")
        assert not torch.allclose(engine.next_token_logits(HELLO), base, atol=1e-3)
        engine.set_adapter(None)
        assert torch.equal(engine.next_token_logits(HELLO), base)
    finally:
        engine.close()
