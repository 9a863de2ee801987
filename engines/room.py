"""Whether a model switch must free the old model before the new one loads.

A switch normally loads the new model first, so a failed load leaves the old one in use. Both
are then in memory for a moment: fine for two small models, an out-of-memory for two 7B models
on a 16 GB laptop or two on one GPU. `must_free_first` says when the new model (its files'
size, plus a margin for the KV cache and activations) does not fit in what is free now: RAM
for the CPU engine, the GPU's free memory when both models are on the same CUDA GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engines.base import Engine
from engines.loader import ModelSpec

MARGIN = 1.25  # the KV cache, the compute buffers, the runtime's own copies while loading
LOCAL_KINDS = ("cpu", "gpu")  # engines holding a model in this process


def must_free_first(old: Engine | None, spec: ModelSpec) -> bool:
    """Whether `old` must be closed before `spec` loads: both are local models and the new
    one's files (times MARGIN) take more than the memory free now."""
    if old is None or old.kind not in LOCAL_KINDS:
        return False
    try:
        new_kind = spec.kind().name
    except Exception:  # a model the engines cannot run: the load says so, the old stays
        return False
    if new_kind not in LOCAL_KINDS:
        return False
    need = model_bytes(spec.model) * MARGIN
    same_gpu = new_kind == "gpu" and old.kind == "gpu" and _on_cuda(old)
    free = free_gpu_memory() if same_gpu else available_ram()
    return free is not None and need > free


def model_bytes(model: str) -> int:
    """The size of a local model: a file's, or a folder's weight files' (0 when unknown, e.g.
    a Hub repo id)."""
    path = Path(model).expanduser()
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            weights = [*path.glob("*.safetensors"), *path.glob("*.bin"), *path.glob("*.gguf")]
            return sum(file.stat().st_size for file in weights)
    except OSError:
        pass
    return 0


def available_ram() -> int | None:
    """Bytes of RAM the kernel can give without swapping (Linux's MemAvailable); None where
    that is not known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def free_gpu_memory() -> int | None:
    """Bytes free on the current CUDA GPU (torch is loaded already when a GPU model is)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return int(free)


def _on_cuda(engine: Engine) -> bool:
    return str(engine.describe().get("device", "")).startswith("cuda")
