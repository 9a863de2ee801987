"""Training throughput: `cosplay train` (engines.train.trainer.train) ÷ a plain alpaca-lora-style loop.

Both train the same LoRA (all linear projections, r=8) on the same random
model and the same tokenized samples (prompt masked), with the same batch
size, optimizer (AdamW), schedule and precision, in one process, one after
the other. Throughput is non-padding tokens per second over the steps after a
warm-up, so model loading is not counted for either side. `ratio` is ours as
shipped (batches grouped by length, so less padding is computed);
`ratio_random_order` is ours with `--no-group-by-length`, batching in random
order as the baseline does, which isolates the trainer's own overhead. The last line
printed is one JSON object.

    python benchmarks/bench_train.py                    # CPU, fp32
    python benchmarks/bench_train.py --quantize 4bit    # CUDA: QLoRA on both sides
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tiny_models import CORPUS, TinyConfig, build  # noqa: E402


def make_data(path: Path, records: int) -> Path:
    lines = []
    for i in range(records):
        narration = CORPUS[i % len(CORPUS)][: 20 + (i * 7) % 40]
        speech = CORPUS[(i * 3 + 1) % len(CORPUS)] * (1 + i % 3)
        lines.append({"context": f"{narration}孔明曰：", "chat": f"“{speech}”"})
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8"
    )
    return path


def run_ours(model_dir: Path, data: Path, out: Path, args, *, group_by_length: bool) -> dict:
    from engines.train.trainer import train

    start = time.perf_counter()
    train(
        base=model_dir,
        data=data,
        out=out,
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=2e-4,
        scheduler="cosine",
        warmup=0.0,
        lora_dropout=0.0,
        cutoff_len=args.cutoff,
        save_steps=10**6,
        logging_steps=1,
        quantize=args.quantize,
        seed=0,
        progress=False,
        gradient_checkpointing=args.gradient_checkpointing,
        group_by_length=group_by_length,
    )
    wall = time.perf_counter() - start
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    first, last = steps[args.warmup - 1], steps[-1]
    tokens = last["tokens_seen"] - first["tokens_seen"]
    return {"tokens_per_s": tokens / (last["time"] - first["time"]), "wall_s": wall}


def run_baseline(model_dir: Path, data: Path, args) -> dict:
    """tloen/alpaca-lora's finetune.py, reduced to its loop, with today's APIs."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForSeq2Seq,
        get_cosine_schedule_with_warmup,
    )

    from engines.templates import get_template
    from engines.train.data import load_dataset
    from engines.train.encode import encode_all

    start = time.perf_counter()
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "right"
    kwargs = {"dtype": dtype}
    if args.quantize in ("4bit", "8bit"):
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=args.quantize == "4bit",
            load_in_8bit=args.quantize == "8bit",
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if args.quantize in ("4bit", "8bit"):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(args.gradient_checkpointing)
        )
    else:
        model.to(device)
        if args.gradient_checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": False})
    model = get_peft_model(
        model,
        LoraConfig(
            r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    dataset = load_dataset(data)
    encoded, _ = encode_all(
        dataset.samples,
        get_template("cosplay"),
        tokenizer,
        cutoff_len=args.cutoff,
        char_name="孔明",
    )
    features = [e.as_features() for e in encoded]
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    loader = torch.utils.data.DataLoader(
        features, batch_size=args.batch_size, shuffle=True, collate_fn=collator
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    schedule = get_cosine_schedule_with_warmup(optimizer, 0, args.steps)
    model.train()
    step, tokens, timed_from = 0, 0, None
    while step < args.steps:
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device, dtype=dtype, enabled=cuda):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            loss.item()  # the loop prints its loss, as alpaca-lora's Trainer would log it
            step += 1
            if step == args.warmup:
                if cuda:
                    torch.cuda.synchronize()
                timed_from, tokens = time.perf_counter(), 0
            elif step > args.warmup:
                tokens += int(batch["attention_mask"].sum())
            if step >= args.steps:
                break
    if cuda:
        torch.cuda.synchronize()
    return {
        "tokens_per_s": tokens / (time.perf_counter() - timed_from),
        "wall_s": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="steps not timed")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cutoff", type=int, default=256)
    parser.add_argument("--records", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--quantize", choices=["none", "4bit", "8bit"], default="none")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="on both sides")
    parser.add_argument(
        "--repeats", type=int, default=2, help="alternate runs; the best of each side counts"
    )
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = TinyConfig(
            hidden=args.hidden,
            layers=args.layers,
            heads=8,
            kv_heads=4,
            ffn=args.hidden * 3,
            context=1024,
        )
        model_dir = build(tmp / "model", cfg)["hf"]
        data = make_data(tmp / "data.jsonl", args.records)
        ours, ours_random, base = [], [], []
        for repeat in range(args.repeats):
            base.append(run_baseline(model_dir, data, args))
            ours.append(run_ours(model_dir, data, tmp / f"out{repeat}", args, group_by_length=True))
            ours_random.append(
                run_ours(model_dir, data, tmp / f"random{repeat}", args, group_by_length=False)
            )
            print(
                f"run {repeat + 1}: ours {ours[-1]['tokens_per_s']:.0f} tok/s, "
                f"ours in random order {ours_random[-1]['tokens_per_s']:.0f} tok/s, "
                f"baseline {base[-1]['tokens_per_s']:.0f} tok/s",
                flush=True,
            )
    best_ours = max(r["tokens_per_s"] for r in ours)
    best_random = max(r["tokens_per_s"] for r in ours_random)
    best_base = max(r["tokens_per_s"] for r in base)
    print(
        json.dumps(
            {
                "benchmark": "train_tokens_per_s_ratio",
                "ratio": round(best_ours / best_base, 3),
                # --no-group-by-length: batches in random order, as the baseline's loop does
                "ratio_random_order": round(best_random / best_base, 3),
                "ours_tokens_per_s": round(best_ours, 1),
                "ours_random_order_tokens_per_s": round(best_random, 1),
                "baseline_tokens_per_s": round(best_base, 1),
                "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                "precision": "bf16" if torch.cuda.is_available() else "fp32",
                "quantize": args.quantize,
                "gradient_checkpointing": args.gradient_checkpointing,
                "model": {"hidden": cfg.hidden, "layers": cfg.layers},
                "steps": args.steps,
                "warmup": args.warmup,
                "batch_size": args.batch_size,
                "repeats": args.repeats,
            }
        )
    )


if __name__ == "__main__":
    main()
