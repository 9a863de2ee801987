"""Start-up and switch costs.

`cosplay --help` and the light commands start without importing a heavy library: building the
parser imports no pydantic, Textual, llama.cpp, torch or numpy (tui/cli.py's `parser.later`);
each check runs in a fresh interpreter and looks at `sys.modules`. Closing the GPU engine frees
the model without the cycle collector (half a second with torch loaded)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import weakref

import pytest

HEAVY = ["pydantic", "textual", "llama_cpp", "torch", "transformers", "numpy", "jinja2", "gguf"]

CHILD = """
import json, sys
from tui.cli import build_parser, main
argv, run = json.loads(sys.argv[1]), sys.argv[2] == "run"
try:
    main(argv) if run else build_parser(argv).parse_args(argv)
except SystemExit:
    pass
print(json.dumps(sorted(name for name in {heavy} if name in sys.modules)))
"""


def heavy_imports(argv: list[str], *, run: bool) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(heavy=HEAVY), json.dumps(argv), "run" if run else ""],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["sessions", "--help"]])
def test_help_imports_nothing_heavy(argv):
    assert heavy_imports(argv, run=True) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["sessions", "list"],
        ["sessions", "export", "3", "--format", "json"],
        ["personas", "list", "--json"],
        ["data", "extract", "novel.txt", "--out", "x.jsonl"],
        ["export-gguf", "adapter", "--base", "base.gguf"],
    ],
)
def test_parsing_a_light_command_imports_nothing_heavy(argv):
    assert heavy_imports(argv, run=False) == []


def test_the_heavy_commands_still_get_their_arguments():
    from tui.cli import build_parser

    args = build_parser(["ask"]).parse_args(["ask", "--model", "m.gguf", "--threads", "2", "hi"])
    assert (args.model, args.threads, args.text) == ("m.gguf", 2, "hi")
    args = build_parser(["train"]).parse_args(["train", "--base", "b", "--data", "d", "--out", "o"])
    assert args.func.__name__ == "run_train"


def test_sessions_list_runs_without_pydantic(tmp_path):
    assert heavy_imports(["--home", str(tmp_path), "sessions", "list"], run=True) == []


def test_ask_on_the_real_model_imports_only_llama_cpp_and_what_it_needs(tmp_path):
    """`cosplay ask` is measured against a bare llama_cpp script: everything it imports beyond
    llama_cpp (and its numpy and jinja2) is start-up the bare script does not pay for."""
    from tests.real_model import shipped_gguf

    argv = ["--home", str(tmp_path), "ask", "--model", str(shipped_gguf()), "--new"]
    argv += ["--max-tokens", "2", "--temperature", "0", "hi"]
    assert heavy_imports(argv, run=True) == ["jinja2", "llama_cpp", "numpy"]


def test_closing_the_gpu_engine_frees_the_model_without_the_cycle_collector(
    tiny_llama, monkeypatch
):
    from engines.base import GenerationParams
    from engines.hf import HFEngine

    engine = HFEngine(tiny_llama["hf"])
    reply = engine.stream_chat(
        [{"role": "user", "content": "hi"}], GenerationParams(max_new_tokens=3), threading.Event()
    )
    "".join(reply)
    held = [weakref.ref(engine.base_model), weakref.ref(engine._prefix.cache)]
    monkeypatch.setattr(gc, "collect", lambda *args: pytest.fail("close ran the cycle collector"))
    gc.disable()
    try:
        engine.close()
        assert [ref() for ref in held] == [None, None]  # freed by reference counting alone
    finally:
        gc.enable()


RUN_CHILD = """
import gc, sys
from tui.cli import run
sys.argv = ["cosplay", *sys.argv[1:]]
try:
    code = run()
except SystemExit as exc:
    code = exc.code
sys.stderr.write(f"frozen={gc.get_freeze_count()} code={code}\\n")
sys.exit(code)
"""


@pytest.mark.parametrize(
    "argv, code", [(["--version"], 0), (["sessions", "list"], 0), (["sessions", "show", "9"], 2)]
)
def test_the_command_ends_without_the_last_full_garbage_collection(tmp_path, argv, code):
    """The `cosplay` script runs `tui.cli:run`: its objects are frozen out of the collection
    Python makes at exit, whether the command returned, exited through argparse or failed;
    its output and exit code are unchanged."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="cosplay")
    assert script.value == "tui.cli:run"
    done = subprocess.run(
        [sys.executable, "-c", RUN_CHILD, "--home", str(tmp_path), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    frozen = int(done.stderr.rsplit("frozen=", 1)[1].split()[0])
    assert frozen > 10_000  # every object the command made, not a handful
    if argv == ["--version"]:
        assert done.stdout.startswith("cosplay ")
    if code == 2:
        assert done.stderr.startswith("cosplay: ")
