"""GPU-engine benchmark: ratios as median [min, max] over repeated runs, never bare times.

    python benchmarks/bench_gpu.py [--quick] [--device auto|cpu|cuda]
    python benchmarks/bench_gpu.py --gpu [--hidden 2048 --layers 22]   # ~1B random Llama

Builds its own random Llama in HF format (the tests' recipe: ~3M parameters with
--quick, ~25M without), two random LoRA adapters, and measures on one engine. Every ratio is
printed as median [min, max] over repeated runs ({"median", "min", "max", "n"} in the JSON):
  switch_ratio       adapter switch time (median of 40) ÷ the base model's load alone, each
                     load timed without its close() (one untimed load first: the first in a
                     process pays one-time costs a reload would not) (target ≤ 0.01)
  turn10_eval_share  prompt tokens evaluated on turn 10 ÷ prompt length on turn 10, with
                     the prefix cache; `turn10_ideal_share` is tokens new since turn 9 ÷ the
                     same length (the target: the two close)
  turn10_eval_ratio  evaluated ÷ new since turn 9 (target ≤ 1.05)
  ttft_ratio         time to first token at turn 10 ÷ at turn 1, cached (target ≤ 1.5);
                     `ttft_uncached_ratio` is the same turn 10 without the cache, for contrast
  decode_ratio       decode tokens/s of HFEngine.stream_chat ÷ a bare `model.generate` on the
                     same model, prompt and greedy settings, in pairs whose order alternates
                     (target ≥ 0.95)
The turn ratios come from --rounds separate 10-turn chats on the same engine.
--gpu also loads a real-size random Llama (~1B parameters) in bf16, 8-bit and 4-bit and
reports, for each, the weights' memory, peak CUDA memory and decode tokens/s; it needs
CUDA unless you pass --device cpu with a small --hidden/--layers to check the code path.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import stats  # noqa: E402
from engines.base import GenerationParams  # noqa: E402
from tests.tiny_models import TinyConfig, make_weights, train_tokenizer, write_hf  # noqa: E402

if TYPE_CHECKING:
    from engines.hf import HFEngine

# torch, transformers and the engine are imported inside the functions (the project's rule:
# only engines/hf*.py import them at module level).

STORY = "Tell me a story about 诸葛亮 and the eastern wind, with every detail you know."
USER_TURNS = [
    "Hello, who are you?",
    "Tell me about the three kingdoms.",
    "孔明曰：“亮夜观天象。”",
    "What happened at the red cliffs?",
    "曹仁回城中，与众商议。",
    "And then?",
    "Who won in the end?",
    "林黛玉道：“我为的是我的心。”",
    "Tell me one more thing.",
    "Thank you, goodbye.",
]


def build_small(directory: Path, quick: bool) -> Path:
    cfg = (
        TinyConfig(hidden=256, layers=4, heads=8, kv_heads=4, ffn=704, context=4096, seed=3)
        if quick
        else TinyConfig(hidden=512, layers=8, heads=8, kv_heads=4, ffn=1408, context=4096, seed=3)
    )
    tokenizer = train_tokenizer(cfg.vocab_target)
    weights = make_weights(cfg, tokenizer.get_vocab_size())
    print(f"model: random llama, {sum(w.size for w in weights.values()) / 1e6:.1f}M parameters")
    return write_hf(directory / "hf", cfg, tokenizer, weights)


def build_adapters(model_dir: Path, directory: Path) -> dict[str, str]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = {}
    for seed, name in enumerate(["persona-a", "persona-b"]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        config = LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights=False)
        with warnings.catch_warnings():  # PEFT 0.21 calls a method transformers 5 deprecates
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            peft_model = get_peft_model(model, config)
        peft_model.save_pretrained(directory / name)
        paths[name] = str(directory / name)
    return paths


def switch_ratio(model_dir: Path, adapters: dict[str, str], device: str | None, loads: int) -> dict:
    from engines.hf import HFEngine

    HFEngine(model_dir, device=device).close()  # one-time costs of a first load: not a reload
    load_times = []
    for _ in range(loads):
        started = time.perf_counter()
        engine = HFEngine(model_dir, device=device)
        load_times.append(time.perf_counter() - started)
        engine.close()  # not timed: what a switch saves is the load
    engine = HFEngine(model_dir, adapters=adapters, device=device)
    names = list(adapters)
    switches = []
    for i in range(40):
        started = time.perf_counter()
        engine.set_adapter(names[i % 2] if i % 3 else None)
        switches.append(time.perf_counter() - started)
    engine.close()
    switch_s = statistics.median(switches)
    ratio = stats.summary([switch_s / load for load in load_times], digits=6)
    print(
        f"adapter switch {switch_s * 1e3:8.3f} ms (median of 40)   base load alone "
        f"{statistics.median(load_times) * 1e3:8.1f} ms (median of {loads}, close() not timed)   "
        f"switch ÷ load {stats.fmt(ratio, 5)}"
    )
    return {"switch_ratio": ratio}


def turns(model_dir: Path, device: str | None, reply_tokens: int, rounds: int) -> dict:
    from engines.hf import HFEngine

    engine = HFEngine(model_dir, device=device, n_ctx=4096)
    params = GenerationParams(max_new_tokens=reply_tokens, do_sample=False, repetition_penalty=1.0)
    list(engine.stream_chat([{"role": "user", "content": "warm-up"}], params, threading.Event()))
    per_round: dict[str, list[float]] = {}
    for _ in range(rounds):
        engine._prefix.clear()
        messages: list[dict] = [
            {"role": "system", "content": "You are 诸葛亮, the strategist. " * 8}
        ]
        stats_ = []
        for text in USER_TURNS:
            messages.append({"role": "user", "content": text})
            reply = "".join(engine.stream_chat(messages, params, threading.Event()))
            stats_.append(engine.last_stats)
            messages.append({"role": "assistant", "content": reply})
        first, ninth, tenth = stats_[0], stats_[8], stats_[9]
        new_since_9 = tenth.prompt_tokens - (ninth.prompt_tokens + ninth.completion_tokens)
        engine._prefix.clear()
        list(engine.stream_chat(messages[:-1], params, threading.Event()))
        uncached = engine.last_stats
        values = {
            "turn10_eval_share": tenth.prompt_eval_tokens / tenth.prompt_tokens,
            "turn10_ideal_share": max(new_since_9, 1) / tenth.prompt_tokens,
            "turn10_eval_ratio": tenth.prompt_eval_tokens / max(new_since_9, 1),
            "ttft_ratio": tenth.ttft_s / first.ttft_s,
            "ttft_uncached_ratio": uncached.ttft_s / first.ttft_s,
        }
        for key, value in values.items():
            per_round.setdefault(key, []).append(value)
        print(
            f"turn 10: prompt {tenth.prompt_tokens} tokens, evaluated {tenth.prompt_eval_tokens}, "
            f"new since turn 9 {new_since_9}; ttft turn 1 {first.ttft_s * 1e3:.1f} ms, "
            f"turn 10 {tenth.ttft_s * 1e3:.1f} ms cached / {uncached.ttft_s * 1e3:.1f} ms uncached"
        )
    engine.close()
    results = {key: stats.summary(values, digits=4) for key, values in per_round.items()}
    for key in ("turn10_eval_ratio", "ttft_ratio", "ttft_uncached_ratio"):
        print(f"{key:20s} {stats.fmt(results[key])}")
    return results


def ours_tps(engine: HFEngine, messages, params) -> tuple[float, int]:
    engine._prefix.clear()  # both sides compute the whole prompt
    for _ in engine.stream_chat(messages, params, threading.Event()):
        pass
    stats = engine.last_stats
    return stats.tokens_per_s, stats.completion_tokens


def bare_tps(engine: HFEngine, messages, params) -> tuple[float, int]:
    """The same greedy settings straight through `model.generate`: no thread, no streamer."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from engines.hf_gen import generation_config

    class FirstToken(StoppingCriteria):
        def __init__(self):
            self.first: float | None = None

        def __call__(self, input_ids, scores, **kwargs):
            if self.first is None:
                self.first = time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    ids = engine.encode(engine.render(messages))
    _, eos_ids = engine._stop_setup(params)
    config = generation_config(
        engine.base_model.generation_config, params, params.max_new_tokens, eos_ids, 0
    )
    device = engine.base_model.device
    timer = FirstToken()
    result = {}

    def generate() -> None:
        with torch.inference_mode():
            result["out"] = engine.base_model.generate(
                input_ids=torch.tensor([ids], device=device),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
                generation_config=config,
                stopping_criteria=StoppingCriteriaList([timer]),
            )

    # In a thread like the engine's: on a small CPU box torch's intra-op pool behaves very
    # differently in the main thread, which would measure the box, not the engine.
    worker = threading.Thread(target=generate)
    worker.start()
    worker.join()
    out = result["out"]
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    new = out.shape[1] - len(ids)
    new -= int(out[0, -1].item() in eos_ids)
    return (new - 1) / (end - timer.first) if new > 1 else 0.0, new


