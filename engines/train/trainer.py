"""`train()`: one function whose options (`TrainOptions`) are those of `cosplay train`.

transformers `Trainer` + PEFT LoRA (alpaca-lora's shape, today's APIs): the
prompt is masked with -100 and `DataCollatorForSeq2Seq` keeps those labels.
Here: the options, the dataset read and encoded, the --dry-run report and where
a run resumes. The run itself is engines/train/training_run.py, its device plan,
base model, LoRA adapter and TrainingArguments engines/train/model_setup.py,
`TrainResult` and the result record engines/train/result.py.
torch / transformers / peft are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engines.i18n import _
from engines.train import TrainingError
from engines.train.data import file_sha256, load_dataset
from engines.train.encode import encode_all
from engines.train.options import TrainOptions
from engines.train.prepare import (
    check_paths,
    dry_run_report,
    load_tokenizer,
    pick_template,
    resume_point,
    split_samples,
)
from engines.train.result import TrainResult, local_or_ref
from engines.train.training_run import run_training


def train(
    options: TrainOptions | None = None,
    *,
    callbacks: Sequence[object] = (),
    **values: Any,
) -> TrainResult:
    """Fine-tune a LoRA adapter on `data` over the HF model `base`, writing it to `out`.

    Takes a `TrainOptions` or its fields as keywords (`train(base=..., data=..., out=...)`).
    `resume=None` continues an unfinished run found in `out`; True insists on it, False
    refuses to. `gguf` exports the adapter for the CPU engine at the end (a base GGUF path,
    or True to take the shapes from the HF base). `callbacks` are extra
    `TrainerCallback`s (the TUI uses one to stop a run).
    """
    if options is None:
        options = TrainOptions.build(**values)
    elif values:
        options = TrainOptions.build(**{**options.model_dump(), **values})
    check_paths(options)
    params = options.model_dump(mode="json")
    out = Path(options.out).expanduser()
    dataset = load_dataset(options.data, fmt=options.data_format, skip_bad=options.skip_bad)
    tokenizer = load_tokenizer(options.base, options.trust_remote_code)
    chat_template = pick_template(options.template, dataset, tokenizer, options.base)
    speaker = options.speaker or dataset.main_speaker
    encoded, dropped = encode_all(
        dataset.samples,
        chat_template,
        tokenizer,
        cutoff_len=options.cutoff_len,
        overlap=options.text_overlap,
        char_name=speaker or "",
    )
    if not encoded:
        raise TrainingError(
            _(
                "No sample of {path} keeps any reply within --cutoff-len {cutoff_len}; raise it.",
                path=dataset.path,
                cutoff_len=options.cutoff_len,
            )
        )
    if options.dry_run:
        report = dry_run_report(dataset, chat_template, encoded, dropped, tokenizer, options)
        return TrainResult(out, "dry-run", report=report)

    train_items, eval_items = split_samples(encoded, options.val_size, options.seed)
    run = {
        "base": local_or_ref(options.base),
        "data_sha256": file_sha256(dataset.path),
        "params": params,
    }
    resume_from = resume_point(out, options.resume, run)
    return run_training(
        params=params,
        run=run,
        out=out,
        dataset=dataset,
        tokenizer=tokenizer,
        template=chat_template,
        speaker=speaker,
        train_items=train_items,
        eval_items=eval_items,
        resume_from=resume_from,
        extra_callbacks=list(callbacks),
        data_facts={
            **dataset.problem_counts(),
            "truncated": sum(item.truncated for item in encoded),
            "dropped_by_cutoff": dropped,
        },
    )


__all__ = ["TrainResult", "train"]
