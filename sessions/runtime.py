"""What runs a persona: its LoRA adapter, in the form the loaded engine takes, and its template.

A persona bound by `cosplay train --persona` names in its card (`extensions.cosplay`) the
PEFT adapter directory, its GGUF export and the template it was trained with; the adapter
directory's `cosplay.json` records the base model and the template too. Before each reply,
`use_persona` switches the engine to that adapter (loading it the first time, never
reloading the model) and that template; a persona with neither gets the engine's defaults.

The CPU engine takes GGUF LoRAs: the card's `adapter_gguf`, else the export next to the
adapter (`cosplay export-gguf`'s default place), else the PEFT directory, which the engine
exports on first use. The GPU engine takes the PEFT directory (or Hub repo id); a remote
server, the adapter's name (it serves each adapter as a model).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engines import registry
from engines.errors import AdapterError, CosplayError
from engines.i18n import _
from engines.peft_dir import is_peft_dir

if TYPE_CHECKING:
    from engines.base import Engine

if TYPE_CHECKING:
    from sessions.cards import CharacterCard

TRAINING_RESULT = "cosplay.json"  # what `cosplay train` writes next to the adapter


def training_result(adapter: str) -> dict:
    """The `cosplay.json` next to a local adapter (its directory, or the GGUF LoRA's folder),
    or {} when there is none (or the adapter is a Hub repo id); a damaged one is an error."""
    if not adapter:
        return {}
    path = Path(adapter).expanduser()
    path = (path.parent if path.is_file() else path) / TRAINING_RESULT
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, ValueError) as exc:
        raise CosplayError(
            _(
                "The training record {path} cannot be read ({problem}); restore it, or delete "
                "it and set the persona's base model and template by hand.",
                path=path,
                problem=exc,
            )
        ) from exc
    if not isinstance(meta, dict):
        raise CosplayError(
            _(
                "The training record {path} is not a JSON object; restore it, or delete it "
                "and set the persona's base model and template by hand.",
                path=path,
            )
        )
    return meta


@dataclass(frozen=True)
class PersonaRuntime:
    """Where a persona's adapter and template come from (empty strings: not set)."""

    name: str
    adapter: str  # a PEFT directory or Hub repo id (or a GGUF LoRA file)
    adapter_gguf: str  # the GGUF LoRA for the CPU engine
    template: str
    speaker: str  # the name the template writes before the reply (the trained speaker)
    engine: str  # "", "cpu" or "gpu"
    base: str  # the HF base model the adapter was trained on
    base_gguf: str  # the same base as a GGUF file, when known

    @classmethod
    def of(cls, card: CharacterCard) -> PersonaRuntime:
        ext = card.cosplay
        result = training_result(ext.adapter)
        engine = ext.engine.strip().lower()
        if engine and engine not in registry.local_names():
            raise AdapterError(
                _(
                    "The persona {name!r} asks for engine {engine!r}; set it to {known} or "
                    "nothing.",
                    name=card.name,
                    engine=ext.engine,
                    known=", ".join(registry.local_names()),
                )
            )
        return cls(
            name=card.name,
            adapter=ext.adapter.strip(),
            adapter_gguf=ext.adapter_gguf.strip() or str(result.get("gguf") or ""),
            template=ext.template.strip() or str(result.get("template") or ""),
            speaker=ext.speaker.strip() or card.name,
            engine=engine,
            base=ext.base.strip() or str(result.get("base") or ""),
            base_gguf=ext.base_gguf.strip() or str(result.get("base_gguf") or ""),
        )

    @property
    def adapter_name(self) -> str | None:
        """The name the adapter is loaded under: its directory's (or file's) stem."""
        source = self.adapter or self.adapter_gguf
        if not source:
            return None
        return Path(source.rstrip("/")).stem or source

    # --- which file for which engine --------------------------------------------------------

    def adapter_for(self, engine: Engine) -> str | None:
        """The adapter reference the engine can load, exporting a GGUF LoRA if one is needed."""
        if not (self.adapter or self.adapter_gguf):
            return None
        form = getattr(engine, "adapter_format", None)
        if form == "name":  # a server serves each adapter as a model named like it
            return self.adapter_name
        if form == "gguf":
            return self._gguf_adapter(engine)
        if form == "peft":
            if self.adapter and not self.adapter.lower().endswith(".gguf"):
                return self.adapter
            raise AdapterError(
                _(
                    "The persona {name!r} has only a GGUF adapter ({adapter}), which runs on "
                    "the CPU engine; load a .gguf base model with --model.",
                    name=self.name,
                    adapter=self.adapter or self.adapter_gguf,
                )
            )
        return self.adapter or self.adapter_gguf

    def _gguf_adapter(self, engine: Engine) -> str:
        """The GGUF LoRA named or exported next to the adapter, else the PEFT directory
        (the CPU engine exports it to GGUF on first use)."""
        directory = Path(self.adapter).expanduser() if self.adapter else None
        candidates = [self.adapter_gguf]
        if self.adapter.lower().endswith(".gguf"):
            candidates.append(self.adapter)
        elif directory is not None:
            candidates.append(str(directory / f"{directory.resolve().name}.gguf"))
        for candidate in candidates:
            if candidate and Path(candidate).expanduser().is_file():
                return str(Path(candidate).expanduser())
        if directory is None or not is_peft_dir(directory):
            source = self.adapter_gguf or self.adapter
            raise AdapterError(
                _(
                    "The persona {name!r} has no GGUF LoRA for the CPU engine ({source} is not "
                    "a GGUF file or a PEFT adapter directory here); fix the persona's adapter "
                    "path, or export one with `cosplay export-gguf ADAPTER_DIR --base "
                    "BASE.gguf`.",
                    name=self.name,
                    source=source,
                )
            )
        return str(directory)

    # --- which model to load when none is given -------------------------------------------------

    def base_model(self, *, cuda: Callable[[], bool]) -> tuple[str, str] | None:
        """The base model this persona's adapter was trained on and the engine to run it
        (`cuda()`: whether a CUDA GPU is here), or None when no base is known here.

        No engine named: the GPU engine where CUDA is, else the base GGUF when known, else
        the HF base (the GPU engine runs on the CPU too, slowly). A base that is neither here
        nor a Hub repo id (a persona copied from another machine) counts as unknown.
        """
        gguf = self.base_gguf if _here(self.base_gguf) else ""
        hf = self.base if _here(self.base) or not Path(self.base).is_absolute() else ""
        wants_cpu = self.engine == "cpu" or (not self.engine and bool(gguf) and not (hf and cuda()))
        if wants_cpu:
            if not gguf:
                if self.base_gguf:
                    problem = _(
                        "The persona {name!r} runs on the CPU engine but its base GGUF, "
                        "{path}, is not here; pass --model BASE.gguf.",
                        name=self.name,
                        path=self.base_gguf,
                    )
                else:
                    problem = _(
                        "The persona {name!r} runs on the CPU engine but has no base GGUF; "
                        "pass --model BASE.gguf.",
                        name=self.name,
                    )
                raise AdapterError(problem)
            return gguf, "cpu"
        return (hf, "gpu") if hf else None


def _here(path: str) -> bool:
    return bool(path) and Path(path).expanduser().exists()


def _same_source(a: str, b: str) -> bool:
    def key(ref: str) -> str:
        path = Path(ref).expanduser()
        return str(path.resolve()) if path.exists() else ref

    return key(a) == key(b)


def ensure_adapter(engine: Engine, source: str, preferred: str) -> str:
    """The name `source` is loaded under in the engine, loading it under a free name if new."""
    loaded = engine.adapter_sources
    for name, known in loaded.items():
        if _same_source(known, source):
            return name
    name, number = preferred, 2
    while name in loaded:  # another persona's adapter directory has the same name
        name, number = f"{preferred}-{number}", number + 1
    engine.load_adapter(name, source)
    return name


def use_persona(engine: Engine, card: CharacterCard | None) -> str | None:
    """Switch the engine to the persona's adapter and template (or to the engine's defaults
    for no persona, or for what the persona leaves unset); return the adapter now active."""
    adapter, template, speaker = engine.default_adapter, None, ""
    if card is not None:
        runtime = PersonaRuntime.of(card)
        source = runtime.adapter_for(engine)
        if source is not None:
            adapter = ensure_adapter(engine, source, runtime.adapter_name or "adapter")
        template, speaker = runtime.template or None, runtime.speaker
    engine.set_template(template, speaker=speaker)
    engine.set_adapter(adapter)
    return adapter
