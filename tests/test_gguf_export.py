"""PEFT → GGUF LoRA export: llama.cpp with the exported adapter computes what HF + PEFT computes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engines.gguf_lora import ExportError, export_gguf
from tests.hf_support import hf_logits, llama_cpp_logits
from tui.cli import main

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TEXT = "曹仁回城中，与众商议。曹洪曰：“目今失了彝陵，势已危急。” Hello, how are you today?"
TOLERANCE = 1e-3


def make_adapter(model_dir, out, *, seed=0, **lora):
    """A PEFT adapter with random (non-zero) A and B on every projection; returns the PEFT model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=lora.pop("r", 8),
        lora_alpha=lora.pop("lora_alpha", 16),
        target_modules=TARGETS,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
        **lora,
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # keep the adapter's effect large but the logits in a sane range
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.5)
    peft_model.save_pretrained(out)
    return peft_model


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama["hf"])


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("rslora", [False, True], ids=["lora", "rslora"])
def test_exported_adapter_matches_peft_logits(request, tmp_path, tokenizer, arch, rslora):
    model_files = request.getfixturevalue(f"tiny_{arch}")
    adapter_dir = tmp_path / "adapter"
    peft_model = make_adapter(model_files["hf"], adapter_dir, use_rslora=rslora, r=4, lora_alpha=8)
    ids = tokenizer(TEXT)["input_ids"]
    expected = hf_logits(peft_model, ids)
    with peft_model.disable_adapter():
        base = hf_logits(peft_model, ids)

    path = export_gguf(adapter_dir, base=model_files["gguf"])
    assert path == adapter_dir / "adapter.gguf"
    got = llama_cpp_logits(model_files["gguf"], ids, adapter=path)
    diff = float(np.abs(got - expected).max())
    effect = float(np.abs(expected - base).max())
    print(f"{arch} rslora={rslora}: max |Δlogit| {diff:.2e} (adapter effect {effect:.2f})")
    assert effect > 0.5  # the adapter really changes the output…
    assert diff < TOLERANCE  # …and llama.cpp computes the same change


def test_export_without_base_gguf_uses_the_hf_config(tmp_path, tiny_llama, tokenizer):
    adapter_dir = tmp_path / "persona"
    peft_model = make_adapter(tiny_llama["hf"], adapter_dir)
    path = export_gguf(adapter_dir)  # base_model_name_or_path points at the HF dir
    ids = tokenizer(TEXT)["input_ids"]
    got = llama_cpp_logits(tiny_llama["gguf"], ids, adapter=path)
    assert np.abs(got - hf_logits(peft_model, ids)).max() < TOLERANCE


def test_cpu_engine_switches_to_the_exported_adapter(tmp_path, tiny_llama, tokenizer):
    """LlamaCppEngine.load_adapter / set_adapter with our file (default f16 KV: looser bound)."""
    from engines.llamacpp import LlamaCppEngine

    adapter_dir = tmp_path / "kongming"
    peft_model = make_adapter(tiny_llama["hf"], adapter_dir)
    path = export_gguf(adapter_dir, base=tiny_llama["gguf"])
    ids = tokenizer(TEXT)["input_ids"]
    with_adapter = hf_logits(peft_model, ids)[-1]
    with peft_model.disable_adapter():
        without = hf_logits(peft_model, ids)[-1]

    engine = LlamaCppEngine(tiny_llama["gguf"], n_ctx=256, adapters={"kongming": str(path)})
    try:

        def last_logits():
            import llama_cpp

            engine._llm.reset()
            engine._llm.eval(ids)
            row = llama_cpp.llama_get_logits_ith(engine._llm.ctx, -1)
            return np.ctypeslib.as_array(row, shape=(engine._llm.n_vocab(),)).copy()

        assert np.abs(last_logits() - without).max() < 5e-2
        engine.set_adapter("kongming")
        assert np.abs(last_logits() - with_adapter).max() < 5e-2
        engine.set_adapter(None)
        assert np.abs(last_logits() - without).max() < 5e-2
    finally:
        engine.close()


@pytest.fixture()
def adapter_dir(tmp_path, tiny_llama):
    directory = tmp_path / "adapter"
    make_adapter(tiny_llama["hf"], directory)
    return directory


def _edit_config(directory, **changes):
    path = directory / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"rank_pattern": {"q_proj": 4}}, "per-module ranks"),
        ({"alpha_pattern": {"q_proj": 4}}, "per-module ranks or alphas"),
        ({"modules_to_save": ["lm_head"]}, "trains whole modules"),
        ({"bias": "all"}, "biases"),
        ({"peft_type": "IA3"}, "not LoRA"),
    ],
)
def test_unsupported_adapters_are_refused(adapter_dir, tiny_llama, changes, reason):
    _edit_config(adapter_dir, **changes)
    with pytest.raises(ExportError, match=reason) as err:
        export_gguf(adapter_dir, base=tiny_llama["gguf"])
    assert "GPU engine" in str(err.value)


