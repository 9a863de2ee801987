"""GPU engine, adapters: find a PEFT LoRA, refuse unsafe or ill-fitting ones before touching the model.

The fit check reads only the safetensors header (tensor names and shapes) and
compares every LoRA matrix with the base layer it would wrap. Checking first
matters: PEFT injects its layers into the base model *in place* before it loads
the weights, so a late failure would leave the base model half-modified.
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from engines.base import AdapterError
from engines.hf_load import ADAPTER_PATTERNS, resolve_source
from engines.i18n import _
from engines.peft_dir import PICKLE_WEIGHTS, SAFE_WEIGHTS, read_peft_config


@dataclass(frozen=True)
class AdapterFiles:
    directory: Path
    config: dict
    weights: Path
    pickle: bool

    @property
    def made_for(self) -> str:
        return self.config.get("base_model_name_or_path") or "another base model"


def adapter_files(name: str, directory: Path, ref: str, allow_pickle: bool) -> AdapterFiles:
    config = read_peft_config(
        directory, label=_("the adapter {name!r} ({ref})", name=name, ref=ref)
    )
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise AdapterError(
            _(
                "The adapter {name!r} ({ref}) is a {peft_type} adapter; Cosplay loads LoRA adapters only.",
                name=name,
                ref=ref,
                peft_type=peft_type,
            )
        )
    if (directory / SAFE_WEIGHTS).is_file():
        return AdapterFiles(directory, config, directory / SAFE_WEIGHTS, pickle=False)
    if (directory / PICKLE_WEIGHTS).is_file():
        if not allow_pickle:
            raise AdapterError(
                _(
                    "The adapter {name!r} ({ref}) is a pickle file ({PICKLE_WEIGHTS}), which can run code when loaded; convert it to safetensors, or allow pickle adapters explicitly if you trust its source.",
                    name=name,
                    ref=ref,
                    PICKLE_WEIGHTS=PICKLE_WEIGHTS,
                )
            )
        return AdapterFiles(directory, config, directory / PICKLE_WEIGHTS, pickle=True)
    raise AdapterError(
        _(
            "The adapter {name!r} ({ref}) has no {SAFE_WEIGHTS}; the download may be incomplete.",
            name=name,
            ref=ref,
            SAFE_WEIGHTS=SAFE_WEIGHTS,
        )
    )


def _layer_shape(module) -> tuple[int, int] | None:
    """(in, out) of a Linear-like or Embedding-like layer, unwrapping PEFT and bitsandbytes layers."""
    module = getattr(module, "base_layer", module)
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    if hasattr(module, "num_embeddings") and hasattr(module, "embedding_dim"):
        return int(module.num_embeddings), int(module.embedding_dim)
    weight = getattr(module, "weight", None)
    if weight is not None and getattr(weight, "ndim", 0) == 2:
        return int(weight.shape[1]), int(weight.shape[0])
    return None


def _lora_parts(key: str) -> tuple[str, str] | None:
    for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
        marker = f".{part}"
        if marker in key:
            module = key.split(marker)[0]
            return module.removeprefix("base_model.model."), part
    return None


def fit_problem(base_model, weights: Path) -> str | None:
    """Why these LoRA weights cannot wrap `base_model`, or None if every matrix fits."""
    from safetensors import SafetensorError, safe_open

    modules = dict(base_model.named_modules())
    try:
        with safe_open(str(weights), framework="pt") as handle:
            shapes = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:  # a bad header; not MemoryError
        return f"its weights file cannot be read ({exc})"
    seen = 0
    for key, shape in shapes.items():
        parts = _lora_parts(key)
        if parts is None or len(shape) != 2:
            continue
        module_name, part = parts
        seen += 1
        module = modules.get(module_name)
        if module is None:
            return f"the base model has no layer {module_name}"
        layer = _layer_shape(module)
        if layer is None:
            continue
        fan_in, fan_out = layer
        if part == "lora_A" and shape[1] != fan_in:
            return f"{module_name} takes {fan_in} inputs but the adapter expects {shape[1]}"
        if part == "lora_B" and shape[0] != fan_out:
            return f"{module_name} gives {fan_out} outputs but the adapter expects {shape[0]}"
        if part == "lora_embedding_A" and shape[1] != fan_in:
            return f"{module_name} has {fan_in} rows but the adapter expects {shape[1]}"
        if part == "lora_embedding_B" and shape[0] != fan_out:
            return f"{module_name} has width {fan_out} but the adapter expects {shape[0]}"
    if seen == 0:
        return "it holds no LoRA weights"
    return None


def mismatch_error(
    name: str, ref: str, files: AdapterFiles, base_name: str, problem: str
) -> AdapterError:
    return AdapterError(
        _(
            "The adapter {name!r} ({ref}) does not fit the base model {base_name}: {problem}; it was made for {made_for}, so load it with that base model.",
            name=name,
            ref=ref,
            base_name=base_name,
            problem=problem,
            made_for=files.made_for,
        )
    )


class AdapterMixin:
    """HFEngine's adapter methods: several PEFT LoRAs on one base model, switched by name."""

    _lock: threading.RLock
    _adapters: dict[str, str]  # our name -> PEFT's name (PEFT names cannot contain dots)
    _adapter_sources: dict[str, str]
    active_adapter: str | None

    def load_adapter(
        self, name: str, path_or_repo: str | Path, *, allow_pickle: bool | None = None
    ) -> None:
        """Load a PEFT LoRA next to the base model (never reloading it); activate it with set_adapter."""
        ref = str(path_or_repo)
        allow = self.allow_pickle_adapters if allow_pickle is None else allow_pickle
        with self._lock:
            self._require_open()
            if name in self._adapters:
                if self._adapter_sources[name] == ref:
                    return
                raise AdapterError(
                    _(
                        "An adapter named {name!r} is already loaded from {source}; give this one another name.",
                        name=name,
                        source=self._adapter_sources[name],
                    )
                )
            directory = resolve_source(
                ref,
                what="adapter",
                cache_dir=self.cache_dir,
                allow_patterns=ADAPTER_PATTERNS,
                error=AdapterError,
            )
            files = adapter_files(name, directory, ref, allow)
            if not files.pickle:
                problem = fit_problem(self.base_model, files.weights)
                if problem:
                    raise mismatch_error(name, ref, files, self.model_name, problem)
            peft_name = re.sub(r"\W", "_", name) or "adapter"
            while peft_name in self._adapters.values():
                peft_name += "_"
            try:
                with warnings.catch_warnings():
                    # PEFT 0.21 calls a transformers method that v5 deprecates; not the user's concern.
                    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
                    self._attach(str(directory), peft_name)
            except (RuntimeError, ValueError, KeyError, OSError) as exc:
                raise mismatch_error(
                    name, ref, files, self.model_name, str(exc).splitlines()[0]
                ) from exc
            self.model.eval()
            self._adapters[name] = peft_name
            self._adapter_sources[name] = ref
            if self.active_adapter is not None:  # PEFT activates nothing new, but keep it explicit
                self.model.set_adapter(self._adapters[self.active_adapter], inference_mode=True)
            self._prefix.clear()

    def _attach(self, directory: str, peft_name: str) -> None:
        if self.model is self.base_model:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(
                self.base_model, directory, adapter_name=peft_name, is_trainable=False
            )
        else:
            self.model.load_adapter(directory, adapter_name=peft_name, is_trainable=False)

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    @property
    def adapter_sources(self) -> dict[str, str]:
        """Each loaded adapter's name and the path or repo id it was loaded from."""
        return dict(self._adapter_sources)

    def set_adapter(self, name: str | None) -> None:
        if name is not None and name not in self._adapters:
            loaded = ", ".join(self._adapters) or _("none")
            raise AdapterError(
                _(
                    "No adapter named {name!r} is loaded (loaded: {loaded}); load it first.",
                    name=name,
                    loaded=loaded,
                )
            )
        with self._lock:
            if name == self.active_adapter:
                return
            if name is not None:
                self.model.set_adapter(self._adapters[name], inference_mode=True)
            # The cached keys and values were computed under the old adapter.
            self._prefix.clear()
            self.active_adapter = name