def decode_ratio(engine: HFEngine, n_tokens: int, pairs: int) -> dict:
    messages = [{"role": "user", "content": STORY}]
    params = GenerationParams(max_new_tokens=n_tokens, do_sample=False, repetition_penalty=1.0)
    bare_tps(engine, messages, params)  # warm-up
    ours_runs, bare_runs = [], []
    for order in stats.schedule(["ours", "bare"], pairs):  # ours first, then bare first, …
        for side in order:
            run = ours_tps if side == "ours" else bare_tps
            (ours_runs if side == "ours" else bare_runs).append(run(engine, messages, params))
    counts = {n for _, n in ours_runs + bare_runs}
    assert len(counts) == 1, f"the sides generated different lengths: {counts}"
    ratio = stats.ratio_summary([t for t, _ in ours_runs], [t for t, _ in bare_runs])
    print(
        f"decode: ours {statistics.median(t for t, _ in ours_runs):8.1f} tok/s   bare generate "
        f"{statistics.median(t for t, _ in bare_runs):8.1f} tok/s   ({counts.pop()} tokens, "
        f"{pairs} pairs)   ours ÷ bare {stats.fmt(ratio)}"
    )
    return {"decode_ratio": ratio, "decode_tokens": n_tokens}


def build_big(directory: Path, hidden: int, layers: int) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    from tests.tiny_models import CHATML

    tokenizer = train_tokenizer(400)
    vocab = tokenizer.get_vocab()
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=int(hidden * 2.75) // 64 * 64,
        num_hidden_layers=layers,
        num_attention_heads=max(hidden // 64, 1),
        num_key_value_heads=max(hidden // 256, 1),
        max_position_embeddings=4096,
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    print(f"big model: random llama, {params / 1e6:.0f}M parameters, saved in bf16")
    model.save_pretrained(directory)
    del model
    gc.collect()
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>"],
    )
    hf_tokenizer.chat_template = CHATML
    hf_tokenizer.save_pretrained(directory)
    return directory


def gpu_modes(directory: Path, adapters: dict[str, str], device: str | None, n_tokens: int) -> dict:
    import torch

    from engines.hf import HFEngine

    results = {}
    messages = [{"role": "user", "content": STORY}]
    params = GenerationParams(max_new_tokens=n_tokens, do_sample=False, repetition_penalty=1.0)
    for label, flags in (
        ("bf16", {}),
        ("8bit", {"load_8bit": True}),
        ("4bit", {"load_4bit": True}),
    ):
        cuda = torch.cuda.is_available() and device != "cpu"
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        engine = HFEngine(directory, device=device, dtype="bf16", **flags)
        load_s = time.perf_counter() - started
        weights_mib = engine.base_model.get_memory_footprint() / 2**20
        if label == "bf16":  # the switch ratio at real size: load time here is seconds
            for name, path in adapters.items():
                engine.load_adapter(name, path)
            switches = []
            for i in range(20):
                started = time.perf_counter()
                engine.set_adapter(list(adapters)[i % 2])
                switches.append(time.perf_counter() - started)
            # the load alone (no close), the first of this model in the process
            results["switch_ratio"] = stats.summary([s / load_s for s in switches], digits=6)
            engine.set_adapter(None)
        ours_tps(engine, messages, params)  # warm-up
        runs = [ours_tps(engine, messages, params) for _ in range(3)]
        tps, n = statistics.median(t for t, _ in runs), runs[0][1]
        results.setdefault("_runs", {})[label] = [t for t, _ in runs]
        peak_mib = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
        print(
            f"{label:5s} weights {weights_mib:8.1f} MiB  peak cuda {peak_mib:8.1f} MiB  "
            f"decode {tps:7.1f} tok/s ({n} tokens)  load {load_s:5.1f} s  on {engine.describe()['device']}"
        )
        results[label] = {
            "weights_mib": round(weights_mib, 1),
            "peak_cuda_mib": None if peak_mib != peak_mib else round(peak_mib, 1),
            "decode_tok_s": round(tps, 1),
        }
        engine.close()
        del engine
        gc.collect()
    for label in ("8bit", "4bit"):
        results[f"memory_ratio_{label}_bf16"] = round(
            results[label]["weights_mib"] / results["bf16"]["weights_mib"], 3
        )
        # run i of this mode ÷ run i of bf16 (the modes load one after the other)
        results[f"tps_ratio_{label}_bf16"] = stats.ratio_summary(
            results["_runs"][label], results["_runs"]["bf16"]
        )
    del results["_runs"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a small model and short runs (CPU, ~1 min)"
    )
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    parser.add_argument(
        "--gpu", action="store_true", help="also bf16 / 8-bit / 4-bit on a ~1B random model"
    )
    parser.add_argument("--hidden", type=int, default=2048, help="--gpu model width")
    parser.add_argument("--layers", type=int, default=22, help="--gpu model depth")
    parser.add_argument(
        "--rounds", type=int, help="loads timed, 10-turn chats, decode pairs (default 5; 3 quick)"
    )
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    from engines.hf import HFEngine
    from engines.hf_load import quiet_library_logs

    quiet_library_logs()
    results: dict = {"mode": "quick" if args.quick else "full"}
    with tempfile.TemporaryDirectory(prefix="cosplay-bench-gpu-") as tmp:
        tmp_path = Path(tmp)
        model_dir = build_small(tmp_path, args.quick)
        adapters = build_adapters(model_dir, tmp_path / "adapters")
        results.update(switch_ratio(model_dir, adapters, args.device, loads=rounds))
        results.update(turns(model_dir, args.device, 16 if args.quick else 32, rounds))
        engine = HFEngine(model_dir, device=args.device)
        results["device"] = engine.describe()["device"]
        results.update(decode_ratio(engine, n_tokens=48 if args.quick else 128, pairs=rounds))
        engine.close()
        if args.gpu:
            big = build_big(tmp_path / "big", args.hidden, args.layers)
            big_adapters = build_adapters(big, tmp_path / "big-adapters")
            results["gpu"] = gpu_modes(
                big, big_adapters, args.device, n_tokens=64 if args.quick else 128
            )
    print(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    main()
