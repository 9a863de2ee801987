"""A persona's adapter and template reach the engine: loaded on demand, once, in the engine's form."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from engines.base import AdapterError, GenerationParams
from engines.fake import FakeEngine
from sessions.cards import CharacterCard, CosplayExtension
from sessions.runtime import PersonaRuntime, ensure_adapter, use_persona


def persona(name: str = "孔明", **cosplay) -> CharacterCard:
    return CharacterCard.new(name, description="丞相").with_cosplay(CosplayExtension(**cosplay))


def no_cuda() -> bool:
    return False


def GGUFEngine() -> FakeEngine:  # noqa: N802 - reads like the engine it stands for
    """A fake engine that takes GGUF LoRAs, like the CPU engine."""
    return FakeEngine(adapter_format="gguf")


def PeftEngine() -> FakeEngine:  # noqa: N802
    """A fake engine that takes PEFT adapters, like the GPU engine."""
    return FakeEngine(adapter_format="peft")


def test_persona_adapter_and_template_then_back_to_the_defaults():
    engine = FakeEngine(template="chatml")
    engine.default_adapter = "house"
    card = persona(adapter="runs/kongming", template="cosplay")
    assert use_persona(engine, card) == "kongming"
    assert engine.adapter_sources == {"kongming": "runs/kongming"}
    assert (engine.active_adapter, engine.template_name, engine.speaker) == (
        "kongming",
        "cosplay",
        "孔明",
    )
    # A persona without adapter or template gets the engine's own (the first --adapter).
    assert use_persona(engine, persona("林黛玉")) == "house"
    assert (engine.template_name, engine.speaker) == ("chatml", "林黛玉")
    # No persona: the engine's defaults and no speaker name.
    assert use_persona(engine, None) == "house"
    assert (engine.template_name, engine.speaker) == ("chatml", "")


def test_an_adapter_is_loaded_once_and_same_named_dirs_do_not_collide(tmp_path):
    engine = FakeEngine()
    first, second = tmp_path / "zhuge" / "out", tmp_path / "caocao" / "out"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    assert ensure_adapter(engine, str(first), "out") == "out"
    assert ensure_adapter(engine, str(second), "out") == "out-2"
    # The same directory, spelled differently, is the adapter already loaded.
    assert ensure_adapter(engine, str(first / ".." / "out"), "out") == "out"
    assert len(engine.adapter_sources) == 2


def test_the_training_result_fills_what_the_card_leaves_out(tmp_path):
    adapter = tmp_path / "kongming"
    adapter.mkdir()
    result = {
        "template": "cosplay",
        "base": "/models/base-hf",
        "base_gguf": "/models/base.gguf",
        "gguf": str(adapter / "kongming.gguf"),
    }
    (adapter / "cosplay.json").write_text(json.dumps(result), encoding="utf-8")
    runtime = PersonaRuntime.of(persona(adapter=str(adapter)))
    assert (runtime.template, runtime.base, runtime.base_gguf) == (
        "cosplay",
        "/models/base-hf",
        "/models/base.gguf",
    )
    assert runtime.adapter_gguf == result["gguf"] and runtime.adapter_name == "kongming"
    # What the card says wins.
    runtime = PersonaRuntime.of(persona(adapter=str(adapter), template="chatml"))
    assert runtime.template == "chatml"


@pytest.mark.parametrize(
    ("fields", "cuda", "expected"),
    [
        ({"base": "hf", "base_gguf": "b.gguf"}, False, ("b.gguf", "cpu")),
        ({"base": "hf", "base_gguf": "b.gguf"}, True, ("hf", "gpu")),
        ({"base": "hf"}, False, ("hf", "gpu")),  # slow on the CPU, but it runs
        ({"base_gguf": "b.gguf"}, True, ("b.gguf", "cpu")),
        ({"base": "hf", "base_gguf": "b.gguf", "engine": "cpu"}, True, ("b.gguf", "cpu")),
        ({"base": "hf", "base_gguf": "b.gguf", "engine": "gpu"}, False, ("hf", "gpu")),
        ({}, True, None),  # nothing known: the caller falls back to the last model
    ],
)
def test_which_base_model_loads_for_a_persona(fields, cuda, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    chosen = PersonaRuntime.of(persona(adapter="a", **fields)).base_model(cuda=lambda: cuda)
    assert chosen == expected


def test_paths_from_another_machine_are_not_loaded(tmp_path):
    elsewhere = {"base": "/home/other/base-hf", "base_gguf": "/home/other/base.gguf"}
    assert PersonaRuntime.of(persona(adapter="a", **elsewhere)).base_model(cuda=no_cuda) is None
    hub = PersonaRuntime.of(persona(adapter="a", base="Qwen/Qwen2.5-0.5B-Instruct"))
    assert hub.base_model(cuda=no_cuda) == ("Qwen/Qwen2.5-0.5B-Instruct", "gpu")


def test_a_card_never_makes_cosplay_download_a_model(tmp_path, monkeypatch, capsys):
    """A card naming a Hub repo (engine gpu) must not start a download: the CLI refuses with
    the command that would download it, before any model loads."""
    from sessions.personas import PersonaStore
    from tui.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    home = tmp_path / "home"
    (home / "personas").mkdir(parents=True)
    card = persona(adapter="org/lora", base="org/some-model", engine="gpu")
    PersonaStore(home / "personas").save(card)

    def no_download(*args, **kwargs):
        raise AssertionError("a card started a download")

    monkeypatch.setattr("huggingface_hub.snapshot_download", no_download)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_download)
    code = main(["--home", str(home), "ask", "--persona", card.name, "hello"])
    err = capsys.readouterr().err
    assert code == 2
    assert "never downloads a model a card names: pass --model org/some-model" in err
    assert err.count("\n") == 1


def test_persona_engine_mistakes_are_one_sentence():
    with pytest.raises(AdapterError, match="has no base GGUF; pass --model BASE.gguf"):
        PersonaRuntime.of(persona(adapter="a", base="hf", engine="cpu")).base_model(cuda=no_cuda)
    with pytest.raises(
        AdapterError, match=r"its base GGUF, /gone/base.gguf, is not here; pass --model"
    ):
        PersonaRuntime.of(persona(base_gguf="/gone/base.gguf", engine="cpu")).base_model(
            cuda=no_cuda
        )
    with pytest.raises(AdapterError, match="asks for engine 'tpu'; set it to cpu, gpu"):
        PersonaRuntime.of(persona(engine="tpu"))


def test_each_engine_gets_the_adapter_form_it_takes(tmp_path):
    exported = tmp_path / "kongming.gguf"
    exported.write_bytes(b"GGUF")
    card = persona(adapter=str(tmp_path / "kongming"), adapter_gguf=str(exported))
    assert PersonaRuntime.of(card).adapter_for(GGUFEngine()) == str(exported)
    assert PersonaRuntime.of(card).adapter_for(PeftEngine()) == str(tmp_path / "kongming")

    only_gguf = persona(adapter=str(exported))
    assert PersonaRuntime.of(only_gguf).adapter_for(GGUFEngine()) == str(exported)
    with pytest.raises(AdapterError, match="only a GGUF adapter .* runs on the CPU engine"):
        PersonaRuntime.of(only_gguf).adapter_for(PeftEngine())

    missing = persona(adapter=str(tmp_path / "nowhere"))
    with pytest.raises(
        AdapterError, match="no GGUF LoRA for the CPU engine .* fix the persona's adapter path"
    ):
        PersonaRuntime.of(missing).adapter_for(GGUFEngine())


def test_the_cpu_engine_exports_and_loads_a_peft_adapter_on_first_use(tmp_path, tiny_llama):
    """A persona bound to a PEFT directory only: the CPU engine exports it once, loads it without
    reloading the model, and the persona's replies come from different logits than the base's."""
    from engines.llamacpp import LlamaCppEngine
    from tests.test_gguf_export import make_adapter

    adapter_dir = tmp_path / "kongming"
    make_adapter(tiny_llama["hf"], adapter_dir)
    card = persona(adapter=str(adapter_dir), template="cosplay")
    engine = LlamaCppEngine(tiny_llama["gguf"], n_ctx=256)
    try:
        llm = engine._llm
        messages = [{"role": "user", "content": "丞相何在？"}]
        assert use_persona(engine, card) == "kongming"
        exported = adapter_dir / "kongming.gguf"
        assert engine.adapter_sources == {"kongming": str(exported)}
        assert engine.template_name == "cosplay" and engine.render(messages).endswith("孔明曰：")
        with_adapter = next_token_logits(engine, messages)
        use_persona(engine, None)
        assert engine.active_adapter is None and engine.template_name != "cosplay"

        written = exported.stat().st_mtime_ns
        use_persona(engine, card)  # the second time: nothing exported or loaded again
        assert exported.stat().st_mtime_ns == written and len(engine.adapter_sources) == 1
        assert engine._llm is llm  # the model was never reloaded
        assert np.abs(next_token_logits(engine, messages) - with_adapter).max() < 1e-4
        engine.set_adapter(None)
        same_prompt_base = next_token_logits(engine, messages)
        assert np.abs(with_adapter - same_prompt_base).max() > 0.1  # the adapter changes logits
    finally:
        engine.close()


def test_a_persona_adapter_for_another_base_is_one_sentence(tmp_path, tiny_llama, tiny_qwen2):
    from engines.gguf_lora import export_gguf
    from engines.llamacpp import LlamaCppEngine
    from tests.test_gguf_export import make_adapter

    adapter_dir = tmp_path / "qwen-persona"
    make_adapter(tiny_qwen2["hf"], adapter_dir)
    export_gguf(adapter_dir, base=tiny_qwen2["gguf"])
    engine = LlamaCppEngine(tiny_llama["gguf"], n_ctx=256)
    try:
        with pytest.raises(AdapterError, match="must be a GGUF LoRA made for this base model"):
            use_persona(engine, persona(adapter=str(adapter_dir)))
        assert engine.active_adapter is None and not engine.adapter_sources
        reply = "".join(
            engine.stream_chat(
                [{"role": "user", "content": "hi"}],
                GenerationParams(max_new_tokens=3),
                threading.Event(),
            )
        )
        assert isinstance(reply, str)  # the engine still works after the refusal
    finally:
        engine.close()


def next_token_logits(engine, messages) -> np.ndarray:
    import llama_cpp

    llm = engine._llm
    llm.reset()
    llm.eval(engine._prompt_tokens(engine.render(messages)))
    row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).copy()
