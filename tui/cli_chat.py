"""`cosplay chat` (the TUI) and `cosplay ask` (one reply on stdout), and their shared model flags."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
from pathlib import Path

from engines.base import CosplayError, Engine, GenerationParams
from engines.loader import ModelSpec, load_engine
from sessions.cards import CharacterCard
from sessions.group import (
    SpeakerTurn,
    next_speakers,
    reply_order,
    run_group_turn,
    session_cast,
    start_session,
)
from sessions.models import Role, Session
from sessions.paths import data_paths
from sessions.prompt import plan_prompt
from sessions.runtime import PersonaRuntime, training_result, use_persona
from sessions.store import Store
from sessions.turns import run_reply
from tui.cli_personas import persona_store

LAST_MODEL = "last_model"  # settings key: the ModelSpec of the last model used
LAST_SESSION = "last_session"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model", "-m", help="a .gguf file, a Hugging Face model directory or repo id"
    )
    group.add_argument(
        "--engine", choices=["auto", "cpu", "gpu"], default=None, help="force an engine"
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


def open_store(args: argparse.Namespace) -> Store:
    return Store(data_paths(args.home).ensure().database)


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


def model_spec(
    args: argparse.Namespace, store: Store, persona: CharacterCard | None = None
) -> ModelSpec | None:
    """The model the flags name, else the base model of the persona's adapter, else the last
    model used, else None."""
    if args.load_8bit and args.load_4bit:
        raise CosplayError("Choose one of --load-8bit and --load-4bit, not both.")
    model, engine = args.model, args.engine or "auto"
    if not model and persona is not None:
        runtime = PersonaRuntime.of(persona)
        if args.engine in ("cpu", "gpu"):
            runtime = dataclasses.replace(runtime, engine=args.engine)
        chosen = runtime.model_spec()
        if chosen is not None:
            model, engine = chosen.model, chosen.engine
    if model:
        adapters = _adapters(args.adapter)
        # An adapter trained by `cosplay train` brings the template it was trained with.
        trained = training_result(next(iter(adapters.values()), "")).get("template")
        return ModelSpec(
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
        )
    last = store.get_setting(LAST_MODEL)
    return ModelSpec(**last) if last else None


def load(spec: ModelSpec, store: Store) -> Engine:
    print(f"Loading {spec.model} …", file=sys.stderr, flush=True)
    engine = load_engine(spec)
    if spec.adapters:  # the first --adapter serves every persona that names none
        engine.default_adapter = next(iter(spec.adapters))
        engine.set_adapter(engine.default_adapter)
    store.set_setting(LAST_MODEL, spec.__dict__)
    return engine


def persona_card(args: argparse.Namespace) -> CharacterCard | None:
    """The card `--persona` names (a clear error before any model loads), or None."""
    if not args.persona:
        return None
    return persona_store(args).get(args.persona).card


def run_chat(args: argparse.Namespace) -> int:
    from tui.app import make_app

    store = open_store(args)
    persona = persona_card(args)
    session_id = args.session
    if session_id is not None:
        store.get_session(session_id)  # a clear error now, not inside the app
    engine: Engine | None
    if args.demo:
        from engines.fake import FakeEngine

        engine = FakeEngine(delay=0.03)
    else:
        spec = model_spec(args, store, persona)
        # Load before the app starts: llama.cpp silences the terminal while it loads.
        engine = load(spec, store) if spec else None
    if args.new:
        session_id = store.create_session().id
    app = make_app(store=store, engine=engine, session_id=session_id, persona=args.persona)
    try:
        app.run()
    finally:
        if engine is not None:
            engine.close()
        store.close()
    return app.return_code or 0


def _continued_session(args: argparse.Namespace, store: Store) -> Session | None:
    """The session `ask` continues, or None when it starts a new one."""
    if args.persona or args.new:
        return None
    session_id = args.session if args.session is not None else store.get_setting(LAST_SESSION)
    return store.get_session(session_id) if session_id is not None else None


def run_ask(args: argparse.Namespace) -> int:
    store = open_store(args)
    persona = persona_card(args)
    if persona is not None and args.session is not None:
        raise CosplayError("--persona starts a new session; leave out --session.")
    session = _continued_session(args, store)
    if session is not None and session.persona:  # continuing a persona session
        persona = persona_store(args).get(session.persona).card
    spec = model_spec(args, store, persona)
    if spec is None:
        raise CosplayError(
            "No model configured; pass --model PATH (a .gguf file or a model directory)."
        )
    engine = load(spec, store)  # before a new session is made: a bad model leaves none behind
    try:
        if session is None:
            session = (
                start_session(store, persona) if persona else store.create_session(args.text[:40])
            )
        params = GenerationParams(**session.settings.get("params", {}))
        if args.max_tokens is not None:
            params.max_new_tokens = args.max_tokens
        if args.seed is not None:
            params.seed = args.seed
        if args.temperature is not None:
            params.temperature = args.temperature
        user = store.add_message(session.id, Role.USER, args.text, parent_id=session.leaf_id)
        session = store.get_session(session.id)
        cast = session_cast(session)
        if cast:
            _ask_cast(args, store, engine, session, cast, params)
        else:
            use_persona(engine, None)
            plan = plan_prompt(session, store.branch(session.id), engine, params)
            if plan.summary:
                print(f"({plan.summary})", file=sys.stderr)
            run_reply(
                store,
                engine,
                session_id=session.id,
                parent_id=user.id,
                prompt=plan.messages,
                params=params,
                cancel=threading.Event(),
                on_piece=lambda piece: print(piece, end="", flush=True),
            )
            print()
        store.set_setting(LAST_SESSION, session.id)
        print(f"(session {session.id})", file=sys.stderr)
    finally:
        engine.close()
        store.close()
    return 0


def _ask_cast(args, store, engine, session, cast, params) -> None:
    """The replies of the persona (or, in a scene, of each addressed character) to the text."""
    speakers = next_speakers(cast, reply_order(session), args.text) or cast[:1]

    def started(turn: SpeakerTurn) -> None:
        if len(speakers) > 1:
            print(f"{turn.speaker}: ", end="", flush=True)
        if turn.plan.summary:
            print(f"({turn.plan.summary})", file=sys.stderr)

    run_group_turn(
        store,
        engine,
        persona_store(args),
        session.id,
        speakers,
        params,
        threading.Event(),
        on_start=started,
        on_piece=lambda _speaker, piece: print(piece, end="", flush=True),
    )
    print()


def register(subparsers: argparse._SubParsersAction) -> None:
    chat = subparsers.add_parser("chat", help="open the chat TUI (the default command)")
    add_model_arguments(chat)
    chat.add_argument("--session", type=int, help="open this session")
    chat.add_argument("--new", action="store_true", help="start a new session")
    chat.add_argument("--demo", action="store_true", help="use the scripted demo engine (no model)")
    chat.add_argument("--persona", metavar="NAME", help="start a new session with this persona")
    chat.set_defaults(func=run_chat)

    ask = subparsers.add_parser("ask", help="stream one reply to stdout and save both turns")
    add_model_arguments(ask)
    ask.add_argument("--session", type=int, help="continue this session (default: the last one)")
    ask.add_argument("--new", action="store_true", help="start a new session")
    ask.add_argument("--persona", metavar="NAME", help="start a new session with this persona")
    ask.add_argument("--max-tokens", type=int, help="max new tokens")
    ask.add_argument("--seed", type=int, help="sampling seed (for reproducible replies)")
    ask.add_argument("--temperature", type=float, help="sampling temperature")
    ask.add_argument("text", help="your message")
    ask.set_defaults(func=run_ask)
