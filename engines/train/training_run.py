"""The run itself (torch from here on): the base model with its LoRA adapter, a transformers
`Trainer` (the loss on trained positions only, length-grouped batches), the JSONL log, the
progress bar and Ctrl+C, a resume from a checkpoint, the last evaluation, the adapter saved and
its result record written. Checkpoints carry optimizer, scheduler and RNG state, so an
interrupted run resumed on the same seed ends with the same weights.

torch / transformers / peft are imported inside the function.
"""

from __future__ import annotations

import warnings

from engines.i18n import _
from engines.train import TrainingError
from engines.train.checkpoints import RUN_FILE, disk_space_guard, validate_checkpoint, write_json
from engines.train.model_setup import (
    add_lora,
    device_plan,
    first_line,
    load_model,
    torch_threads,
    training_arguments,
)
from engines.train.result import TrainResult, write_result


def run_training(
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
    """Train `train_items` (evaluating on `eval_items`) into `out` as `train()` prepared them,
    from the checkpoint `resume_from` when there is one."""
    from engines.hf_load import quiet_library_logs

    quiet_library_logs()  # before peft imports bitsandbytes (model_setup imports peft)
    from transformers import DataCollatorForSeq2Seq, Trainer, set_seed
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
    plan = device_plan(params["quantize"], params["gradient_checkpointing"])
    set_seed(params["seed"])  # LoRA init draws from it: same seed, same start
    model = load_model(run["base"], plan, params["trust_remote_code"])
    model = add_lora(model, params, run["base"])
    args = training_arguments(params, plan, out, evaluate=bool(eval_items))
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
        "device": "cuda" if plan["cuda"] else f"cpu, {torch_threads()} threads",
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
                        problem=first_line(exc),
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
            write_result(
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