def test_embedding_adapters_are_refused(adapter_dir, tiny_llama):
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    weights["base_model.model.model.embed_tokens.lora_embedding_A"] = np.zeros((8, 400), np.float32)
    save_file(weights, str(adapter_dir / "adapter_model.safetensors"))
    with pytest.raises(ExportError, match="embeddings"):
        export_gguf(adapter_dir, base=tiny_llama["gguf"])


def test_bad_inputs_are_clear_errors(tmp_path, adapter_dir, tiny_llama):
    with pytest.raises(ExportError, match="no adapter_config.json"):
        export_gguf(tmp_path)
    with pytest.raises(ExportError, match="does not exist"):
        export_gguf(adapter_dir, base=tmp_path / "missing.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(ExportError, match="not a readable GGUF"):
        export_gguf(adapter_dir, base=tmp_path / "junk.gguf")
    made = export_gguf(adapter_dir, base=tiny_llama["gguf"], out=tmp_path / "a.gguf")
    with pytest.raises(ExportError, match="itself a LoRA adapter"):
        export_gguf(adapter_dir, base=made)
    copy = tmp_path / "nobase"
    shutil.copytree(adapter_dir, copy)
    _edit_config(copy, base_model_name_or_path="someone/remote-model")
    with pytest.raises(ExportError, match="pass the base model's .gguf"):
        export_gguf(copy)


def test_cli_export_gguf(tmp_path, adapter_dir, tiny_llama, capsys):
    out = tmp_path / "x" / "persona.gguf"
    code = main(
        [
            "export-gguf",
            str(adapter_dir),
            "--base",
            str(tiny_llama["gguf"]),
            "--out",
            str(out),
            "--outtype",
            "f16",
        ]
    )
    assert code == 0 and out.is_file()
    assert f"Wrote {out}" in capsys.readouterr().out
    import gguf

    reader = gguf.GGUFReader(out)
    assert reader.get_field("general.type").contents() == "adapter"
    assert reader.get_field("adapter.type").contents() == "lora"
    assert reader.get_field("adapter.lora.alpha").contents() == 16.0
    names = {t.name for t in reader.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.ffn_down.weight.lora_b" in names
    assert main(["export-gguf", str(tmp_path / "nothing"), "--base", str(tiny_llama["gguf"])]) == 2


def test_an_export_that_fails_midway_leaves_neither_a_half_file_nor_the_old_one_damaged(
    tmp_path, adapter_dir, tiny_llama
):
    from safetensors.numpy import load_file, save_file

    out = tmp_path / "persona.gguf"
    export_gguf(adapter_dir, base=tiny_llama["gguf"], out=out)
    good = out.read_bytes()
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    half = next(k for k in sorted(weights) if "lora_B" in k)
    del weights[half]  # a damaged adapter: the writer fails after it started
    save_file(weights, str(adapter_dir / "adapter_model.safetensors"))
    with pytest.raises(ExportError, match="half of the LoRA pair"):
        export_gguf(adapter_dir, base=tiny_llama["gguf"], out=out)
    assert out.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_out_of_memory_is_not_reported_as_a_damaged_file(
    tmp_path, adapter_dir, tiny_llama, monkeypatch
):
    """Only what the readers raise on a bad file becomes 'cannot be read'; MemoryError propagates."""
    import gguf
    import safetensors.numpy

    from engines.base import ModelLoadError
    from engines.ggufinfo import read_gguf_info

    def no_memory(*args, **kwargs):
        raise MemoryError

    (tmp_path / "cut.gguf").write_bytes(b"GGUF")  # the header ends early: IndexError inside gguf
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        read_gguf_info(tmp_path / "cut.gguf")
    with pytest.raises(ExportError, match="not a readable GGUF"):
        export_gguf(adapter_dir, base=tmp_path / "cut.gguf")

    # (read_gguf_info has its own reader now: tests/test_gguf_header.py checks it the same way)
    monkeypatch.setattr(gguf, "GGUFReader", no_memory)
    with pytest.raises(MemoryError):
        export_gguf(adapter_dir, base=tiny_llama["gguf"])
    monkeypatch.undo()
    monkeypatch.setattr(safetensors.numpy, "load_file", no_memory)
    with pytest.raises(MemoryError):
        export_gguf(adapter_dir, base=tiny_llama["gguf"])


def test_a_damaged_adapter_config_is_one_sentence(adapter_dir):
    (adapter_dir / "adapter_config.json").write_text("{not json")
    with pytest.raises(ExportError, match=r"adapter_config.json of .* cannot be read.*damaged"):
        export_gguf(adapter_dir)
    (adapter_dir / "adapter_config.json").write_text("[]")
    with pytest.raises(ExportError, match="not a JSON object"):
        export_gguf(adapter_dir)
