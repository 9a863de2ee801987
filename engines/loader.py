"""Load the engine for what the user passed (`--model` and friends): see engines/registry.py."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from engines import registry
from engines.errors import LoadCancelled
from engines.i18n import _

if TYPE_CHECKING:
    from engines.base import Engine
    from engines.llamacpp_setup import LoadProgress


@dataclass
class ModelSpec:
    """Everything needed to load a model; what `--model` and friends resolve to."""

    model: str  # a .gguf file, a HF directory or repo id, or an OpenAI-compatible server's URL
    engine: str = registry.AUTO  # auto or a registry name
    template: str | None = None
    n_ctx: int | None = None
    n_threads: int | None = None
    n_gpu_layers: int = 0
    adapters: dict[str, str] = field(default_factory=dict)  # name -> path, repo id or model name
    load_8bit: bool = False
    load_4bit: bool = False
    trust_remote_code: bool = False
    api_key_env: str | None = None  # the environment variable holding a server's API key

    def kind(self) -> registry.EngineKind:
        return registry.choose(self.model, self.engine)

    def to_setting(self) -> dict:
        return asdict(self)

    @classmethod
    def from_setting(cls, value: object) -> ModelSpec | None:
        """A remembered spec, or None when it is missing or from an incompatible version."""
        if not isinstance(value, dict):
            return None
        known = {name: value[name] for name in cls.__dataclass_fields__ if name in value}
        try:
            return cls(**known) if isinstance(known.get("model"), str) else None
        except TypeError:
            return None


def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA GPU (imports torch: call only when it matters)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def load_engine(spec: ModelSpec, progress: LoadProgress | None = None) -> Engine:
    """The engine for `spec`, its adapters loaded and the first one active; an adapter that
    fails to load frees the model before the error reaches the user. `progress(fraction)`
    follows a GGUF load and stops it by returning False (engines/llamacpp_setup.py); it is
    asked once more when any engine is ready, and a False then frees it (LoadCancelled)."""
    engine = spec.kind().engine_class().from_spec(spec, progress)
    try:
        for name, source in spec.adapters.items():
            if name not in engine.adapter_sources:
                engine.load_adapter(name, source)
        if progress is not None and not progress(1.0):  # stopped after the last weights
            raise LoadCancelled(_("Loading {model} was stopped.", model=engine.model_name))
    except BaseException:
        engine.close()
        raise
    if spec.adapters:  # the first --adapter serves every persona that names none
        engine.default_adapter = next(iter(spec.adapters))
        engine.set_adapter(engine.default_adapter)
    return engine
