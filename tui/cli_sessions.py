"""`cosplay sessions list | show | search | export | delete`: the saved conversations, for people and scripts."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from engines.errors import CosplayError
from engines.i18n import _

if TYPE_CHECKING:
    from sessions.models import SearchHit, Session
    from sessions.store import Store


def session_record(store: Store, session: Session, with_messages: bool) -> dict:
    record = {
        "id": session.id,
        "title": session.title,
        "persona": session.persona,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "leaf_id": session.leaf_id,
    }
    if with_messages:
        from sessions.chat_export import message_record  # one message's JSON, as exported

        record["messages"] = [message_record(m) for m in store.branch(session.id)]
    else:
        record["message_count"] = session.length  # the branch's length, without walking it
    return record


def to_markdown(store: Store, session: Session) -> str:
    lines = [f"# {session.title}", ""]
    for message in store.branch(session.id):
        speaker = message.name or message.role.value.capitalize()
        status = "" if message.status.value == "complete" else f" _({message.status.value})_"
        lines += [f"**{speaker}**{status}", "", message.content, ""]
    return "\n".join(lines)


def write_export(out: Path, text: str) -> None:
    """Write an export whole or not at all: a full disk leaves an earlier file as it was."""
    from engines.atomic import written_atomically

    if out.is_dir():
        raise CosplayError(
            _("--out {out} is a directory; give a file name, e.g. {out}/session.md.", out=out)
        )
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise CosplayError(
                _(
                    "--out {out}: {parent} is a file, not a folder; choose another path.",
                    out=out,
                    parent=parent,
                )
            )
    try:
        with written_atomically(out) as temporary:
            temporary.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CosplayError(
            _(
                "Cannot write {out} ({problem}); free some space or choose a folder you can "
                "write to.",
                out=out,
                problem=exc.strerror or exc,
            )
        ) from exc


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")


def search_record(hit: SearchHit) -> dict:
    return {
        "session_id": hit.session_id,
        "message_id": hit.message_id,
        "session_title": hit.session_title,
        "role": hit.role.value,
        "name": hit.name,
        "snippet": hit.snippet,
        "highlights": [list(span) for span in hit.highlights],
        "created_at": hit.created_at,
        "depth": hit.depth,
    }


def _cells(text: str) -> int:
    """Terminal columns: a Chinese character takes two."""
    import unicodedata

    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def _fit(text: str, width: int) -> str:
    """`text` on one line in exactly `width` columns: cut with '…', or padded."""
    text = " ".join(text.split())
    if _cells(text) > width:
        while text and _cells(text) > width - 1:
            text = text[:-1]
        text += "…"
    return text + " " * (width - _cells(text))


def print_search(store: Store, args: argparse.Namespace) -> None:
    """`sessions search`: one line a hit, `session:message  [title]  name: …snippet…`."""
    if args.limit < 1:
        raise CosplayError(_("--limit must be at least 1 (got {limit}).", limit=args.limit))
    if args.session is not None:
        store.get_session(args.session)  # an unknown id is one sentence, not "no match"
    hits = store.search(args.text, limit=args.limit, session_id=args.session)
    if args.json:
        json.dump([search_record(h) for h in hits], sys.stdout, ensure_ascii=False, indent=2)
        print()
        return
    if not hits:
        if args.session is not None:
            print(
                _(
                    "No messages in session {session_id} contain {text}.",
                    session_id=args.session,
                    text=repr(args.text),
                )
            )
        else:
            print(_("No messages contain {text}.", text=repr(args.text)))
        return
    refs = [f"{h.session_id}:{h.message_id}" for h in hits]
    ref_width = max(len(r) for r in refs)
    title_width = min(max(_cells(" ".join(h.session_title.split())) for h in hits) + 2, 24)
    for ref, hit in zip(refs, hits, strict=True):
        title = _fit(f"[{' '.join(hit.session_title.split())}]", title_width)
        speaker = " ".join((hit.name or hit.role.value).split())
        print(f"{ref:<{ref_width}}  {title}  {speaker}: {hit.snippet}")


def export_chat(store: Store, args: argparse.Namespace) -> None:
    """`sessions export ID --format md|json|st|tgw|txt [-o FILE]` (sessions/chat_export/)."""
    from sessions.chat_export import export_session

    text, notes = export_session(store, args.id, args.format)
    if args.format not in ("st", "tgw"):  # the apps write their files without a final newline
        text += "\n"
    if args.out:
        write_export(Path(args.out).expanduser(), text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    for note in notes:
        print("cosplay: " + _("note: {note}", note=note), file=sys.stderr)


def _printable(text: str) -> str:
    """A title or name from a file, safe on a terminal: control characters (escape codes)
    shown as '?', one line."""
    return "".join(
        "?" if ord(c) < 32 or 0x7F <= ord(c) < 0xA0 else c for c in " ".join(text.split())
    )


def import_chat_file(workspace, args: argparse.Namespace) -> None:
    """`sessions import FILE [--json]` (sessions/chat_import/): the format is read from the
    content; prints the new session's id and a one-line summary."""
    from sessions.chat_import import import_into

    path = Path(args.file).expanduser()
    session, chat = import_into(workspace, path)
    record = {
        "id": session.id,
        "title": session.title,
        "format": chat.kind,
        "persona": session.persona,
        "messages": len(chat.messages),
        "branch_length": session.length,
    }
    if args.json:
        json.dump(record, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return
    values = {
        "file": _printable(path.name),
        "format": chat.label,
        "session_id": session.id,
        "messages": len(chat.messages),
        "branch": session.length,
        "title": repr(_printable(session.title)),
    }
    if session.persona:
        print(
            _(
                "Imported {file} ({format}) as session {session_id}: {messages} messages, "
                "{branch} on the current branch, persona {persona}; title {title}.",
                persona=_printable(session.persona),
                **values,
            )
        )
    else:
        print(
            _(
                "Imported {file} ({format}) as session {session_id}: {messages} messages, "
                "{branch} on the current branch; title {title}.",
                **values,
            )
        )


def run_sessions(args: argparse.Namespace) -> int:
    from sessions.workspace import Workspace

    with Workspace(args.home) as workspace:
        store = workspace.store
        if args.action == "list":
            sessions = store.list_sessions()
            if args.json:
                json.dump(
                    [session_record(store, s, False) for s in sessions],
                    sys.stdout,
                    ensure_ascii=False,
                    indent=2,
                )
                print()
            elif not sessions:
                print(_("No sessions yet; start one with `cosplay chat` or `cosplay ask`."))
            else:
                for s in sessions:
                    count = _("{count} msgs", count=f"{s.length:>4}")
                    print(f"{s.id:>5}  {_stamp(s.updated_at)}  {count}  {s.title}")
        elif args.action == "show":
            session = store.get_session(args.id)
            if args.json:
                json.dump(
                    session_record(store, session, True), sys.stdout, ensure_ascii=False, indent=2
                )
                print()
            else:
                print(to_markdown(store, session))
        elif args.action == "export":
            export_chat(store, args)
        elif args.action == "import":
            import_chat_file(workspace, args)
        elif args.action == "delete":
            store.delete_session(args.id)
            if args.vacuum:
                store.vacuum()
            if args.vacuum:
                print(
                    _("Deleted session {session_id} and vacuumed the database.", session_id=args.id)
                )
            else:
                print(_("Deleted session {session_id}.", session_id=args.id))
        elif args.action == "search":
            print_search(store, args)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sessions", help=_("list, show, search, export or delete saved sessions")
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help=_("all sessions, most recent first"))
    listing.add_argument("--json", action="store_true", help=_("machine-readable output"))
    show = actions.add_parser("show", help=_("one session's transcript"))
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help=_("machine-readable output"))
    export = actions.add_parser(
        "export",
        help=_(
            "write a session as a transcript, our JSON, or a SillyTavern / "
            "text-generation-webui chat"
        ),
        description=_(
            "md, txt: the current branch as a transcript; json: the whole tree "
            "(imports back identical); st: SillyTavern chat JSONL (versions as swipes); tgw: "
            "text-generation-webui chat JSON (versions as versions)."
        ),
    )
    export.add_argument("id", type=int)
    export.add_argument("--format", choices=["md", "json", "st", "tgw", "txt"], default="md")
    export.add_argument("-o", "--out", help=_("file to write (default: stdout)"))
    importing = actions.add_parser(
        "import",
        help=_("a SillyTavern, text-generation-webui or Cosplay JSON chat as a new session"),
        description=_(
            "The format is told from the content: SillyTavern .jsonl (swipes become "
            "versions), text-generation-webui .json (and its older data/data_visible form), or "
            "a `sessions export --format json` file."
        ),
    )
    importing.add_argument("file", metavar="FILE")
    importing.add_argument("--json", action="store_true", help=_("machine-readable output"))
    delete = actions.add_parser("delete", help=_("delete a session and its messages"))
    delete.add_argument("id", type=int)
    delete.add_argument(
        "--vacuum",
        action="store_true",
        help=_("then rebuild the database file so no deleted text stays recoverable in it"),
    )
    search = actions.add_parser(
        "search",
        help=_("find messages in all sessions (words of any length, Chinese too)"),
        description=_(
            "Messages holding every word of TEXT (each a literal substring; English "
            "in either case), newest first: `SESSION:MESSAGE  [title]  speaker: …snippet…`."
        ),
    )
    search.add_argument("text", metavar="TEXT", help=_("the words to find"))
    search.add_argument("--session", type=int, metavar="ID", help=_("only this session"))
    search.add_argument(
        "--limit", type=int, default=50, metavar="N", help=_("at most N hits (default 50)")
    )
    search.add_argument("--json", action="store_true", help=_("machine-readable output"))
    parser.set_defaults(func=run_sessions)
