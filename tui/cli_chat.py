"""`cosplay chat` (the TUI) and `cosplay ask` (one reply on stdout).

The sessions, the engines and the TUI are imported when a command runs, not when the parser
is built (tui/cli.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
from typing import TYPE_CHECKING

from engines.errors import CosplayError
from engines.i18n import _

if TYPE_CHECKING:
    from engines.base import Engine
    from sessions.cards import CharacterCard
    from sessions.conversation import Conversation
    from sessions.models import Session
    from sessions.presets import Preset
    from sessions.prompt import UserPersona
    from sessions.workspace import Workspace


def persona_card(args: argparse.Namespace, workspace: Workspace) -> CharacterCard | None:
    """The card `--persona` names (a clear error before any model loads), or None."""
    if not args.persona:
        return None
    return workspace.personas.get(args.persona).card


def start_model(args: argparse.Namespace, workspace: Workspace, persona: CharacterCard | None):
    """(the spec the chat starts with, or None: the first-start screen, and why it shows).

    Nothing named or remembered: None and no notice. A remembered model that is gone: None and
    the sentence saying so (shown on that screen). A model named now that is wrong: the error."""
    from tui.cli_model import model_spec

    try:
        return model_spec(args, workspace, persona), ""
    except CosplayError as exc:
        if args.model or persona is not None:  # named now: a mistake to fix now
            raise
        return None, _("{problem} Choose another below.", problem=exc)


def run_chat(args: argparse.Namespace) -> int:
    from sessions.workspace import Workspace
    from tui.app import make_app
    from tui.cli_model import load

    with Workspace(args.home) as workspace:
        persona = persona_card(args, workspace)
        session_id = args.session
        if session_id is not None:
            workspace.store.get_session(session_id)  # a clear error now, not inside the app
        engine: Engine | None = None
        spec = None
        notice = ""  # why the first-start screen shows instead of the chat
        if args.demo:
            from engines.fake import FakeEngine

            engine = FakeEngine(delay=0.03)
        else:
            spec, notice = start_model(args, workspace, persona)
            # Load before the app starts: llama.cpp silences the terminal while it loads.
            engine = load(spec, workspace) if spec else None
        app = None
        try:
            if args.new:
                session_id = workspace.new_session().id
            app = make_app(
                workspace=workspace,
                engine=engine,
                session_id=session_id,
                persona=args.persona,
                start_notice=notice,
            )
            app.engine_spec = spec if engine is not None else None
            app.run()
        finally:
            engine = app.engine if app is not None else engine  # the models screen may swap it
            if engine is not None:
                engine.close()
    return app.return_code or 0


def _continued_session(args: argparse.Namespace, workspace: Workspace) -> Session | None:
    """The session `ask` continues, or None when it starts a new one."""
    if args.persona or args.new:
        return None
    session_id = args.session if args.session is not None else workspace.last_session()
    return workspace.store.get_session(session_id) if session_id is not None else None


def run_ask(args: argparse.Namespace) -> int:
    from sessions.conversation import Conversation
    from sessions.workspace import Workspace
    from tui.cli_model import load, model_spec

    with Workspace(args.home) as workspace:
        persona = persona_card(args, workspace)
        if persona is not None and args.session is not None:
            raise CosplayError(_("--persona starts a new session; leave out --session."))
        session = _continued_session(args, workspace)
        if session is not None and session.persona:  # continuing a persona session
            persona = workspace.personas.get(session.persona).card
        preset = workspace.preset(args.preset) if args.preset else None  # unknown: said now
        spec = model_spec(args, workspace, persona)
        if spec is None:
            raise CosplayError(
                _(
                    "No model configured; pass --model PATH (a .gguf file, a model directory or "
                    "a server URL) or set model.default in the config (`cosplay models list` "
                    "shows the models here)."
                )
            )
        if args.dry_run and session is not None and args.user_name:
            raise CosplayError(
                _("--user-name changes the session; leave it out of --dry-run, or add --new.")
            )
        engine = load(spec, workspace)  # before a new session: a bad model leaves none behind
        created = session is None
        try:
            user = _user_persona(args, workspace, session)
            if session is None:
                session = workspace.new_session(persona.name if persona else None, user=user)
            elif user is not None:
                session = workspace.set_session_user_persona(session.id, user)
            conversation = Conversation(workspace, engine, session.id)
            if args.dry_run:
                _dry_run(args, conversation, preset)
            else:
                _ask(args, conversation, preset)
        finally:
            if args.dry_run and created and session is not None:
                workspace.store.delete_session(session.id)  # planned in it; now gone
            engine.close()
    return 0


def _dry_run(args: argparse.Namespace, conversation: Conversation, preset: Preset | None) -> None:
    """Print the prompt the reply would get (the prompt inspector's report); generate and save
    nothing."""
    from sessions.inspector import inspect, report

    params = _params(args, conversation, preset)
    pick = _scene_turn(args, conversation)[1]
    plan = conversation.preview(args.text, params, pick)
    engine = conversation.engine
    print(report(inspect(plan, engine, params.max_new_tokens), engine))


def _scene_turn(args: argparse.Namespace, conversation: Conversation):
    """Who answers `args.text` if it is sent now, as in the chat screen: the scene's order, or
    `--speaker` (any of a character's names). The scene's notices go to stderr; nobody to
    answer (manual order, everyone muted) is an error before anything is saved."""
    from sessions.group import resolve_member, scene_members

    pick = None
    if args.speaker:
        cast = conversation.cast
        if not cast:
            raise CosplayError(
                _(
                    "--speaker picks a character of the session; this one has none (start one "
                    "with --persona)."
                )
            )
        name = resolve_member(args.speaker, scene_members(cast, conversation.workspace.personas))
        if name is None:
            raise CosplayError(
                _(
                    "{speaker} is not in this scene ({cast}); pass one of their names to "
                    "--speaker.",
                    speaker=args.speaker,
                    cast="、".join(cast),
                )
            )
        pick = [name]
    turn, notices = conversation.answer(conversation.pending(args.text), pick)
    if turn is None:
        raise CosplayError(" ".join([*notices, _("Nothing was saved; pass --speaker NAME.")]))
    for notice in notices:
        print(f"({notice})", file=sys.stderr)
    return turn, pick


def _user_persona(
    args: argparse.Namespace, workspace: Workspace, session: Session | None
) -> UserPersona | None:
    """`--user-name` over who you are in the session (a new one: your default), or None."""
    from sessions.prompt import UserPersona

    if not args.user_name:
        return None
    if session is not None:
        base = workspace.session_user_persona(session)
    else:
        base = workspace.default_user_persona() or UserPersona()
    return UserPersona(" ".join(args.user_name.split()), base.description)


def _ask(args: argparse.Namespace, conversation: Conversation, preset: Preset | None) -> None:
    """Save the text, stream the reply (or each addressed character's) to stdout."""
    from sessions.conversation import ReplyEvents, Turn

    params = _params(args, conversation, preset)
    speakers = _scene_turn(args, conversation)[0].speakers
    user = conversation.say(args.text)
    turn = Turn(user.id, speakers)  # the draws depend on the place and text, not the id
    several = len(turn.speakers) > 1

    def started(speaker: str, plan) -> None:
        if several:
            print(f"{speaker}: ", end="", flush=True)
        if plan.summary:
            print(f"({plan.summary})", file=sys.stderr)

    def piece(text: str) -> None:
        print(text, end="", flush=True)

    conversation.reply(turn, params, threading.Event(), ReplyEvents(started, piece))
    print()
    conversation.workspace.remember_session(conversation.session_id)
    print(_("(session {session_id})", session_id=conversation.session_id), file=sys.stderr)


def _params(args: argparse.Namespace, conversation: Conversation, preset: Preset | None):
    """The session's parameters, the preset over them, the flags over both (this reply only)."""
    params = conversation.params()
    if preset is not None:
        params = dataclasses.replace(params, **preset.values)
    for flag, field in (("max_tokens", "max_new_tokens"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            setattr(params, field, getattr(args, flag))
    if args.temperature is not None:
        params.temperature = args.temperature
    return params


def register(subparsers: argparse._SubParsersAction) -> None:
    chat = subparsers.add_parser("chat", help=_("open the chat TUI (the default command)"))
    chat.later(_chat_arguments)
    ask = subparsers.add_parser("ask", help=_("stream one reply to stdout and save both turns"))
    ask.later(_ask_arguments)


def _chat_arguments(chat: argparse.ArgumentParser) -> None:
    from tui.cli_model import add_model_arguments

    add_model_arguments(chat)
    chat.add_argument("--session", type=int, help=_("open this session"))
    chat.add_argument("--new", action="store_true", help=_("start a new session"))
    chat.add_argument(
        "--demo", action="store_true", help=_("use the scripted demo engine (no model)")
    )
    chat.add_argument("--persona", metavar="NAME", help=_("start a new session with this persona"))
    chat.set_defaults(func=run_chat)


def _ask_arguments(ask: argparse.ArgumentParser) -> None:
    from tui.cli_model import add_model_arguments

    add_model_arguments(ask)
    ask.add_argument("--session", type=int, help=_("continue this session (default: the last one)"))
    ask.add_argument("--new", action="store_true", help=_("start a new session"))
    ask.add_argument("--persona", metavar="NAME", help=_("start a new session with this persona"))
    ask.add_argument("--max-tokens", type=int, help=_("max new tokens"))
    ask.add_argument("--seed", type=int, help=_("sampling seed (for reproducible replies)"))
    ask.add_argument("--temperature", type=float, help=_("sampling temperature"))
    ask.add_argument(
        "--preset",
        metavar="NAME",
        help=_(
            "sample this reply with a preset: 确定/deterministic, 平衡/balanced, 创意/creative, "
            "seed (the seed chat server's defaults) or one you saved"
        ),
    )
    ask.add_argument("--user-name", metavar="NAME", help=_("your name ({{user}}) in this session"))
    ask.add_argument(
        "--speaker",
        metavar="NAME",
        help=_("in a group scene, this character answers (any of its names), whatever the order"),
    )
    ask.add_argument(
        "--dry-run",
        action="store_true",
        help=_(
            "print the exact prompt the reply would get (tokens per part); generate and save "
            "nothing"
        ),
    )
    ask.add_argument("text", help=_("your message"))
    ask.set_defaults(func=run_ask)
