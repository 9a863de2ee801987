"""The `cosplay` command: the TUI (`chat`, or no subcommand) and scripting subcommands.

Each command family lives in its own module with a `register(subparsers)`
function; this module only assembles them and turns user mistakes
(CosplayError) into one sentence on stderr and exit code 2. Nothing heavy is
imported here, nor by a module's `register`: a command whose arguments need
heavy imports (pydantic models, the engine table) adds them in
`parser.later(add)`, run only when the command line names that command. So
`cosplay --help` and `cosplay sessions list` start fast (tests/test_startup.py).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import os
import sys
from collections.abc import Callable

from engines.errors import CosplayError
from engines.i18n import N_, _
from tui import __version__
from tui.cli_language import CellWidthHelpFormatter, choose_language

# Modules contributing subcommands, each with `register(subparsers)`.
COMMAND_MODULES = [
    "tui.cli_chat",
    "tui.cli_sessions",
    "tui.cli_personas",
    "tui.cli_lore",
    "tui.cli_train",
    "tui.cli_models",
    "tui.cli_config",
]

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", CellWidthHelpFormatter)
        super().__init__(*args, **kwargs)
        self._later: list[Callable[[argparse.ArgumentParser], None]] = []

    def later(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        """Call `add(self)` to add this command's arguments once the command is needed."""
        self._later.append(add)

    def complete(self) -> None:
        while self._later:
            self._later.pop(0)(self)

    def error(self, message: str) -> None:  # one sentence, exit 2, no usage dump
        sentence = _("{problem}; see `{command} --help`.", problem=message, command=self.prog)
        sys.stderr.write(f"cosplay: {sentence}\n")
        raise SystemExit(EXIT_USER_ERROR)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; given `argv`, only the commands it names get their arguments
    (the others keep just their name and help, all `cosplay --help` shows)."""
    parser = _Parser(
        prog="cosplay",
        description=_("Roleplay chat with local language models in the terminal."),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"cosplay {__version__}",
        help=_("show program's version number and exit"),
    )
    parser.add_argument(
        "--home",
        help=_("data directory (default: $COSPLAY_HOME or the platform's user data dir)"),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for name, command in subparsers.choices.items():
        if argv is None or name in argv:
            command.complete()
    return parser


def _log_to_file() -> None:
    """COSPLAY_LOG=FILE: debug log (ours and llama.cpp's) to that file; the TUI owns the screen."""
    path = os.environ.get("COSPLAY_LOG")
    if path:
        import logging

        logging.basicConfig(
            filename=path, level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s"
        )


SQLITE_INT = 2**63  # session ids are SQLite integers: -2**63 ≤ id < 2**63
ID_ARGUMENTS = {"session", "id"}  # `--session N`, `sessions show|export|delete ID`
# Empty values these take are handled where they are read, with a message of their own.
EMPTY_HANDLED_ELSEWHERE = {"home"}
# The model flags of `chat` and `ask`, checked before any model loads (dest -> (low, high, hint)).
MODEL_LIMITS = {
    "n_ctx": (16, 2**32 - 1, N_("the context window in tokens")),
    "threads": (1, 2**31 - 1, N_("the CPU engine's thread count")),
    "gpu_layers": (-1, 2**31 - 1, N_("-1 offloads every layer")),
}


def _check_utf8(argv: list[str]) -> None:
    """Python hands over undecodable bytes as lone surrogates, which crash later when printed,
    stored in SQLite or written as JSON: refuse them here, naming the argument."""
    for value in argv:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(value).decode("utf-8", "backslashreplace")
            raise CosplayError(
                _(
                    "The argument '{shown}' is not valid UTF-8; pass text and names in UTF-8 "
                    "and rename a file or folder whose name is not.",
                    shown=shown,
                )
            ) from None


def _chosen_actions(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The arguments of the parser and of each subcommand `args` went through."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                yield from _chosen_actions(chosen, args)
        else:
            yield action


def _label(action: argparse.Action, argv: list[str]) -> str:
    """The option as typed (`-m` or `--model`), or a positional's name (`TEXT`)."""
    for option in action.option_strings:
        if any(arg == option or arg.startswith(option + "=") for arg in argv):
            return option
    if action.option_strings:
        return max(action.option_strings, key=len)
    return action.metavar or action.dest.upper()


def _check_values(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]
) -> None:
    """What argparse lets through and nothing downstream should see: empty strings, ids beyond
    SQLite's 64 bits, nan and infinite numbers, absurd model flags. Runs before any command,
    so a command that loads a model refuses these before loading it."""
    for action in _chosen_actions(parser, args):
        value = getattr(args, action.dest, None)
        if action.nargs == 0 or value is None or value == action.default:
            continue
        label = _label(action, argv)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and not item.strip():
                if action.dest not in EMPTY_HANDLED_ELSEWHERE:
                    raise CosplayError(_("{label} must not be empty.", label=label))
            elif isinstance(item, float) and not math.isfinite(item):
                raise CosplayError(
                    _("{label} must be a finite number (got {item}).", label=label, item=item)
                )
            elif isinstance(item, int) and not isinstance(item, bool):
                if action.dest in ID_ARGUMENTS and not -SQLITE_INT <= item < SQLITE_INT:
                    raise CosplayError(
                        _(
                            "There is no session {session_id}; `cosplay sessions list` shows the ids.",
                            session_id=item,
                        )
                    )
                if action.dest in MODEL_LIMITS:
                    low, high, hint = MODEL_LIMITS[action.dest]
                    if not low <= item <= high:
                        raise CosplayError(
                            _(
                                "{label} must be between {low} and {high}, {hint} (got {item}).",
                                label=label,
                                low=low,
                                high=high,
                                hint=_(hint),
                                item=item,
                            )
                        )
                if abs(item) >= SQLITE_INT:
                    raise CosplayError(
                        _("{label} is far too large (got {item}).", label=label, item=item)
                    )
    if hasattr(args, "max_tokens"):  # `ask`
        _check_generation(args)


def _check_generation(args: argparse.Namespace) -> None:
    """`ask`'s sampling flags, validated as GenerationParams would, before the model loads."""
    from engines.base import GenerationParams

    fields = {"max_new_tokens": args.max_tokens, "seed": args.seed, "temperature": args.temperature}
    GenerationParams(**{name: value for name, value in fields.items() if value is not None})


def main(argv: list[str] | None = None) -> int:
    _log_to_file()
    argv = sys.argv[1:] if argv is None else argv
    choose_language(argv)  # before the parser: its help texts are translated as they are added
    parser = build_parser(argv)
    try:
        _check_utf8(argv)
        args = parser.parse_args(argv)
        if args.command is None:  # bare `cosplay`: reopen the last model and session
            parser = build_parser([*argv, "chat"])
            args = parser.parse_args([*argv, "chat"])
        _check_values(parser, args, argv)
        return int(args.func(args) or 0)
    except CosplayError as exc:
        sys.stderr.write(f"cosplay: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("cosplay: " + _("interrupted.") + "\n")
        return 130
    except BrokenPipeError:  # `cosplay sessions list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except Exception as exc:
        if not _is_validation_error(exc):
            raise
        from engines.validation import describe, field_path

        error = exc.errors()[0]  # a pydantic model's (train options, a card, a lorebook)
        field = field_path(error) or "value"
        message = _("invalid {field}: {problem}.", field=field, problem=describe(error))
        sys.stderr.write(f"cosplay: {message}\n")
        return EXIT_USER_ERROR


def _is_validation_error(exc: Exception) -> bool:
    """Whether `exc` is pydantic's ValidationError (not imported here: if pydantic was never
    imported, nothing raised one)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(exc, pydantic.ValidationError)


def run() -> int:
    """The `cosplay` command: `main`, then a process exit without the last full garbage
    collection. Python's own walks every object the command made (tens of thousands: ~40 ms
    of a 0.5 s `cosplay ask` on 2 cores, tests/test_startup.py); they all end with the
    process, and every file and database was closed where it was used. (So keep it that way:
    frozen, a file left open in a module global would never be flushed; atexit handlers, such
    as logging's, still run.) Not in `main`, which tests call in-process: there frozen objects
    would never be collected."""
    try:
        return main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    sys.exit(run())
