"""The remote engine's adapters: a LoRA the server serves as a model of its own (vLLM's
`--lora-modules`, llama-server's model list) is an adapter named NAME=MODEL_ID; using it
sends that model id instead of the base's."""

from __future__ import annotations

from engines.base import AdapterError
from engines.i18n import _
from engines.openai_probe import list_models


class ServedAdapters:
    """For OpenAIRemoteEngine: its `server`, `url`, `_served` (the server's model list),
    `_adapter_sources`, `base_model`, `model` and `active_adapter`."""

    def load_adapter(self, name: str, path: str) -> None:
        """Serve adapter `name` as the server's model id `path` (checked against its list)."""
        model_id = str(path)
        known = self._adapter_sources.get(name)
        if known is not None and known != model_id:
            raise AdapterError(
                _(
                    "An adapter named {name!r} is already the model {known!r}; give this one another name.",
                    name=name,
                    known=known,
                )
            )
        if model_id not in self._served.ids:
            self._served = list_models(self.server)  # the server may have loaded it since
        if model_id not in self._served.ids:
            raise AdapterError(
                _(
                    "The server at {url} serves no model {model_id!r} (it lists {models}); give the adapter as NAME=MODEL_ID.",
                    url=self.url,
                    model_id=model_id,
                    models=", ".join(self._served.ids[:8]),
                )
            )
        self._adapter_sources[name] = model_id

    @property
    def adapter_sources(self) -> dict[str, str]:
        """Each adapter's name and the model id it is served as."""
        return dict(self._adapter_sources)

    def set_adapter(self, name: str | None) -> None:
        if name is not None and name not in self._adapter_sources:
            raise AdapterError(_("No adapter named {name!r} is loaded; load it first.", name=name))
        self.active_adapter = name
        self.model = self._adapter_sources[name] if name else self.base_model
