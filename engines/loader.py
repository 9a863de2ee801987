"""Pick and load an engine from what the user passed: a .gguf file → CPU engine, else the GPU engine."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from engines.base import Engine, ModelLoadError


@dataclass
class ModelSpec:
    """Everything needed to load a model; what `--model` and friends resolve to."""

    model: str  # a .gguf file, a HF directory, or a Hub repo id
    engine: str = "auto"  # auto | cpu | gpu
    template: str | None = None
    n_ctx: int | None = None
    n_threads: int | None = None
    n_gpu_layers: int = 0
    adapters: dict[str, str] = field(default_factory=dict)  # name -> path or repo id
    load_8bit: bool = False
    load_4bit: bool = False
    trust_remote_code: bool = False

    def resolved_engine(self) -> str:
        if self.engine in ("cpu", "gpu"):
            return self.engine
        if self.engine != "auto":
            raise ModelLoadError(f"Unknown engine {self.engine!r}; use cpu, gpu or auto.")
        return "cpu" if self.model.lower().endswith(".gguf") else "gpu"


def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA GPU (imports torch: call only when it matters)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def load_engine(spec: ModelSpec) -> Engine:
    if spec.resolved_engine() == "cpu":
        from engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine(
            spec.model,
            n_ctx=spec.n_ctx,
            n_threads=spec.n_threads,
            n_gpu_layers=spec.n_gpu_layers,
            template=spec.template,
            adapters=spec.adapters,
        )
    if spec.model.lower().endswith(".gguf"):
        raise ModelLoadError(
            f"{spec.model} is a GGUF file, which the CPU engine runs; leave out --engine gpu."
        )
    if Path(spec.model).expanduser().is_file():
        raise ModelLoadError(
            f"{spec.model} is a file but not a .gguf; pass a GGUF file or a Hugging Face model directory."
        )
    try:
        from engines.hf import HFEngine
    except ImportError as exc:
        raise ModelLoadError(
            f"The GPU engine needs torch and transformers ({exc.name} is missing); "
            'install them with `pip install -e ".[gpu]"` or pass a .gguf model.'
        ) from exc
    return HFEngine(
        spec.model,
        template=spec.template,
        adapters=spec.adapters,
        load_8bit=spec.load_8bit,
        load_4bit=spec.load_4bit,
        trust_remote_code=spec.trust_remote_code,
        n_ctx=spec.n_ctx,
    )
