"""`cosplay config path | show | set KEY VALUE`: the config file (sessions/config.py)."""

from __future__ import annotations

import argparse
import sys

from engines.i18n import _


def _config_path(args: argparse.Namespace):
    from sessions.workspace import data_paths

    return data_paths(args.home).config


def run_path(args: argparse.Namespace) -> int:
    print(_config_path(args))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from sessions.config import describe, load_config

    config = load_config(_config_path(args))
    for warning in config.warnings:
        print(f"cosplay: {warning}", file=sys.stderr)
    print(describe(config))
    return 0


def run_set(args: argparse.Namespace) -> int:
    from sessions.config import parse_value, write_value

    path = _config_path(args)
    value = parse_value(args.key, args.value)
    write_value(path, args.key, value)
    print(_("{key} = {value} in {path}", key=args.key, value=repr(value), path=path))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help=_("the config file: where it is, what it holds"))
    commands = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    commands.add_parser("path", help=_("print the config file's path")).set_defaults(func=run_path)
    show = commands.add_parser("show", help=_("every setting, its value and what it does"))
    show.set_defaults(func=run_show)
    change = commands.add_parser("set", help=_("set one setting (comments in the file are kept)"))
    change.add_argument("key", help=_("e.g. model.n_ctx (`cosplay config show` lists them)"))
    change.add_argument("value", help=_('the value; a list as a,b; a table as { a = "b" }'))
    change.set_defaults(func=run_set)
