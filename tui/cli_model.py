"""Which model to load: the model flags of `cosplay chat` and `cosplay ask`, and the choice
between what they name, the base model of a persona's adapter and the last model used."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engines import registry
from engines.errors import CosplayError
from engines.i18n import _
from engines.loader import ModelSpec, cuda_available, load_engine
from sessions.runtime import PersonaRuntime, training_result
from sessions.workspace import Workspace

if TYPE_CHECKING:
    from engines.base import Engine
    from engines.llamacpp_setup import LoadProgress
    from sessions.cards import CharacterCard


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(_("model"))
    group.add_argument(
        "--model",
        "-m",
        help=_(
            "a .gguf file, a Hugging Face model directory or repo id, or the "
            "http://HOST:PORT/v1 URL of an OpenAI-compatible server"
        ),
    )
    group.add_argument(
        "--engine",
        choices=[registry.AUTO, *registry.names()],
        default=None,
        help=_("force an engine (default: chosen from --model)"),
    )
    group.add_argument(
        "--api-key-env",
        metavar="VAR",
        help=_("remote engine: the environment variable that holds the server's API key"),
    )
    group.add_argument(
        "--template",
        help=_(
            "chat template: auto, model, chatml, llama2, alpaca, vicuna, chatglm, baichuan, cosplay"
        ),
    )
    group.add_argument(
        "--n-ctx", type=int, help=_("context window in tokens (default: the model's, at most 4096)")
    )
    group.add_argument("--threads", type=int, help=_("CPU threads for the CPU engine"))
    group.add_argument(
        "--gpu-layers",
        type=int,
        default=None,
        help=_("layers to offload (CPU engine built with GPU support)"),
    )
    group.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help=_("a LoRA adapter to load (repeatable); the first one is activated"),
    )
    group.add_argument(
        "--load-8bit", action="store_true", help=_("GPU engine: load weights in 8-bit")
    )
    group.add_argument(
        "--load-4bit", action="store_true", help=_("GPU engine: load weights in 4-bit NF4")
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help=_("GPU engine: allow the model's own Python code (ChatGLM, Baichuan)"),
    )


def _adapters(values: list[str]) -> dict[str, str]:
    adapters = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value.rstrip("/")).stem or value, value
        if name in adapters and adapters[name] != path:
            raise CosplayError(
                _(
                    "Two adapters are named {name} ({first} and {second}); name them apart "
                    "with --adapter NAME=PATH.",
                    name=repr(name),
                    first=adapters[name],
                    second=path,
                )
            )
        adapters[name] = path
    return adapters


def _is_downloaded(repo_id: str) -> bool:
    """Whether a Hub repo's config is in the local cache (loading it downloads nothing new)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def persona_model(persona: CharacterCard, engine: str | None) -> tuple[str, str] | None:
    """The base model a persona's adapter was trained on, if it is on this machine.

    A card is a file from anywhere: a model it names is never downloaded for it."""
    runtime = PersonaRuntime.of(persona)
    if engine in registry.local_names():
        runtime = dataclasses.replace(runtime, engine=engine)
    chosen = runtime.base_model(cuda=cuda_available)
    if chosen is None:
        return None
    model, kind = chosen
    if not Path(model).expanduser().exists() and not _is_downloaded(model):
        raise CosplayError(
            _(
                "The persona {name} was trained on {model}, which is not on this machine; "
                "Cosplay never downloads a model a card names: pass --model {model} to "
                "download it.",
                name=repr(persona.name),
                model=model,
            )
        )
    return model, kind


def model_spec(
    args: argparse.Namespace,
    workspace: Workspace,
    persona: CharacterCard | None = None,
    *,
    builtin: bool = False,
) -> ModelSpec | None:
    """The model the flags name, else the base model of the persona's adapter, else the
    config's model.default, else the last model used, else (`builtin`: the TUI) the built-in
    model, else None. Settings a flag leaves out come from what was remembered for the model
    (the config's per_model table), then from the config's [model] keys."""
    if args.load_8bit and args.load_4bit:
        raise CosplayError(_("Choose one of --load-8bit and --load-4bit, not both."))
    config = workspace.config
    for warning in config.warnings:
        print(f"cosplay: {warning}", file=sys.stderr)
    model, engine = args.model, args.engine or str(config.get("model.engine"))
    if not model and persona is not None:
        model, engine = persona_model(persona, args.engine) or (None, engine)
    if not model and config.get("model.default"):
        model = str(config.get("model.default"))
        _check_still_there(
            model, _("The config's model.default ({path})", path=workspace.paths.config)
        )
    if model:
        return _spec_from_flags(args, model, engine, workspace)
    spec = ModelSpec.from_setting(workspace.last_model())
    if spec is not None:
        _check_still_there(spec.model, _("The last model used"))
        return spec
    from engines.catalog import builtin_model

    shipped = builtin_model() if builtin else None
    return _spec_from_flags(args, str(shipped), engine, workspace) if shipped else None


