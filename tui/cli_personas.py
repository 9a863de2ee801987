"""`cosplay personas import | export | list | show | delete`: character cards from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a command runs: the cards are pydantic models
    from sessions.personas import Persona, PersonaStore


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
    source = "built-in (read-only)" if persona.builtin else str(persona.path)
    lines = [f"# {data.name}", f"source: {source}"]
    for label, value in [
        ("tags", ", ".join(data.tags)),
        ("creator", data.creator),
        ("version", data.character_version),
        ("adapter", ext.adapter),
        ("trained", _training_summary(ext.adapter)),
        ("GGUF adapter", ext.adapter_gguf),
        ("base model", ext.base),
        ("base GGUF", ext.base_gguf),
        ("template", ext.template),
        ("engine", ext.engine),
        ("sampling", json.dumps(ext.sampling, ensure_ascii=False) if ext.sampling else ""),
    ]:
        if value:
            lines.append(f"{label}: {value}")
    for label, value in [
        ("Creator notes", data.creator_notes),
        ("Description", data.description),
        ("Personality", data.personality),
        ("Scenario", data.scenario),
        ("System prompt", data.system_prompt),
        ("Post-history instructions", data.post_history_instructions),
        ("First message", data.first_mes),
        *[(f"Alternate greeting {i}", text) for i, text in enumerate(data.alternate_greetings, 1)],
        ("Example dialogues", data.mes_example),
    ]:
        if value.strip():
            lines += ["", f"## {label}", value.strip()]
    if data.character_book is not None:
        lines += ["", f"## Lorebook: {len(data.character_book.entries)} entries"]
    return "\n".join(lines)


def _training_summary(adapter: str) -> str:
    """'40 steps, train loss 0.0518, eval loss 0.1079' from the adapter's cosplay.json."""
    from sessions.runtime import training_result

    final = training_result(adapter).get("final") or {}
    if not isinstance(final, dict) or not final.get("step"):
        return ""
    parts = [f"{final['step']} steps"]
    for key in ("train_loss", "eval_loss"):
        if isinstance(final.get(key), (int, float)):
            parts.append(f"{key.replace('_', ' ')} {final[key]:.4f}")
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
                mark = "built-in" if p.builtin else "user"
                print(f"{p.name}\t{mark}\t{_summary(p)}")
        for problem in store.problems:
            print(f"cosplay: skipped {problem}", file=sys.stderr)
    elif args.action == "show":
        persona = store.get(args.name)
        if args.json:
            print(persona.card.to_json(), end="")
        else:
            print(describe(persona))
    elif args.action == "import":
        persona = store.import_file(args.file, replace=args.replace)
        print(f"Imported {persona.name!r}; chat with it: cosplay chat --persona {persona.name!r}")
    elif args.action == "export":
        out = store.export(args.name, args.out)
        print(f"Wrote {out}.")
    elif args.action == "delete":
        store.delete(args.name)
        print(f"Deleted persona {args.name!r}.")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "personas", help="import, export, list, show or delete personas (character cards)"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    importing = actions.add_parser("import", help="import a V1/V2/V3 card (.json or .png)")
    importing.add_argument("file", metavar="FILE")
    importing.add_argument(
        "--replace", action="store_true", help="replace a persona of the same name"
    )
    export = actions.add_parser("export", help="write a persona as V2 JSON or a PNG card")
    export.add_argument("name", metavar="NAME")
    export.add_argument("out", metavar="OUT", help="a .json or .png file")
    listing = actions.add_parser("list", help="built-in and your own personas")
    listing.add_argument("--search", help="only personas whose name, tags or text contain this")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = actions.add_parser("show", help="one persona's card")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="the V2 card JSON")
    delete = actions.add_parser(
        "delete", help="delete one of your personas (built-ins are read-only)"
    )
    delete.add_argument("name", metavar="NAME")
    parser.set_defaults(func=run_personas)
