"""The engines Cosplay can run, in one table: adding an engine is one module plus one entry here.

Each entry names the engine (the `--engine` value and a persona card's `engine`), says which
`--model` values it runs (`accepts`, used to pick one when none is forced, and `takes`, the
words that tell a user), where its class lives (imported only when it is chosen: torch and
llama.cpp stay out of `cosplay --help`), the adapter form its `load_adapter` takes and what
it can do. The loader, the CLI's `--engine` choices, the persona editor and the persona
runtime all read this table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines.errors import ModelLoadError
from engines.i18n import N_, _

AUTO = "auto"


def is_url(model: str) -> bool:
    return model.lower().startswith(("http://", "https://"))


def _is_gguf(model: str) -> bool:
    return not is_url(model) and model.lower().endswith(".gguf")


def _is_hf_model(model: str) -> bool:
    """A model directory or a Hub repo id: anything but a URL, a .gguf or another file."""
    return not is_url(model) and not _is_gguf(model) and not Path(model).expanduser().is_file()


@dataclass(frozen=True)
class EngineKind:
    """One engine the app can load: its --engine name, what --model it takes and its class."""

    name: str  # the --engine value
    takes: str  # what --model is for this engine, in a user's words
    accepts: Callable[[str], bool]  # whether a --model value is this engine's
    where: str  # "module:Class"; the class has from_spec(spec: ModelSpec, progress)
    adapter_format: str  # what load_adapter takes: "gguf" file, "peft" dir or repo, "name"
    capabilities: frozenset[str]  # "local" (runs here: a persona may ask for it), "templates"
    # (renders prompts itself with any named template), "kv_files" (saves KV caches)
    install: str = ""  # how to install what it needs, when an import fails

    def engine_class(self) -> type:
        module, _colon, cls = self.where.partition(":")
        try:
            return getattr(importlib.import_module(module), cls)
        except ImportError as exc:
            raise ModelLoadError(
                _(
                    "The {engine} engine needs {package}; {install}.",
                    engine=self.name,
                    package=exc.name or _("a missing package"),
                    install=_(self.install),
                )
            ) from exc


ENGINES: tuple[EngineKind, ...] = (
    EngineKind(
        name="remote",
        takes=N_("the http(s)://HOST:PORT/v1 URL of an OpenAI-compatible server"),
        accepts=is_url,
        where="engines.openai_remote:OpenAIRemoteEngine",
        adapter_format="name",
        capabilities=frozenset(),
    ),
    EngineKind(
        name="cpu",
        takes=N_("a .gguf file"),
        accepts=_is_gguf,
        where="engines.llamacpp:LlamaCppEngine",
        adapter_format="gguf",
        capabilities=frozenset({"local", "templates", "kv_files"}),
        install=N_("reinstall Cosplay (`pip install -e .`)"),
    ),
    EngineKind(
        name="gpu",
        takes=N_("a Hugging Face model directory or repo id"),
        accepts=_is_hf_model,
        where="engines.hf:HFEngine",
        adapter_format="peft",
        capabilities=frozenset({"local", "templates"}),
        install=N_('install it with `pip install -e ".[gpu]"` or pass a .gguf model'),
    ),
)


def names() -> list[str]:
    return [kind.name for kind in ENGINES]


def local_names() -> list[str]:
    """The engines a persona card may ask for (a card never points Cosplay at a server)."""
    return [kind.name for kind in ENGINES if "local" in kind.capabilities]


def get(name: str) -> EngineKind:
    for kind in ENGINES:
        if kind.name == name:
            return kind
    choices = ", ".join([AUTO, *names()])
    raise ModelLoadError(
        _("Unknown engine {name}; use {choices}.", name=repr(name), choices=choices)
    )


def find(name: str | None) -> EngineKind | None:
    """The entry of an engine instance's `kind`, or None (the demo engine, a test double)."""
    return next((kind for kind in ENGINES if kind.name == name), None)


def choose(model: str, engine: str = AUTO) -> EngineKind:
    """The engine that runs `model`: the one forced, if it can, else the first that accepts it."""
    fits = [kind for kind in ENGINES if kind.accepts(model)]
    if engine != AUTO:
        kind = get(engine)
        if kind in fits:
            return kind
        values = {"model": model, "engine": engine, "takes": _(kind.takes)}
        if fits:
            raise ModelLoadError(
                _(
                    "{model} is not what the {engine} engine runs ({takes}); leave out "
                    "--engine {engine}.",
                    **values,
                )
            )
        raise ModelLoadError(_("{model} is not what the {engine} engine runs ({takes}).", **values))
    if not fits:
        takes = _(", ").join(_(kind.takes) for kind in ENGINES)
        raise ModelLoadError(
            _("{model} is a file but not a .gguf; pass {takes}.", model=model, takes=takes)
        )
    return fits[0]