def _spec_from_flags(
    args: argparse.Namespace, model: str, engine: str, workspace: Workspace
) -> ModelSpec:
    adapters = _adapters(args.adapter)
    # An adapter trained by `cosplay train` brings the template it was trained with.
    trained = training_result(next(iter(adapters.values()), "")).get("template")
    config = workspace.config
    remembered = config.model_settings(model_key(model))
    quantization = "8bit" if args.load_8bit else "4bit" if args.load_4bit else None
    quantization = quantization or str(remembered.get("quantization", ""))
    spec = ModelSpec(
        model=model,
        engine=engine,
        template=args.template or trained or remembered.get("template"),
        n_ctx=args.n_ctx or remembered.get("n_ctx") or config.get("model.n_ctx") or None,
        n_threads=args.threads or remembered.get("threads") or config.get("model.threads") or None,
        n_gpu_layers=_first_set(
            args.gpu_layers, remembered.get("gpu_layers"), config.get("model.gpu_layers")
        ),
        adapters=adapters,
        load_8bit=quantization == "8bit",
        load_4bit=quantization == "4bit",
        trust_remote_code=args.trust_remote_code,
        api_key_env=args.api_key_env,
    )
    spec.kind()  # a model the engine cannot run: one sentence before anything loads
    # Kept for `load`: the flags given become the model's settings once it has loaded.
    spec.flags_to_remember = _flags_to_remember(args, remembered)  # type: ignore[attr-defined]
    return spec


def _first_set(*values) -> int:
    return next((value for value in values if isinstance(value, int)), 0)


def model_key(model: str) -> str:
    """How a model is named in the config's per_model table: a local path made absolute."""
    path = Path(model).expanduser()
    return str(path.resolve()) if not registry.is_url(model) and path.exists() else model


def _flags_to_remember(args: argparse.Namespace, remembered: dict) -> dict | None:
    """The model's settings with the flags given this time, or None when nothing changed."""
    given = {
        "template": args.template,
        "n_ctx": args.n_ctx,
        "threads": args.threads,
        "gpu_layers": args.gpu_layers,
        "quantization": "8bit" if args.load_8bit else "4bit" if args.load_4bit else None,
    }
    settings = remembered | {name: value for name, value in given.items() if value is not None}
    return settings if settings != remembered else None


def _remember_settings(spec: ModelSpec, workspace: Workspace) -> None:
    settings = getattr(spec, "flags_to_remember", None)
    if not settings:
        return
    from sessions.config import remember_model_settings

    key = model_key(spec.model)
    try:
        remember_model_settings(workspace.paths.config, key, settings)
    except CosplayError as exc:  # a config file we cannot write never stops a chat
        print(f"cosplay: {exc}", file=sys.stderr)
        return
    workspace.config.per_model[key] = settings


def _check_still_there(model: str, what: str) -> None:
    """A remembered local model that is gone: one sentence naming it."""
    if registry.is_url(model):
        return
    path = Path(model).expanduser()
    looks_local = model.lower().endswith(".gguf") or model.startswith(("/", ".", "~"))
    if looks_local and not path.exists():
        raise CosplayError(
            _(
                "{what}, {model}, is no longer there (moved or deleted); pass --model, or "
                "`cosplay models list` shows the models on this machine.",
                what=what,
                model=model,
            )
        )


def load(spec: ModelSpec, workspace: Workspace, progress: LoadProgress | None = None) -> Engine:
    """Load the model and remember it as the last one used (`progress`: engines.loader)."""
    print(_("Loading {model} …", model=spec.model), file=sys.stderr, flush=True)
    engine = load_engine(spec, progress)
    workspace.remember_model(spec.to_setting())
    _remember_settings(spec, workspace)
    return engine
