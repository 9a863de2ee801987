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
from engines.loader import ModelSpec, cuda_available, load_engine
from sessions.runtime import PersonaRuntime, training_result
from sessions.workspace import Workspace

if TYPE_CHECKING:
    from engines.base import Engine

if TYPE_CHECKING:
    from sessions.cards import CharacterCard


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        "-m",
        help="a .gguf file, a Hugging Face model directory or repo id, or the "
        "http://HOST:PORT/v1 URL of an OpenAI-compatible server",
    )
    group.add_argument(
        "--engine",
        choices=[registry.AUTO, *registry.names()],
        default=None,
        help="force an engine (default: chosen from --model)",
    )
    group.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="remote engine: the environment variable that holds the server's API key",
    )
    group.add_argument(
        "--template",
        help="chat template: auto, model, chatml, llama2, alpaca, vicuna, chatglm, baichuan, cosplay",
    )
    group.add_argument(
        "--n-ctx", type=int, help="context window in tokens (default: the model's, at most 4096)"
    )
    group.add_argument("--threads", type=int, help="CPU threads for the CPU engine")
    group.add_argument(
        "--gpu-layers",
        type=int,
        default=None,
        help="layers to offload (CPU engine built with GPU support)",
    )
    group.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a LoRA adapter to load (repeatable); the first one is activated",
    )
    group.add_argument("--load-8bit", action="store_true", help="GPU engine: load weights in 8-bit")
    group.add_argument(
        "--load-4bit", action="store_true", help="GPU engine: load weights in 4-bit NF4"
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="GPU engine: allow the model's own Python code (ChatGLM, Baichuan)",
    )


def _adapters(values: list[str]) -> dict[str, str]:
    adapters = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value.rstrip("/")).stem or value, value
        if name in adapters and adapters[name] != path:
            raise CosplayError(
                f"Two adapters are named {name!r} ({adapters[name]} and {path}); "
                "name them apart with --adapter NAME=PATH."
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
            f"The persona {persona.name!r} was trained on {model}, which is not on this machine; "
            f"Cosplay never downloads a model a card names: pass --model {model} to download it."
        )
    return model, kind


def model_spec(
    args: argparse.Namespace, workspace: Workspace, persona: CharacterCard | None = None
) -> ModelSpec | None:
    """The model the flags name, else the base model of the persona's adapter, else the last
    model used, else None."""
    if args.load_8bit and args.load_4bit:
        raise CosplayError("Choose one of --load-8bit and --load-4bit, not both.")
    model, engine = args.model, args.engine or registry.AUTO
    if not model and persona is not None:
        model, engine = persona_model(persona, args.engine) or (None, engine)
    if model:
        adapters = _adapters(args.adapter)
        # An adapter trained by `cosplay train` brings the template it was trained with.
        trained = training_result(next(iter(adapters.values()), "")).get("template")
        spec = ModelSpec(
            model=model,
            engine=engine,
            template=args.template or trained,
            n_ctx=args.n_ctx,
            n_threads=args.threads,
            n_gpu_layers=args.gpu_layers or 0,
            adapters=adapters,
            load_8bit=args.load_8bit,
            load_4bit=args.load_4bit,
            trust_remote_code=args.trust_remote_code,
            api_key_env=args.api_key_env,
        )
        spec.kind()  # a model the engine cannot run: one sentence before anything loads
        return spec
    return ModelSpec.from_setting(workspace.last_model())


def load(spec: ModelSpec, workspace: Workspace) -> Engine:
    """Load the model and remember it as the last one used."""
    print(f"Loading {spec.model} …", file=sys.stderr, flush=True)
    engine = load_engine(spec)
    workspace.remember_model(spec.to_setting())
    return engine
