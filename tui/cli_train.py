"""`cosplay train`, `cosplay data extract`, `cosplay export-gguf` and `cosplay train-monitor`.

torch / transformers / peft are imported only when a command runs (inside
`engines.train.trainer.train`), so `cosplay --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engines.base import CosplayError

EXIT_INTERRUPTED = 130


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base", required=True, help="the HF base model: a local directory or a repo id"
    )
    parser.add_argument(
        "--data", required=True, help="dataset: .json / .jsonl records or a .txt file"
    )
    parser.add_argument(
        "--out", required=True, help="output directory for the adapter, checkpoints and log"
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--format",
        dest="data_format",
        default="auto",
        choices=["auto", "cosplay", "alpaca", "sharegpt", "messages", "vicuna", "text"],
        help="dataset format (default: detected from the records)",
    )
    data.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip and count malformed records instead of stopping",
    )
    data.add_argument(
        "--template",
        default="auto",
        help="chat template: auto (cosplay data → cosplay, else the model's own), model, or a named one",
    )
    data.add_argument(
        "--cutoff-len", type=int, default=512, help="max tokens per sample (default 512)"
    )
    data.add_argument(
        "--text-overlap", type=int, default=64, help="token overlap between chunks of raw text"
    )
    data.add_argument(
        "--val-size",
        type=float,
        default=0.0,
        help="held-out samples for eval loss: a fraction (0.1) or a count (50)",
    )
    data.add_argument(
        "--speaker",
        help="the character this adapter speaks as (default: the most frequent speaker)",
    )
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=float, default=3.0, help="passes over the data (default 3)")
    opt.add_argument(
        "--max-steps",
        type=int,
        default=0,
        help="stop after this many optimizer steps (overrides --epochs)",
    )
    opt.add_argument(
        "--learning-rate",
        "--lr",
        type=float,
        default=2e-4,
        help="peak learning rate (default 2e-4)",
    )
    opt.add_argument(
        "--scheduler",
        default="cosine",
        help="learning-rate schedule: cosine, linear, constant… (default cosine)",
    )
    opt.add_argument(
        "--warmup",
        type=float,
        default=0.03,
        help="warmup: a fraction of the steps (<1) or a step count",
    )
    opt.add_argument(
        "--batch-size", type=int, default=4, help="samples per device per step (default 4)"
    )
    opt.add_argument(
        "--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)"
    )
    opt.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--lora-r", type=int, default=8, help="rank (default 8)")
    lora.add_argument("--lora-alpha", type=int, default=16, help="alpha (default 16)")
    lora.add_argument("--lora-dropout", type=float, default=0.05, help="dropout (default 0.05)")
    lora.add_argument(
        "--target-modules",
        default="all-linear",
        help="comma-separated module names, or all-linear (default)",
    )
    lora.add_argument("--rslora", action="store_true", help="rank-stabilised scaling alpha/sqrt(r)")
    run = parser.add_argument_group("run")
    run.add_argument(
        "--eval-steps", type=int, default=50, help="evaluate every N steps (with --val-size)"
    )
    run.add_argument("--save-steps", type=int, default=100, help="checkpoint every N steps")
    run.add_argument("--save-total-limit", type=int, default=3, help="keep at most N checkpoints")
    run.add_argument("--logging-steps", type=int, default=1, help="log the loss every N steps")
    run.add_argument(
        "--quantize",
        choices=["auto", "4bit", "8bit", "none"],
        default="auto",
        help="base weights: auto = 4-bit QLoRA on CUDA, full precision elsewhere",
    )
    run.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="trade compute for memory (default: on with a GPU)",
    )
    run.add_argument(
        "--group-by-length",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="batch samples of similar length together: less padding, faster (default: on)",
    )
    run.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model's own Python code"
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in --out (an unfinished run continues anyway)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="show the detected format, counts, token lengths and rendered samples; train nothing",
    )
    run.add_argument(
        "--gguf",
        nargs="?",
        const=True,
        default=None,
        metavar="BASE.gguf",
        help="also export the adapter as a GGUF LoRA for the CPU engine (checked against BASE.gguf if given)",
    )
    run.add_argument(
        "--persona", metavar="NAME", help="create or update this persona with the adapter bound"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    from engines.train.trainer import train

    result = train(
        base=args.base,
        data=args.data,
        out=args.out,
        template=args.template,
        data_format=args.data_format,
        skip_bad=args.skip_bad,
        epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        scheduler=args.scheduler,
        warmup=args.warmup,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        cutoff_len=args.cutoff_len,
        text_overlap=args.text_overlap,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.target_modules,
        use_rslora=args.rslora,
        val_size=args.val_size,
        eval_steps=args.eval_steps,
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        logging_steps=args.logging_steps,
        seed=args.seed,
        quantize=args.quantize,
        gradient_checkpointing=args.gradient_checkpointing,
        group_by_length=args.group_by_length,
        speaker=args.speaker,
        trust_remote_code=args.trust_remote_code,
        resume=True if args.resume else None,
        gguf=args.gguf,
        progress=not args.no_progress,
        dry_run=args.dry_run,
    )
    if result.status == "dry-run":
        print(result.report)
        return 0
    if result.status == "interrupted":
        print(
            f"Stopped at step {result.step}/{result.max_steps}; the checkpoint is saved in {result.out}. "
            "Run the same command again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    losses = f"train loss {result.train_loss:.4f}" if result.train_loss is not None else ""
    if result.eval_loss is not None:
        losses += f", eval loss {result.eval_loss:.4f}"
    print(f"Adapter saved in {result.out} ({result.step} steps; {losses}).")
    if result.gguf_path:
        print(f"GGUF LoRA for the CPU engine: {result.gguf_path}")
    if args.persona:
        path = bind_persona(
            args.persona,
            result.out,
            gguf_path=result.gguf_path,
            base_gguf=args.gguf if isinstance(args.gguf, str) else None,
            template=result.template,
            speaker=result.speaker,
            home=args.home,
        )
        print(
            f"Persona {args.persona!r} now uses this adapter ({path}); chat with "
            f"`cosplay chat --persona {args.persona}`."
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
    from sessions.paths import data_paths
    from sessions.personas import PersonaError, PersonaStore
    from sessions.runtime import training_result

    store = PersonaStore(data_paths(home).ensure().personas)
    try:
        card = store.get(name).card
    except PersonaError:
        card = CharacterCard.new(
            name,
            description=f"{speaker or name}, trained from dialogue with `cosplay train`.",
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
    from engines.train.extract import extract_file

    aliases = [
        a for part in (args.alias or []) for a in part.replace("，", ",").split(",") if a.strip()
    ]
    if aliases and not args.speaker:
        raise CosplayError("--alias needs --speaker: name the character the aliases belong to.")
    report = extract_file(
        args.novel,
        args.out,
        speaker=args.speaker,
        aliases=aliases,
        context_chars=args.context_chars,
    )
    print(f"Wrote {report.written} records to {args.out}.")
    print("Quoted speech per speaker:")
    for name, count in report.counts.most_common(args.top):
        marker = " *" if args.speaker and name == args.speaker else ""
        print(f"  {name}\t{count}{marker}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from engines.train.gguf_export import export_gguf

    path = export_gguf(args.adapter_dir, base=args.base, out=args.out, outtype=args.outtype)
    print(f"Wrote {path}; load it on the CPU engine with `--adapter {path}`.")
    return 0


def run_monitor(args: argparse.Namespace) -> int:
    from tui.training_screen import run_monitor_app

    run_monitor_app(Path(args.run_dir))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="fine-tune a persona LoRA from dialogue data")
    add_train_arguments(train)
    train.set_defaults(func=run_train)

    data = subparsers.add_parser("data", help="prepare training data")
    data_commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    extract = data_commands.add_parser("extract", help="extract quoted dialogue from a novel")
    extract.add_argument("novel", help="the novel: a UTF-8 or GB18030/GBK text file")
    extract.add_argument("--out", required=True, help="JSONL file to write (cosplay format)")
    extract.add_argument("--speaker", help="keep only this character's lines")
    extract.add_argument(
        "--alias", action="append", help="other names of --speaker, comma-separated"
    )
    extract.add_argument(
        "--context-chars", type=int, default=150, help="narration kept before each line"
    )
    extract.add_argument("--top", type=int, default=20, help="speakers listed in the report")
    extract.set_defaults(func=run_extract)

    export = subparsers.add_parser("export-gguf", help="convert a PEFT LoRA adapter to a GGUF LoRA")
    export.add_argument(
        "adapter_dir",
        help="the adapter directory (adapter_config.json + adapter_model.safetensors)",
    )
    export.add_argument(
        "--base", required=True, help="the base model's .gguf (names and shapes are checked)"
    )
    export.add_argument("--out", help="file to write (default: ADAPTER_DIR/<name>.gguf)")
    export.add_argument(
        "--outtype", choices=["f32", "f16"], default="f32", help="tensor type (default f32)"
    )
    export.set_defaults(func=run_export)

    monitor = subparsers.add_parser("train-monitor", help="watch a training run's loss curve")
    monitor.add_argument("run_dir", help="the --out directory of a run (holds train_log.jsonl)")
    monitor.set_defaults(func=run_monitor)
