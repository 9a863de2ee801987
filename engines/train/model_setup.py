"""What a training run runs on: the device plan (QLoRA, a 4-bit NF4 base, on CUDA; bf16/fp16 on
GPU, fp32 on CPU; gradient checkpointing on GPU), the base model loaded for it, the LoRA
adapter put on it, and the `TrainingArguments` of the run.

torch / transformers / peft are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from engines.i18n import _
from engines.train import TrainingError


def device_plan(quantize: str, gradient_checkpointing: bool | None) -> dict:
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


def load_model(base: str, plan: dict, trust_remote_code: bool):
    from safetensors import SafetensorError
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
                problem=first_line(exc),
            )
        ) from None
    except SafetensorError as exc:  # a truncated or corrupt model.safetensors
        raise TrainingError(
            _(
                "The weights of {base} cannot be read ({problem}); the file is damaged: download "
                "the model again.",
                base=base,
                problem=first_line(exc),
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


def lora_targets(value: str | list[str]) -> str | list[str]:
    """PEFT's "all-linear" (every linear layer but the output head) or explicit module names."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return "all-linear" if value == ["all-linear"] else list(value)


def checkpointing_args(plan: dict) -> dict:
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


def add_lora(model, params: dict, base: str):
    """The model with a fresh LoRA adapter of `params`' rank, alpha, dropout and target modules."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=params["lora_r"],
        lora_alpha=params["lora_alpha"],
        lora_dropout=params["lora_dropout"],
        target_modules=lora_targets(params["target_modules"]),
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
                base=base,
                problem=exc,
            )
        ) from None
    return model


def training_arguments(params: dict, plan: dict, out: Path, evaluate: bool):
    """transformers' `TrainingArguments` for `params` on the device `plan`; `evaluate` when
    there are evaluation samples."""
    from transformers import TrainingArguments

    return TrainingArguments(
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
        eval_strategy="steps" if evaluate else "no",
        eval_steps=params["eval_steps"],
        seed=params["seed"],
        bf16=plan["bf16"],
        fp16=plan["fp16"],
        use_cpu=not plan["cuda"],
        **checkpointing_args(plan),
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=plan["cuda"],  # pinned pages only help a copy to a GPU
    )


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def first_line(exc: BaseException) -> str:
    """An exception's first line (transformers' errors run to paragraphs), or its type."""
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__
