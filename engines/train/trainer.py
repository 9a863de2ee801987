"""`train()`: one function whose options (`TrainOptions`) are those of `cosplay train`.

transformers `Trainer` + PEFT LoRA (alpaca-lora's shape, today's APIs): the
prompt is masked with -100 and `DataCollatorForSeq2Seq` keeps those labels;
QLoRA (4-bit NF4 base) on CUDA, bf16/fp16 on GPU, fp32 on CPU; gradient
checkpointing on GPU. Checkpoints carry optimizer, scheduler and RNG state, so
an interrupted run resumed on the same seed ends with the same weights.
torch / transformers / peft are imported inside the functions.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engines.i18n import _
from engines.train import TrainingError
from engines.train.checkpoints import (
    RESULT_FILE,
    RUN_FILE,
    disk_space_guard,
    validate_checkpoint,
    write_json,
)
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


@dataclass
class TrainResult:
    out: Path
    status: Literal["finished", "interrupted", "dry-run"]
    step: int = 0
    max_steps: int = 0
    train_loss: float | None = None
    eval_loss: float | None = None
    report: str = ""  # the --dry-run report
    gguf_path: Path | None = None
    template: str = ""
    speaker: str | None = None
    data_notes: list[str] = field(default_factory=list)  # records trained with warnings / skipped


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
        "base": _local_or_ref(options.base),
        "data_sha256": file_sha256(dataset.path),
        "params": params,
    }
    resume_from = resume_point(out, options.resume, run)
    return _run(
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


# --- the run (torch from here on) -----------------------------------------------------------------


def _device_plan(quantize: str, gradient_checkpointing: bool | None) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and quantize in ("4bit", "8bit"):
        raise TrainingError(
            _(
                "--quantize {quantize} needs a CUDA GPU; use --quantize none on this machine.",
                quantize=quantize,
            )
        )
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return {
        "cuda": cuda,
        "dtype": (torch.bfloat16 if bf16 else torch.float16) if cuda else torch.float32,
        "bf16": bf16,
        "fp16": cuda and not bf16,
        "quantize": ("4bit" if quantize == "auto" else quantize) if cuda else "none",
        "gradient_checkpointing": cuda
        if gradient_checkpointing is None
        else gradient_checkpointing,
    }


def _load_model(base: str, plan: dict, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict = {"dtype": plan["dtype"], "trust_remote_code": trust_remote_code}
    if plan["quantize"] != "none":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=plan["quantize"] == "4bit",
            load_in_8bit=plan["quantize"] == "8bit",
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=plan["dtype"],
        )
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    try:
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainingError(
            _(
                "Cannot load the model {base} ({problem}); check the path or repo id.",
                base=base,
                problem=_first_line(exc),
            )
        ) from None
    if plan["quantize"] != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=plan["gradient_checkpointing"],
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model


def _targets(value: str | list[str]) -> str | list[str]:
    """PEFT's "all-linear" (every linear layer but the output head) or explicit module names."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return "all-linear" if value == ["all-linear"] else list(value)


def _checkpointing_args(plan: dict) -> dict:
    """Gradient checkpointing for a non-quantized model on GPU (prepare_model_for_kbit_training
    sets it up for a quantized one); under the argument names this transformers knows."""
    if not plan["gradient_checkpointing"] or plan["quantize"] != "none":
        return {}
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    prefix = (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else "gradient_checkpointing"
    )
    return {prefix: True, f"{prefix}_kwargs": {"use_reentrant": False}}


