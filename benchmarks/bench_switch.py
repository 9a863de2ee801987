"""Memory across model switches in the TUI: the process's RSS after loading the real SmolLM2
(Q4_1, built in) and after three switches through the models screen (to a requantized Q8_0 copy,
back, and to the copy again), each switch as a person makes it (Alt+E, the model, Enter).

Two arms, each in its own process: `close` (the app as shipped: the old engine is closed) and
`kept` (the old engine is never closed: what a leak would look like). Prints RSS after each
switch ÷ RSS with the same model loaded the first time, per arm.

    python benchmarks/bench_switch.py
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_bytes() -> int:
    """This process's resident set size (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")


async def switch_to(app, pilot, model: Path, timeout: float = 120.0) -> None:
    """Open the models screen, pick `model`, Enter; return once it is in the chat and the old
    engine's close has run (the close worker finished)."""
    from tui.models_screen import ModelsScreen

    old = app.engine
    await pilot.press(app.keys_of_id("models").lower())
    for _ in range(int(timeout / 0.02)):
        if isinstance(app.screen, ModelsScreen):
            break
        await pilot.pause(0.02)
    screen = app.screen
    index = next(i for i, c in enumerate(screen.models) if c.model == str(model))
    screen.query_one("#models").highlighted = index
    await pilot.press("enter")
    for _ in range(int(timeout / 0.02)):
        closing = [w for w in app.chat.workers if w.group == "engine-close" and w.is_running]
        if app.engine is not old and not closing:
            break
        await pilot.pause(0.02)
    else:
        raise TimeoutError(f"switching to {model} took over {timeout} s")
    await pilot.press("escape")


async def run_arm(arm: str, builtin: Path, copy: Path, home: Path, switches: int = 3) -> list[int]:
    from sessions.workspace import Workspace
    from tui.app import make_app
    from tui.model_loading import load_in_tui, spec_for

    workspace = Workspace(home)
    workspace.paths.models.mkdir(parents=True, exist_ok=True)
    linked = workspace.paths.models / copy.name  # listed on the models screen
    linked.symlink_to(copy)
    copy = linked
    engine = load_in_tui(spec_for(str(builtin), workspace), workspace)
    app = make_app(workspace=workspace, engine=engine)
    sizes = []
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        kept: list = []
        if arm == "kept":  # the leak this guards against: old engines never closed (held)
            app.chat.close_engine = lambda engine, closed=None: kept.append(engine)
        del engine  # the app holds the engine in use
        gc.collect()
        sizes.append(rss_bytes())
        for model in [copy, builtin] * (switches // 2) + [copy] * (switches % 2):
            await switch_to(app, pilot, model)
            gc.collect()
            sizes.append(rss_bytes())
    for engine in [*kept, app.engine]:
        engine.close()
    workspace.close()
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=["close", "kept"], help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--switches", type=int, default=3, help="switches per arm (default 3)")
    args = parser.parse_args()
    if args.arm:
        with tempfile.TemporaryDirectory() as home:
            sizes = asyncio.run(run_arm(args.arm, *args.models, Path(home), args.switches))
        print(json.dumps(sizes))
        return
    from engines.catalog import builtin_model
    from tests.real_model import requantize

    builtin = builtin_model()
    with tempfile.TemporaryDirectory() as folder:
        copy = requantize(builtin, Path(folder) / "smollm2-q8_0.gguf", 7)
        for arm in ("close", "kept"):
            out = subprocess.run(
                [sys.executable, __file__, "--arm", arm, "--models", str(builtin), str(copy)]
                + ["--switches", str(args.switches)],
                capture_output=True,
                text=True,
            )
            if out.returncode:
                sys.exit(f"the {arm} arm failed:\n{out.stderr[-3000:]}")
            sizes = json.loads(out.stdout.strip().splitlines()[-1])
            q4, q8 = sizes[0::2], sizes[1::2]
            mb = " → ".join(
                f"{'Q4_1' if i % 2 == 0 else 'Q8_0'} {s / 2**20:.0f}" for i, s in enumerate(sizes)
            )
            print(
                f"{arm:5}: RSS MB {mb}; last Q4_1 ÷ first Q4_1 {q4[-1] / q4[0]:.2f}, "
                f"last Q8_0 ÷ first Q8_0 {q8[-1] / q8[0]:.2f}"
            )


if __name__ == "__main__":
    main()
