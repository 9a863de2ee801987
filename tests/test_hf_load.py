"""Loading for the GPU engine: quantized flags on a CPU-only machine, Hub repo ids without a
network, models that need --trust-remote-code, and the other load-time refusals."""

from __future__ import annotations

import json
import shutil
import sys
import threading

import pytest

import engines.hf_load as hf_load
from engines.base import GenerationParams, ModelLoadError
from tests.hf_support import HFEngine, needs

# torch & co. are imported inside fixtures and tests, never while collecting the suite.
pytestmark = needs("torch", "transformers")


HELLO = [{"role": "user", "content": "Hello"}]


def reply(engine, **params):
    params = {"do_sample": False, "max_new_tokens": 6, **params}
    return "".join(engine.stream_chat(HELLO, GenerationParams(**params), threading.Event()))


# --- quantization -----------------------------------------------------------------------------


def test_4bit_without_cuda_runs_nf4_on_the_cpu(tiny_llama, cpu_only, torch):
    pytest.importorskip("bitsandbytes")
    engine = HFEngine(tiny_llama["hf"], load_4bit=True)
    try:
        assert engine.describe()["device"] == "cpu"
        assert engine.describe()["quantization"] == "4-bit nf4"
        layer = engine.base_model.model.layers[0].self_attn.q_proj
        assert type(layer).__name__ == "Linear4bit"
        config = engine.base_model.config.quantization_config
        assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
        assert config.bnb_4bit_compute_dtype == torch.float32  # set explicitly, not bnb's default
        assert reply(engine) and engine.last_stats.completion_tokens > 0
    finally:
        engine.close()


def test_8bit_without_cuda_runs_on_the_cpu_quietly(tiny_llama, caplog, cpu_only):
    pytest.importorskip("bitsandbytes")
    engine = HFEngine(tiny_llama["hf"], load_8bit=True)
    try:
        assert engine.describe()["quantization"] == "8-bit"
        assert type(engine.base_model.model.layers[0].mlp.up_proj).__name__ == "Linear8bitLt"
        assert reply(engine)
        assert "MatMul8bitLt" not in caplog.text
    finally:
        engine.close()


def test_both_quantization_flags_are_refused(tiny_llama):
    with pytest.raises(ModelLoadError, match="one of --load-8bit and --load-4bit"):
        HFEngine(tiny_llama["hf"], load_8bit=True, load_4bit=True)


def test_quantization_without_bitsandbytes_says_what_to_install(tiny_llama, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(ModelLoadError, match="need bitsandbytes; install it"):
        HFEngine(tiny_llama["hf"], load_4bit=True)


def test_placement_is_chosen_automatically(torch):
    placement = hf_load.pick_placement()
    if torch.cuda.is_available():
        assert placement.device == "cuda" and placement.dtype in (torch.bfloat16, torch.float16)
    elif not torch.backends.mps.is_available():
        assert (placement.device, placement.dtype) == ("cpu", torch.float32)
    assert hf_load.pick_placement(device="cpu", dtype="bf16").dtype == torch.bfloat16
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        hf_load.pick_placement(dtype="int3")
    with pytest.raises(ModelLoadError, match="Unknown device"):
        hf_load.pick_placement(device="tpu")


def test_asking_for_cuda_without_one_is_a_clear_error(cpu_only):
    with pytest.raises(ModelLoadError, match="No CUDA GPU"):
        hf_load.pick_placement(device="cuda")


# --- where the model comes from ----------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """The Hub is offline, and any call that could reach the network fails the test."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    original = hf_load._download

    def guarded(repo_id, **kwargs):
        assert kwargs.get("local_files_only"), "a test must never download"
        return original(repo_id, **kwargs)

    monkeypatch.setattr(hf_load, "_download", guarded)


def test_a_repo_id_not_in_the_cache_offline_is_one_clear_sentence(offline, tmp_path):
    with pytest.raises(ModelLoadError) as caught:
        HFEngine("someone/not-downloaded", cache_dir=tmp_path)
    message = str(caught.value)
    assert (
        "someone/not-downloaded is not a local directory and not in the Hugging Face cache"
        in message
    )
    assert "hf download someone/not-downloaded" in message


def test_a_repo_id_in_the_cache_loads_without_the_network(offline, tiny_llama, tmp_path):
    commit = "a" * 40
    repo = tmp_path / "models--someone--tiny"
    shutil.copytree(tiny_llama["hf"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    engine = HFEngine("someone/tiny", cache_dir=tmp_path)
    try:
        assert engine.model_name == "someone/tiny"
        assert reply(engine)
    finally:
        engine.close()


def test_an_unreachable_hub_is_one_clear_sentence(monkeypatch, tmp_path):
    import huggingface_hub.constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    calls = []

    def no_network(repo_id, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        raise OSError("Network is unreachable")

    monkeypatch.setattr(hf_load, "_download", no_network)
    with pytest.raises(ModelLoadError, match="could not be reached.*hf download someone/model"):
        HFEngine("someone/model", cache_dir=tmp_path)
    assert calls == [True, False], "the cache is tried first"


@pytest.mark.parametrize(
    "ref, message",
    [
        ("./no/such/dir", "does not exist"),
        ("/no/such/dir", "does not exist"),
        ("bad repo id!", "does not exist"),
    ],
)
def test_a_missing_directory(ref, message):
    with pytest.raises(ModelLoadError, match=message):
        HFEngine(ref)


def test_a_directory_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        HFEngine(tmp_path)


def test_broken_weights_are_a_clear_error(tiny_llama, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama["hf"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="could not load the weights of broken"):
        HFEngine(broken)


# --- remote code -------------------------------------------------------------------------------


def test_a_model_with_its_own_code_asks_for_trust_remote_code(tmp_path):
    glm = tmp_path / "chatglm-6b"
    glm.mkdir()
    (glm / "config.json").write_text(
        json.dumps(
            {
                "model_type": "chatglm",
                "auto_map": {
                    "AutoConfig": "configuration_chatglm.ChatGLMConfig",
                    "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
                },
            }
        )
    )
    with pytest.raises(
        ModelLoadError, match="chatglm-6b ships its own Python model code.*--trust-remote-code"
    ):
        HFEngine(glm)


def test_an_unknown_architecture_mentions_trust_remote_code(tmp_path):
    odd = tmp_path / "baichuan2"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"model_type": "baichuan"}))
    with pytest.raises(
        ModelLoadError, match="does not know the architecture of baichuan2.*--trust-remote-code"
    ):
        HFEngine(odd)


# --- GPU only ----------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("flag", ["load_8bit", "load_4bit"])
def test_quantized_on_cuda(tiny_llama, flag, cuda):
    engine = HFEngine(tiny_llama["hf"], **{flag: True})
    try:
        assert engine.describe()["device"] == "cuda"
        assert reply(engine)
    finally:
        engine.close()
