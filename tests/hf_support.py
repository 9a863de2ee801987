"""Shared scaffolding of the GPU-engine tests: skip without the extras, import lazily; logits of a
HF model and of llama.cpp for comparing them."""

from __future__ import annotations

import importlib.util

import pytest


def installed(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


def needs(*names: str) -> pytest.MarkDecorator:
    """Skip a module when the GPU engine's extras are missing (torch is never imported to check)."""
    return pytest.mark.skipif(
        not installed(*names), reason="the GPU engine's extras are not installed"
    )


def HFEngine(*args, **kwargs):  # noqa: N802 - stands in for the class, imported lazily
    from engines.hf import HFEngine as Engine

    return Engine(*args, **kwargs)


def hf_logits(model, ids):
    """All-position logits of a transformers (or PEFT) model, as a numpy array."""
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def llama_cpp_logits(gguf_path, ids, adapter=None):
    """All-position logits from llama.cpp, f32 KV cache so a comparison measures the adapter."""
    import ctypes

    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(
        str(gguf_path), n_ctx=256, logits_all=True, verbose=False, type_k=0, type_v=0
    )
    try:
        if adapter is not None:
            handle = llama_cpp.llama_adapter_lora_init(llm.model, str(adapter).encode())
            assert handle, "llama.cpp refused the exported adapter"
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
            llama_cpp.llama_set_adapters_lora(llm.ctx, handles, 1, (ctypes.c_float * 1)(1.0))
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)])
    finally:
        llm.close()
