"""engines/hf_dir_info.py: a Hugging Face model directory read from its config and headers."""

from __future__ import annotations

import json
import struct

import pytest

from engines.hf_dir_info import hf_quantization, read_hf_dir, safetensors_parameters


def _safetensors(path, tensors: dict) -> None:
    header = json.dumps(tensors).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_the_tiny_model_directory(tiny_llama):
    info = read_hf_dir(tiny_llama["hf"])
    assert (info.architecture, info.context_length, info.quantization) == (
        "LlamaForCausalLM",
        512,
        "float32",
    )
    assert info.parameters > 100_000 and info.problem == ""
    assert "<|im_start|>" in info.chat_template


def test_config_fallbacks_and_template_sources(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 1024}))
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": [{"name": "tool_use", "template": "T"}]})
    )
    _safetensors(
        tmp_path / "model.safetensors",
        {"__metadata__": {}, "a": {"shape": [3, 4]}, "b": {"shape": [5]}},
    )
    _safetensors(tmp_path / "adapter_model.safetensors", {"lora": {"shape": [1000]}})
    info = read_hf_dir(tmp_path)
    assert (info.architecture, info.context_length, info.parameters) == ("gpt2", 1024, 17)
    assert info.chat_template == "T"  # the first of a template list
    (tmp_path / "chat_template.jinja").write_text("J", encoding="utf-8")
    assert read_hf_dir(tmp_path).chat_template == "J"  # the .jinja file wins


@pytest.mark.parametrize(
    ("config", "shown"),
    [
        ({"quantization_config": {"quant_method": "gptq", "bits": 4}}, "gptq 4-bit"),
        ({"quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}},
         "bitsandbytes 8-bit"),
        ({"quantization_config": {"quant_method": "fp8"}}, "fp8"),
        ({"dtype": "bfloat16"}, "bfloat16"),
        ({}, ""),
    ],
)  # fmt: skip
def test_quantization(config, shown):
    assert hf_quantization(config) == shown


def test_damage_is_a_problem_or_an_error(tmp_path):
    assert safetensors_parameters(tmp_path) is None  # no safetensors: not counted
    (tmp_path / "config.json").write_text('{"architectures": ["X"]}')
    _safetensors(tmp_path / "model.safetensors", {"a": {"dtype": "F32"}})
    info = read_hf_dir(tmp_path)
    assert info.parameters is None
    assert info.problem == "model.safetensors names tensor a without a shape; damaged"
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    assert "damaged header (length" in read_hf_dir(tmp_path).problem
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        read_hf_dir(tmp_path)


def test_damage_is_worded_in_chinese(tmp_path):
    from engines.i18n import set_language

    (tmp_path / "config.json").write_text('{"architectures": ["X"]}')
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    set_language("zh")
    try:
        problem = read_hf_dir(tmp_path).problem
    finally:
        set_language("en")
    assert problem.startswith("model.safetensors 的文件头已损坏（长度 ")
