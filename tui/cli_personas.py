"""`cosplay personas import | export | list | show | delete`: character cards from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from engines.i18n import N_, _

if TYPE_CHECKING:  # imported when a command runs: the cards are pydantic models
    from sessions.personas import Persona, PersonaStore


# How `personas show` reports the adapter's final losses (keys of its cosplay.json).
LOSS_LABELS = {"train_loss": N_("train loss {loss}"), "eval_loss": N_("eval loss {loss}")}


def persona_store(args: argparse.Namespace) -> PersonaStore:
    from sessions.personas import PersonaStore
    from sessions.workspace import data_paths

    return PersonaStore(data_paths(args.home).ensure().personas)


def _summary(persona: Persona) -> str:
    notes = persona.card.data.creator_notes or persona.card.data.description
    line = notes.strip().splitlines()[0] if notes.strip() else ""
    return line[:70] + ("…" if len(line) > 70 else "")


def describe(persona: Persona) -> str:
    """A persona as readable text: every field that has a value."""
    data, ext = persona.card.data, persona.card.cosplay
    source = _("built-in (read-only)") if persona.builtin else str(persona.path)
    lines = [f"# {data.name}", _("source: {source}", source=source)]
    for label, value in [
        (N_("tags"), ", ".join(data.tags)),
        (N_("creator"), data.creator),
        (N_("version"), data.character_version),
        (N_("adapter"), ext.adapter),
        (N_("trained"), _training_summary(ext.adapter)),
        (N_("GGUF adapter"), ext.adapter_gguf),
        (N_("base model"), ext.base),
        (N_("base GGUF"), ext.base_gguf),
        (N_("template"), ext.template),
        (N_("engine"), ext.engine),
        (N_("sampling"), json.dumps(ext.sampling, ensure_ascii=False) if ext.sampling else ""),
    ]:
        if value:
            lines.append(f"{_(label)}: {value}")
    for label, value in [
        (_("Creator notes"), data.creator_notes),
        (_("Description"), data.description),
        (_("Personality"), data.personality),
        (_("Scenario"), data.scenario),
        (_("System prompt"), data.system_prompt),
        (_("Post-history instructions"), data.post_history_instructions),
        (_("First message"), data.first_mes),
        *[
            (_("Alternate greeting {number}", number=number), text)
            for number, text in enumerate(data.alternate_greetings, 1)
        ],
        (_("Example dialogues"), data.mes_example),
    ]:
        if value.strip():
            lines += ["", f"## {label}", value.strip()]
    if data.character_book is not None:
        entries = len(data.character_book.entries)
        lines += ["", "## " + _("Lorebook: {count} entries", count=entries)]
    return "\n".join(lines)


def _training_summary(adapter: str) -> str:
    """'40 steps, train loss 0.0518, eval loss 0.1079' from the adapter's cosplay.json."""
    from sessions.runtime import training_result

    final = training_result(adapter).get("final") or {}
    if not isinstance(final, dict) or not final.get("step"):
        return ""
    parts = [_("{count} steps", count=final["step"])]
    for key in ("train_loss", "eval_loss"):
        if isinstance(final.get(key), (int, float)):
            parts.append(_(LOSS_LABELS[key], loss=f"{final[key]:.4f}"))
    return ", ".join(parts)


def run_personas(args: argparse.Namespace) -> int:
    store = persona_store(args)
    if args.action == "list":
        personas = store.list(args.search or "")
        if args.json:
            records = [
                {
                    "name": p.name,
                    "builtin": p.builtin,
                    "tags": p.card.data.tags,
                    "summary": _summary(p),
                }
                for p in personas
            ]
            json.dump(records, sys.stdout, ensure_ascii=False, indent=2)
            print()
        else:
            for p in personas:
                mark = _("built-in") if p.builtin else _("user")
                print(f"{p.name}\t{mark}\t{_summary(p)}")
        for problem in store.problems:
            print("cosplay: " + _("skipped {problem}", problem=problem), file=sys.stderr)
    elif args.action == "show":
        persona = store.get(args.name)
        if args.json:
            print(persona.card.to_json(), end="")
        else:
            print(describe(persona))
    elif args.action == "import":
        persona = store.import_file(args.file, replace=args.replace)
        name = repr(persona.name)
        print(_("Imported {name}; chat with it: cosplay chat --persona {name}", name=name))
    elif args.action == "export":
        out = store.export(args.name, args.out)
        print(_("Wrote {path}.", path=out))
    elif args.action == "delete":
        store.delete(args.name)
        print(_("Deleted persona {name}.", name=repr(args.name)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "personas", help=_("import, export, list, show or delete personas (character cards)")
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    importing = actions.add_parser("import", help=_("import a V1/V2/V3 card (.json or .png)"))
    importing.add_argument("file", metavar="FILE")
    importing.add_argument(
        "--replace", action="store_true", help=_("replace a persona of the same name")
    )
    export = actions.add_parser("export", help=_("write a persona as V2 JSON or a PNG card"))
    export.add_argument("name", metavar="NAME")
    export.add_argument("out", metavar="OUT", help=_("a .json or .png file"))
    listing = actions.add_parser("list", help=_("built-in and your own personas"))
    listing.add_argument("--search", help=_("only personas whose name, tags or text contain this"))
    listing.add_argument("--json", action="store_true", help=_("machine-readable output"))
    show = actions.add_parser("show", help=_("one persona's card"))
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help=_("the V2 card JSON"))
    delete = actions.add_parser(
        "delete", help=_("delete one of your personas (built-ins are read-only)")
    )
    delete.add_argument("name", metavar="NAME")
    parser.set_defaults(func=run_personas)
