"""Before any weights load: path checks, tokenizer, template, split, dry-run report, resume point.

Only the tokenizer is loaded here (through transformers); torch is not needed.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

from engines.i18n import _
from engines.templates import ChatTemplate, choose_template, get_template
from engines.train import TrainingError
from engines.train.checkpoints import RESULT_FILE, check_same_run, checkpoints, validate_checkpoint
from engines.train.data import LoadedData
from engines.train.encode import Encoded, render_marked
from engines.train.options import TrainOptions


def check_paths(options: TrainOptions) -> None:
    """What the option types cannot tell: a GGUF given as the base, an --out that is a file."""
    if options.base.lower().endswith(".gguf"):
        raise TrainingError(
            _(
                "Training needs the Hugging Face model (a directory or repo id), not a GGUF file; "
                "pass the GGUF to `cosplay export-gguf --base` afterwards."
            )
        )
    out = Path(options.out).expanduser()
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise TrainingError(
                    _(
                        "--out {out} cannot be a directory because {path} is a file; pass a "
                        "directory for the adapter (it is created if missing).",
                        out=options.out,
                        path=path,
                    )
                )
            break


def load_tokenizer(base: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise TrainingError(
            _(
                "Cannot load the tokenizer of {base} ({problem}); pass a local model directory "
                "or a Hugging Face repo id, with --trust-remote-code if it needs it.",
                base=base,
                problem=(str(exc).splitlines() or [type(exc).__name__])[0],
            )
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer


def pick_template(name: str, dataset: LoadedData, tokenizer, base: str) -> ChatTemplate:
    if name in ("auto", "", None) and dataset.format == "cosplay":
        return get_template("cosplay")  # narration → 某某曰：“……”, as the seed trained
    source = getattr(tokenizer, "chat_template", None)
    return choose_template(
        name,
        source if isinstance(source, str) else None,
        Path(base).name,
        tokenizer.eos_token or "",
    )


def split_samples(
    items: list[Encoded], val_size: float, seed: int
) -> tuple[list[dict], list[dict]]:
    features = [item.as_features() for item in items]
    if val_size <= 0:
        return features, []
    count = int(val_size) if val_size >= 1 else max(1, round(len(features) * val_size))
    if count >= len(features):
        raise TrainingError(
            _(
                "--val-size {val_size} leaves no training samples out of {count}; make it smaller.",
                val_size=f"{val_size:g}",
                count=len(features),
            )
        )
    order = list(range(len(features)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [f for i, f in enumerate(features) if i not in held], [features[i] for i in sorted(held)]


def dry_run_report(dataset, template, encoded, dropped, tokenizer, options: TrainOptions) -> str:
    lengths = [len(item.input_ids) for item in encoded]
    trained = [sum(label != -100 for label in item.labels) for item in encoded]
    lines = [
        _("data: {path}", path=dataset.path),
        _("format: {format}", format=dataset.format),
        _(
            "records: {trained} trained ({warned} with warnings), {skipped} skipped",
            trained=len(dataset.samples),
            warned=len(dataset.warnings),
            skipped=len(dataset.skipped),
        ),
        _("template: {name}", name=template.name),
    ]
    if dataset.speakers:
        top = ", ".join(f"{name} {count}" for name, count in list(dataset.speakers.items())[:5])
        lines.append(_("speakers: {speakers}", speakers=top))
    lines.append(
        _(
            "samples: {samples}; tokens min {shortest} / mean {mean} / max {longest}; trained "
            "tokens {trained}; truncated {truncated}; dropped (no reply within cutoff) {dropped}",
            samples=len(encoded),
            shortest=min(lengths),
            mean=f"{statistics.mean(lengths):.1f}",
            longest=max(lengths),
            trained=sum(trained),
            truncated=sum(i.truncated for i in encoded),
            dropped=dropped,
        )
    )
    lines += dataset.problem_lines()
    lines += options.describe()
    lines.append("")
    lines.append(_("trained tokens are shown between ⟦ ⟧"))
    for number, item in enumerate(encoded[: options.dry_run_samples], start=1):
        lines.append(_("--- sample {number} ---", number=number))
        lines.append(render_marked(item, tokenizer))
    return "\n".join(lines)


def resume_point(out: Path, resume: bool | None, run: dict) -> Path | None:
    if (out / RESULT_FILE).is_file():
        raise TrainingError(
            _(
                "{out} already holds a finished adapter; choose a new --out or delete that "
                "directory.",
                out=out,
            )
        )
    found = checkpoints(out)
    if not found:
        if resume:
            raise TrainingError(
                _(
                    "There is no checkpoint in {out} to resume from; drop --resume to start.",
                    out=out,
                )
            )
        return None
    if resume is False:
        raise TrainingError(
            _(
                "{out} holds checkpoints of an unfinished run; pass --resume or a new --out.",
                out=out,
            )
        )
    check_same_run(out, run)
    validate_checkpoint(found[-1])
    return found[-1]
