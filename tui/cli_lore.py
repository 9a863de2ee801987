"""`cosplay lore list | show | import | export | delete | attach | detach`: standalone lorebooks
(SillyTavern World Info) in the data directory's `lorebooks/`, attached to a session or a persona.
"""

from __future__ import annotations

import argparse
import json
import sys

from engines.errors import CosplayError
from engines.i18n import N_, _


def _folder(args: argparse.Namespace):
    from sessions.lorebook_files import lorebook_folder
    from sessions.workspace import data_paths

    return lorebook_folder(data_paths(args.home).root)


def _attach(args: argparse.Namespace, folder, attach: bool) -> str:
    from sessions.lore_attach import attach_to_persona, attach_to_session
    from sessions.workspace import Workspace

    if attach and not folder.exists(args.name):
        folder.book(args.name)  # the error that names the known books
    with Workspace(args.home) as workspace:
        if args.session is not None:
            attach_to_session(workspace.store, args.session, args.name, attach)
            return _("session {session_id}", session_id=args.session)
        attach_to_persona(workspace.personas, args.persona, args.name, attach)
        return _("persona {name}", name=repr(args.persona))


def run_lore(args: argparse.Namespace) -> int:
    folder = _folder(args)
    if args.action == "list":
        names = folder.names()
        if args.json:
            json.dump(names, sys.stdout, ensure_ascii=False)
            print()
        for name in [] if args.json else names:
            try:
                count = len(folder.book(name).entries)
                print(f"{name}\t" + _("{count} entries", count=count))
            except CosplayError as exc:
                print(f"{name}\t" + _("unreadable: {problem}", problem=exc))
    elif args.action == "show":
        from sessions.lorebook import lore_entry

        for entry in folder.book(args.name).entries:
            lore = lore_entry(entry)
            keys = _("constant") if lore.constant else ", ".join(lore.keys) or _("(no keys)")
            state = "" if lore.enabled else " " + _("(disabled)")
            where = lore.position.name.lower()
            if lore.position == 4:
                where += " " + _("{depth} as {role}", depth=lore.depth, role=lore.role)
            order = _("order {order}", order=f"{lore.order:g}")
            print(f"{lore.label}{state}\t{keys}\t{order}\t{where}")
    elif args.action == "import":
        name = folder.import_file(args.file, args.name, replace=args.replace)
        print(
            _(
                "Imported lorebook {name}; attach it: cosplay lore attach {name} --session ID",
                name=repr(name),
            )
        )
    elif args.action == "export":
        print(_("Wrote {path}.", path=folder.export(args.name, args.out)))
    elif args.action == "delete":
        folder.delete(args.name)
        print(_("Deleted lorebook {name}.", name=repr(args.name)))
    else:
        attach = args.action == "attach"
        where = _attach(args, folder, attach)
        done = N_("Attached {name} to {where}.") if attach else N_("Detached {name} from {where}.")
        print(_(done, name=repr(args.name), where=where))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lore", help=_("lorebooks (SillyTavern World Info): import, export, attach to a chat")
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help=_("the lorebooks kept in the data directory"))
    listing.add_argument("--json", action="store_true", help=_("the names as a JSON list"))
    show = actions.add_parser("show", help=_("one lorebook's entries: keys, order, place"))
    show.add_argument("name", metavar="NAME")
    importing = actions.add_parser(
        "import", help=_("keep a World Info JSON, a character_book, or a card's lorebook")
    )
    importing.add_argument("file", metavar="FILE")
    importing.add_argument("--name", help=_("the lorebook's name (default: the file's name)"))
    importing.add_argument("--replace", action="store_true", help=_("replace one of that name"))
    export = actions.add_parser("export", help=_("write a lorebook as SillyTavern World Info JSON"))
    export.add_argument("name", metavar="NAME")
    export.add_argument("out", metavar="FILE")
    delete = actions.add_parser("delete", help=_("delete a lorebook"))
    delete.add_argument("name", metavar="NAME")
    for action, text in (
        ("attach", N_("read a lorebook in a session or a persona's chats")),
        ("detach", N_("stop reading it in a session or a persona's chats")),
    ):
        sub = actions.add_parser(action, help=_(text))
        sub.add_argument("name", metavar="NAME")
        target = sub.add_mutually_exclusive_group(required=True)
        target.add_argument("--session", type=int, metavar="ID")
        target.add_argument("--persona", metavar="NAME")
    parser.set_defaults(func=run_lore)