def _run(
    *,
    params,
    run,
    out,
    dataset,
    tokenizer,
    template,
    speaker,
    train_items,
    eval_items,
    resume_from,
    extra_callbacks,
    data_facts,
) -> TrainResult:
    from engines.hf_load import quiet_library_logs

    quiet_library_logs()  # before peft imports bitsandbytes
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    from engines.train.callbacks import (
        LOG_NAME,
        InterruptCallback,
        JsonlLogCallback,
        ProgressCallback,
        append_log,
        truncate_log,
    )
    from engines.train.loss import TrainedPositionsLossMixin
    from engines.train.sampling import LengthGroupedTrainer

    # PEFT 0.21 calls a transformers method that v5 deprecates; not the user's concern.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    plan = _device_plan(params["quantize"], params["gradient_checkpointing"])
    set_seed(params["seed"])  # LoRA init draws from it: same seed, same start
    model = _load_model(run["base"], plan, params["trust_remote_code"])
    lora = LoraConfig(
        r=params["lora_r"],
        lora_alpha=params["lora_alpha"],
        lora_dropout=params["lora_dropout"],
        target_modules=_targets(params["target_modules"]),
        use_rslora=params["use_rslora"],
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        raise TrainingError(
            _(
                "LoRA cannot target {modules} in {base} ({problem}); pass --target-modules with "
                "module names this model has.",
                modules=params["target_modules"],
                base=run["base"],
                problem=exc,
            )
        ) from None

    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=params["epochs"],
        max_steps=params["max_steps"] if params["max_steps"] > 0 else -1,
        per_device_train_batch_size=params["batch_size"],
        per_device_eval_batch_size=params["batch_size"],
        gradient_accumulation_steps=params["grad_accum"],
        learning_rate=params["learning_rate"],
        lr_scheduler_type=params["scheduler"],
        warmup_steps=params["warmup"],
        logging_steps=params["logging_steps"],
        save_strategy="steps",
        save_steps=params["save_steps"],
        save_total_limit=params["save_total_limit"],
        eval_strategy="steps" if eval_items else "no",
        eval_steps=params["eval_steps"],
        seed=params["seed"],
        bf16=plan["bf16"],
        fp16=plan["fp16"],
        use_cpu=not plan["cuda"],
        **_checkpointing_args(plan),
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=plan["cuda"],  # pinned pages only help a copy to a GPU
    )
    collator = DataCollatorForSeq2Seq(
        tokenizer,
        padding=True,
        label_pad_token_id=-100,
        pad_to_multiple_of=8 if plan["cuda"] else None,
    )
    interrupt = InterruptCallback()
    log_path = out / LOG_NAME
    start_info = {
        "resumed_from": str(resume_from) if resume_from else None,
        "base": run["base"],
        "data": str(dataset.path),
        "template": template.name,
        "train_samples": len(train_items),
        "eval_samples": len(eval_items),
        "data_problems": data_facts,  # records trained with warnings, skipped, cut by the cutoff
        "device": "cuda" if plan["cuda"] else f"cpu, {_torch_threads()} threads",
    }
    # Batches of similar length (shuffled by megabatch): less compute spent on padding; and no
    # logits for the prompt and the padding (engines/train/loss.py).
    batching = LengthGroupedTrainer if params["group_by_length"] else Trainer
    trainer_class = type("CosplayTrainer", (TrainedPositionsLossMixin, batching), {})
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_items,
        eval_dataset=eval_items or None,
        data_collator=collator,
        callbacks=[
            JsonlLogCallback(log_path, start_info),
            ProgressCallback(params["progress"]),
            interrupt,
            *extra_callbacks,
        ],
    )
    trainer.remove_callback(PrinterCallback)
    main = trainer.is_world_process_zero()
    start_step = validate_checkpoint(resume_from) if resume_from else 0
    with disk_space_guard(out):  # checkpoints, the adapter, its metadata and GGUF
        if main:
            out.mkdir(parents=True, exist_ok=True)
            if resume_from:
                truncate_log(log_path, start_step)
            else:
                log_path.unlink(missing_ok=True)
                write_json(out / RUN_FILE, run)

        interrupt.install()
        try:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except (RuntimeError, ValueError, KeyError) as exc:
            if resume_from and "checkpoint" in str(exc).lower():
                raise TrainingError(
                    _(
                        "The checkpoint {path} cannot be loaded ({problem}); delete it to resume "
                        "from the one before, or start over with a new --out.",
                        path=resume_from,
                        problem=_first_line(exc),
                    )
                ) from None
            raise
        finally:
            interrupt.uninstall()

        state = trainer.state
        train_loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)
        eval_loss = next(
            (h["eval_loss"] for h in reversed(state.log_history) if "eval_loss" in h), None
        )
        result = TrainResult(
            out, "finished", state.global_step, state.max_steps, train_loss, eval_loss
        )
        result.template, result.speaker = template.name, speaker
        result.data_notes = dataset.problem_lines(limit=3)
        if interrupt.stopped_at is not None and state.global_step < state.max_steps:
            result.status = "interrupted"
            if main:
                append_log(
                    log_path, {"event": "end", "status": "interrupted", "step": state.global_step}
                )
            return result

        evaluated = any(
            h.get("step") == state.global_step and "eval_loss" in h for h in state.log_history
        )
        if eval_items and not evaluated:
            eval_loss = trainer.evaluate().get("eval_loss", eval_loss)
            result.eval_loss = eval_loss
        trainer.save_model(
            str(out)
        )  # rank 0 only; PEFT writes adapter_config.json + adapter_model.safetensors
        if main:
            _finish(
                result,
                params=params,
                run=run,
                dataset=dataset,
                template=template,
                speaker=speaker,
                state=state,
                model_config=model.config,
            )
            append_log(
                log_path,
                {
                    "event": "end",
                    "status": "finished",
                    "step": state.global_step,
                    "train_loss": train_loss,
                    "eval_loss": eval_loss,
                },
            )
        return result


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _local_or_ref(ref: str | Path) -> str:
    """A local path made absolute (so chat finds it from any directory), else the repo id."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else str(ref)


def _finish(
    result: TrainResult, *, params, run, dataset, template, speaker, state, model_config
) -> None:
    out = result.out
    meta = {
        "format": "cosplay-lora/1",
        "base": run["base"],
        "template": template.name,
        "speaker": speaker,
        "data": {
            "path": str(dataset.path),
            "sha256": run["data_sha256"],
            "format": dataset.format,
            "records": len(dataset.samples),
            "skipped": len(dataset.skipped),
            "warnings": len(dataset.warnings),
        },
        "params": params,
        "final": {
            "step": state.global_step,
            "epoch": state.epoch,
            "train_loss": result.train_loss,
            "eval_loss": result.eval_loss,
        },
        "architecture": getattr(model_config, "model_type", None),
    }
    if params["gguf"]:
        from engines.gguf_lora import export_gguf

        base_gguf = _local_or_ref(params["gguf"]) if isinstance(params["gguf"], str) else None
        result.gguf_path = export_gguf(
            out, base=base_gguf, hf_config=None if base_gguf else model_config.to_dict()
        )
        meta["gguf"] = str(result.gguf_path.resolve())
        meta["base_gguf"] = base_gguf
    write_json(out / RESULT_FILE, meta)


def _first_line(exc: BaseException) -> str:
    """An exception's first line (transformers' errors run to paragraphs), or its type."""
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


__all__ = ["TrainResult", "train"]
