"""The `cosplay` command: the TUI (`chat`, or no subcommand) and scripting subcommands.

Each command family lives in its own module with a `register(subparsers)`
function; this module only assembles them and turns user mistakes
(CosplayError) into one sentence on stderr and exit code 2. Nothing heavy is
imported here, so `cosplay --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pydantic import ValidationError

from engines.base import CosplayError
from tui import __version__

# Modules contributing subcommands, each with `register(subparsers)`.
COMMAND_MODULES = [
    "tui.cli_chat",
    "tui.cli_sessions",
    "tui.cli_personas",
    "tui.cli_train",
]

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, exit 2, no usage dump
        sys.stderr.write(f"cosplay: {message}; see `{self.prog} --help`.\n")
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cosplay",
        description="Roleplay chat with local language models in the terminal.",
    )
    parser.add_argument("--version", action="version", version=f"cosplay {__version__}")
    parser.add_argument(
        "--home", help="data directory (default: $COSPLAY_HOME or the platform's user data dir)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _log_to_file() -> None:
    """COSPLAY_LOG=FILE: debug log (ours and llama.cpp's) to that file; the TUI owns the screen."""
    import logging
    import os

    path = os.environ.get("COSPLAY_LOG")
    if path:
        logging.basicConfig(
            filename=path, level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s"
        )


def main(argv: list[str] | None = None) -> int:
    _log_to_file()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.command is None:  # bare `cosplay`: reopen the last model and session
        args = parser.parse_args([*argv, "chat"])
    try:
        return int(args.func(args) or 0)
    except CosplayError as exc:
        sys.stderr.write(f"cosplay: {exc}\n")
        return EXIT_USER_ERROR
    except ValidationError as exc:  # a generation parameter out of range
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "value"
        sys.stderr.write(f"cosplay: invalid {field}: {error['msg']}.\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("cosplay: interrupted.\n")
        return 130
    except BrokenPipeError:  # `cosplay sessions list | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
