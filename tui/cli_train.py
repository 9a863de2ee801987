"""`cosplay train`, `cosplay data extract`, `cosplay export-gguf` and `cosplay train-monitor`.

torch / transformers / peft are imported only when a command runs (inside
`engines.train.trainer.train`), and `train`'s arguments (from the pydantic TrainOptions) are
added only when the command line names it, so `cosplay --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engines.errors import CosplayError
from engines.i18n import N_, _

EXIT_INTERRUPTED = 130
ALIAS_EXAMPLE = '{"诸葛亮": ["孔明", "卧龙"]}'  # braces: a value, not a {placeholder}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The training options come from `TrainOptions`; only what happens after training is here."""
    from engines.train.options import add_arguments

    add_arguments(parser)
    parser.add_argument(
        "--persona",
        metavar="NAME",
        help=_("create or update this persona with the adapter bound"),
    )


def run_train(args: argparse.Namespace) -> int:
    from engines.train.options import TrainOptions
    from engines.train.trainer import train

    options = TrainOptions.from_namespace(args)
    result = train(options=options)
    if result.status == "dry-run":
        print(result.report)
        return 0
    for note in result.data_notes:  # records trained despite a problem, or skipped
        print(note, file=sys.stderr)
    if result.status == "interrupted":
        print(
            _(
                "Stopped at step {step}/{max_steps}; the checkpoint is saved in {out}. Run the "
                "same command again to resume.",
                step=result.step,
                max_steps=result.max_steps,
                out=result.out,
            ),
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    losses = []
    if result.train_loss is not None:
        losses.append(_("train loss {loss}", loss=f"{result.train_loss:.4f}"))
    if result.eval_loss is not None:
        losses.append(_("eval loss {loss}", loss=f"{result.eval_loss:.4f}"))
    print(
        _(
            "Adapter saved in {out} ({steps} steps; {losses}).",
            out=result.out,
            steps=result.step,
            losses=", ".join(losses),
        )
    )
    if result.gguf_path:
        print(_("GGUF LoRA for the CPU engine: {path}", path=result.gguf_path))
    if args.persona:
        path = bind_persona(
            args.persona,
            result.out,
            gguf_path=result.gguf_path,
            base_gguf=options.gguf if isinstance(options.gguf, str) else None,
            template=result.template,
            speaker=result.speaker,
            home=args.home,
        )
        print(
            _(
                "Persona '{name}' now uses this adapter ({path}); chat with "
                "`cosplay chat --persona {name}`.",
                name=args.persona,
                path=path,
            )
        )
    return 0


def bind_persona(
    name: str,
    adapter_dir: Path,
    *,
    gguf_path: Path | None = None,
    base_gguf: str | None = None,
    template: str = "",
    speaker: str | None = None,
    home: str | None = None,
) -> Path:
    """Create or update the persona `name` so it uses this adapter (in `data.extensions.cosplay`)."""
    from sessions.cards import CharacterCard, CosplayExtension
    from sessions.personas import PersonaError, PersonaStore
    from sessions.runtime import training_result
    from sessions.workspace import data_paths

    store = PersonaStore(data_paths(home).ensure().personas)
    try:
        card = store.get(name).card
    except PersonaError:
        card = CharacterCard.new(
            name,
            description=_(
                "{name}, trained from dialogue with `cosplay train`.", name=speaker or name
            ),
            tags=["trained"],
        )
    fields = card.cosplay.model_dump()
    adapter_dir = Path(adapter_dir).resolve()
    fields["adapter"] = str(adapter_dir)
    fields["base"] = training_result(str(adapter_dir)).get("base", "")
    # The same adapter for the CPU engine, and the base it was checked against (an earlier
    # adapter's GGUF would be stale: clear it).
    fields["adapter_gguf"] = str(Path(gguf_path).resolve()) if gguf_path else ""
    fields["base_gguf"] = str(Path(base_gguf).expanduser().resolve()) if base_gguf else ""
    if template:
        fields["template"] = template
    if speaker:
        fields["speaker"] = speaker
    card = card.with_cosplay(CosplayExtension.model_validate(fields))
    return store.save(card).path


def run_extract(args: argparse.Namespace) -> int:
    from engines.train.aliases import read_alias_file
    from engines.train.extract import extract_file

    aliases = [
        a for part in (args.alias or []) for a in part.replace("，", ",").split(",") if a.strip()
    ]
    if aliases and not args.speaker:
        raise CosplayError(_("--alias needs --speaker: name the character the aliases belong to."))
    check_extract_arguments(args)
    report = extract_file(
        args.novel,
        args.out,
        speaker=args.speaker,
        aliases=aliases,
        alias_table=read_alias_file(args.alias_file) if args.alias_file else None,
        context_chars=args.context_chars,
        min_lines=args.min_lines,
        dialogue_turns=args.dialogue_turns,
        fmt=args.format,
    )
    print(_("Read {novel} as {encoding}.", novel=args.novel, encoding=report.encoding))
    wrote = (
        N_("Wrote {count} multi-turn records ({format}) to {out}.")
        if args.dialogue_turns
        else N_("Wrote {count} records ({format}) to {out}.")
    )
    print(_(wrote, count=report.written, format=args.format, out=args.out))
    if report.unanswered:
        print(
            _(
                "{count} lines had no other speaker's line before them to answer.",
                count=report.unanswered,
            )
        )
    if report.dropped:
        print(
            _(
                "Left out {speakers} speakers with fewer than {min_lines} lines ({lines} lines).",
                speakers=len(report.dropped),
                min_lines=args.min_lines,
                lines=sum(report.dropped.values()),
            )
        )
    print(_("Quoted speech per speaker (aliases merged):"))
    for name, count in report.counts.most_common(args.top):
        marker = " *" if report.speaker and name == report.speaker else ""
        print(f"  {name}\t{count}{marker}")
        if args.report:
            for line in report.samples.get(name, []):
                print(f"      “{_shorten(line, 40)}”")
    return 0


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def check_extract_arguments(args: argparse.Namespace) -> None:
    """What `data extract` refuses before reading the novel: negative counts, a folder given
    as the novel, an --out below a file."""
    for flag, value in (
        ("--context-chars", args.context_chars),
        ("--top", args.top),
        ("--min-lines", args.min_lines),
    ):
        if value < 0:
            raise CosplayError(_("{flag} must be 0 or more (got {value}).", flag=flag, value=value))
    novel = Path(args.novel).expanduser()
    if novel.is_dir():
        raise CosplayError(
            _("The novel {novel} is a directory; pass the novel's text file.", novel=novel)
        )
    _check_out_file(Path(args.out).expanduser())


def _check_out_file(out: Path) -> None:
    """--out names a file to write: not a folder, and not below a file."""
    if out.is_dir():
        raise CosplayError(_("--out {out} is a directory; give a file name in it.", out=out))
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise CosplayError(
                _(
                    "--out {out}: {parent} is a file, not a folder; choose another path.",
                    out=out,
                    parent=parent,
                )
            )


def run_export(args: argparse.Namespace) -> int:
    from engines.gguf_lora import export_gguf

    if args.out:
        _check_out_file(Path(args.out).expanduser())
    try:
        path = export_gguf(args.adapter_dir, base=args.base, out=args.out, outtype=args.outtype)
    except OSError as exc:  # a full disk or a folder it may not write to
        where = f" {exc.filename}" if exc.filename else ""
        raise CosplayError(
            _(
                "Cannot write the GGUF adapter ({problem}); free some space or choose an --out "
                "you can write to.",
                problem=f"{exc.strerror or exc}{where}",
            )
        ) from exc
    print(_("Wrote {path}; load it on the CPU engine with `--adapter {path}`.", path=path))
    return 0


def run_monitor(args: argparse.Namespace) -> int:
    from tui.training_screen import run_monitor_app

    run_monitor_app(Path(args.run_dir))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help=_("fine-tune a persona LoRA from dialogue data"))
    train.later(add_train_arguments)  # from TrainOptions, a pydantic model
    train.set_defaults(func=run_train)

    data = subparsers.add_parser("data", help=_("prepare training data"))
    data_commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    extract = data_commands.add_parser("extract", help=_("extract quoted dialogue from a novel"))
    extract.add_argument(
        "novel", help=_("the novel: a text file in any encoding (UTF-8, GB18030, Big5…)")
    )
    extract.add_argument("--out", required=True, help=_("JSONL file to write"))
    extract.add_argument("--speaker", help=_("keep only this character's lines"))
    extract.add_argument(
        "--alias", action="append", help=_("other names of --speaker, comma-separated")
    )
    extract.add_argument(
        "--alias-file",
        help=_("more names: JSON {example} or lines `诸葛亮: 孔明, 卧龙`", example=ALIAS_EXAMPLE),
    )
    extract.add_argument(
        "--context-chars", type=int, default=150, help=_("narration kept before each line")
    )
    extract.add_argument("--top", type=int, default=20, help=_("speakers listed in the report"))
    extract.add_argument(
        "--report", action="store_true", help=_("show a few lines of each speaker listed")
    )
    extract.add_argument(
        "--min-lines", type=int, default=0, help=_("leave out speakers with fewer lines than this")
    )
    extract.add_argument(
        "--dialogue-turns",
        action="store_true",
        help=_(
            "each line as the reply to the exchange before it (the other speakers' lines as "
            "user turns)"
        ),
    )
    extract.add_argument(
        "--format",
        choices=["cosplay", "sharegpt", "messages"],
        default="cosplay",
        help=_("record format (default cosplay: context/chat)"),
    )
    extract.set_defaults(func=run_extract)

    export = subparsers.add_parser(
        "export-gguf", help=_("convert a PEFT LoRA adapter to a GGUF LoRA")
    )
    export.add_argument(
        "adapter_dir",
        help=_("the adapter directory (adapter_config.json + adapter_model.safetensors)"),
    )
    export.add_argument(
        "--base", required=True, help=_("the base model's .gguf (names and shapes are checked)")
    )
    export.add_argument("--out", help=_("file to write (default: ADAPTER_DIR/<name>.gguf)"))
    export.add_argument(
        "--outtype", choices=["f32", "f16"], default="f32", help=_("tensor type (default f32)")
    )
    export.set_defaults(func=run_export)

    monitor = subparsers.add_parser("train-monitor", help=_("watch a training run's loss curve"))
    monitor.add_argument("run_dir", help=_("the --out directory of a run (holds train_log.jsonl)"))
    monitor.set_defaults(func=run_monitor)
