"""Whether a model switch must free the old model before the new one loads.

A switch normally loads the new model first, so a failed load leaves the old one in use. Both
are then in memory for a moment: fine for two small models, an out-of-memory for two 7B models
on a 16 GB laptop or two on one GPU. `must_free_first` says when the new model (its files'
size, plus a margin for the KV cache and activations) does not fit in what is free now: RAM
for the CPU engine, the GPU's free memory when both models are on the same CUDA GPU.
"""

from __future__ import annotations

import glob
import re
import sys
from pathlib import Path

from engines.base import Engine
from engines.loader import ModelSpec

MARGIN = 1.25  # the KV cache, the compute buffers, the runtime's own copies while loading
LOCAL_KINDS = ("cpu", "gpu")  # engines holding a model in this process


def must_free_first(old: Engine | None, spec: ModelSpec) -> bool:
    """Whether `old` must be closed before `spec` loads: both are local models in the same
    memory (RAM, or one CUDA GPU) and the new one's weights (times MARGIN) take more than is
    free there now."""
    if old is None or old.kind not in LOCAL_KINDS:
        return False
    try:
        new_kind = spec.kind().name
    except Exception:  # a model the engines cannot run: the load says so, the old stays
        return False
    if new_kind not in LOCAL_KINDS:
        return False
    new_on_gpu = new_kind == "gpu" and free_gpu_memory() is not None
    if new_on_gpu != _on_cuda(old):  # different memories: freeing one does not help the other
        return False
    need = model_bytes(spec.model) * MARGIN
    if new_kind == "gpu" and (spec.load_4bit or spec.load_8bit):
        need *= 0.3 if spec.load_4bit else 0.55  # of 16-bit weights, quantized as they load
    free = free_gpu_memory() if new_on_gpu else available_ram()
    return free is not None and need > free


SPLIT_GGUF = re.compile(r"^(?P<stem>.+)-\d{5}-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def model_bytes(model: str) -> int:
    """The size of a model's weights: a GGUF file's (all parts of a split one), a folder's
    safetensors (else .bin) files, a Hub repo's in the local cache; 0 when not known."""
    path = Path(model).expanduser()
    try:
        if path.is_file():
            split = SPLIT_GGUF.match(path.name)
            if split:
                parts = path.parent.glob(f"{glob.escape(split['stem'])}-*-of-{split['count']}.gguf")
                return sum(part.stat().st_size for part in parts)
            return path.stat().st_size
        if path.is_dir():
            weights = list(path.glob("*.safetensors")) or list(path.glob("*.bin"))
            weights = weights or list(path.glob("*.gguf"))
            return sum(file.stat().st_size for file in weights)
    except OSError:
        return 0
    cached = _cached_repo(model)
    return model_bytes(cached) if cached else 0


def _cached_repo(repo_id: str) -> str | None:
    """The local snapshot of a Hub repo id already downloaded, else None (nothing fetched)."""
    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, not a repo id, or no huggingface_hub: unknown
        return None


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
