"""The CPU engine's LoRA adapters: GGUF LoRAs loaded next to the base model through
llama.cpp (a PEFT directory is exported to GGUF first, engines/gguf_lora.py), one active at a
time, switched without reloading the model."""

from __future__ import annotations

import ctypes
from pathlib import Path

from engines.errors import AdapterError
from engines.i18n import _


class LoraAdapters:
    """Mixed into LlamaCppEngine; uses its _lock, _llm, _cache, model_path and architecture,
    and keeps the adapters in _adapters (name -> llama_adapter_lora_p) and _adapter_sources
    (name -> the file it was loaded from), which the engine makes empty; default_adapter is
    the one used when a persona names none."""

    _adapters: dict[str, object]
    _adapter_sources: dict[str, str]
    active_adapter: str | None = None
    default_adapter: str | None = None

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load a GGUF LoRA adapter next to the base model (no reload); activate it with
        set_adapter. A PEFT adapter directory is exported to GGUF (next to it) first."""
        import llama_cpp

        path = Path(path).expanduser()
        if path.is_dir():
            path = self._exported(path)
        if not path.is_file():
            raise AdapterError(
                _("The LoRA adapter {path} does not exist; check the path.", path=path)
            )
        with self._lock:
            if name in self._adapters:
                if self._adapter_sources[name] == str(path):
                    return
                raise AdapterError(
                    _(
                        "An adapter named {name!r} is already loaded from {source}; give this one another name.",
                        name=name,
                        source=self._adapter_sources[name],
                    )
                )
            handle = llama_cpp.llama_adapter_lora_init(self._llm.model, str(path).encode())
            if not handle:
                raise AdapterError(
                    _(
                        "llama.cpp refused the adapter {path}: it must be a GGUF LoRA made for this base model ({architecture}); export it with `cosplay export-gguf`.",
                        path=path,
                        architecture=self.architecture,
                    )
                )
            self._adapters[name] = handle
            self._adapter_sources[name] = str(path)

    def _exported(self, directory: Path) -> Path:
        """The GGUF form of a PEFT adapter directory, written next to it against this base."""
        from engines.gguf_lora import export_gguf

        try:
            return export_gguf(directory, base=self.model_path)
        except OSError as exc:
            raise AdapterError(
                _(
                    "Could not write the GGUF form of {directory} ({problem}); run `cosplay export-gguf {directory} --base {model_path} --out SOMEWHERE.gguf` and load that file.",
                    directory=directory,
                    problem=exc.strerror or exc,
                    model_path=self.model_path,
                )
            ) from exc

    def unload_adapter(self, name: str) -> None:
        """Free a loaded adapter (the base model answers if it was the active one)."""
        import llama_cpp

        if name not in self._adapters:
            raise AdapterError(_("No adapter named {name!r} is loaded.", name=name))
        with self._lock:
            if self.active_adapter == name:
                self.set_adapter(None)
            if self.default_adapter == name:
                self.default_adapter = None
            llama_cpp.llama_adapter_lora_free(self._adapters.pop(name))
            self._adapter_sources.pop(name)

    @property
    def adapter_sources(self) -> dict[str, str]:
        """Each loaded adapter's name and the file it was loaded from."""
        return dict(self._adapter_sources)

    def set_adapter(self, name: str | None) -> None:
        import llama_cpp

        if name is not None and name not in self._adapters:
            raise AdapterError(_("No adapter named {name!r} is loaded; load it first.", name=name))
        if name == self.active_adapter:
            return
        with self._lock:
            if name is None:
                llama_cpp.llama_set_adapters_lora(self._llm.ctx, None, 0, None)
            else:
                handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapters[name])
                scales = (ctypes.c_float * 1)(1.0)
                llama_cpp.llama_set_adapters_lora(self._llm.ctx, handles, 1, scales)
            # The KV cache was computed under the old adapter: start over.
            self._llm.reset()
            self._cache.clear()
            self.active_adapter = name
