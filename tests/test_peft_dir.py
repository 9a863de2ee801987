"""The one PEFT adapter directory reader, and the adapter readers letting MemoryError through."""

from __future__ import annotations

import json

import pytest

from engines.base import AdapterError
from engines.peft_dir import is_peft_dir, read_peft_config


def test_is_peft_dir(tmp_path):
    assert not is_peft_dir(tmp_path) and not is_peft_dir(tmp_path / "missing")
    (tmp_path / "adapter_config.json").write_text("{}")
    assert is_peft_dir(tmp_path) and is_peft_dir(str(tmp_path))
    assert not is_peft_dir(tmp_path / "adapter_config.json")  # a file is no directory


def test_read_peft_config_is_one_sentence_naming_the_adapter(tmp_path):
    with pytest.raises(AdapterError, match=r"^The adapter 'x' \(ref\) has no adapter_config.json"):
        read_peft_config(tmp_path, label="the adapter 'x' (ref)")
    config = tmp_path / "adapter_config.json"
    config.write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    assert read_peft_config(tmp_path) == {"peft_type": "LORA", "r": 4}
    for damaged, reason in [("{", "cannot be read"), ("[1]", "not a JSON object")]:
        config.write_text(damaged)
        with pytest.raises(AdapterError, match=reason) as caught:
            read_peft_config(tmp_path)
        assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)
    config.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(AdapterError, match="cannot be read"):
        read_peft_config(tmp_path)

    class Custom(AdapterError):
        pass

    with pytest.raises(Custom):
        read_peft_config(tmp_path, error=Custom)


class _NoModules:
    def named_modules(self):
        return iter(())


def test_fit_check_reports_a_bad_header_but_lets_memory_errors_through(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    import safetensors

    from engines.hf_adapters import fit_problem

    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(b"junk")
    assert "cannot be read" in fit_problem(_NoModules(), weights)

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(safetensors, "safe_open", no_memory)
    with pytest.raises(MemoryError):
        fit_problem(_NoModules(), weights)
