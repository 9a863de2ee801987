"""A GGUF load reports its progress and can be stopped: by the caller's progress function
(Esc, or the TUI quitting) and by Ctrl+C, at once rather than when llama.cpp is done.

On the real SmolLM2 GGUF, each check in its own interpreter (native code: a crash fails the test
instead of killing pytest)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.real_model import shipped_gguf

STOPPED = textwrap.dedent(
    """
    import json, sys
    import llama_cpp.llama_cpp as low
    from engines.errors import LoadCancelled
    from engines.llamacpp import LlamaCppEngine

    model, result = sys.argv[1], {}
    original = low.llama_model_default_params
    seen = []
    engine = LlamaCppEngine(model, n_ctx=256, progress=lambda f: seen.append(f) or True)
    engine.close()
    result["fractions"] = seen
    calls = []
    try:
        LlamaCppEngine(model, n_ctx=256, progress=lambda f: calls.append(f) or f < 0.5)
    except LoadCancelled as exc:
        result["stopped"] = str(exc)
    result["calls_after_stop"] = len([f for f in calls if f >= 0.5])
    def broken(fraction):
        raise ValueError("a progress display with a bug")
    engine = LlamaCppEngine(model, n_ctx=256, progress=broken)  # loads all the same
    result["broken_display_loaded"] = engine.model_name
    engine.close()
    result["defaults_restored"] = low.llama_model_default_params is original
    print(json.dumps(result))
    """
)


def test_progress_runs_from_0_to_1_and_a_false_stops_the_load():
    done = subprocess.run(
        [sys.executable, "-c", STOPPED, str(shipped_gguf())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    fractions = result["fractions"]
    assert len(fractions) > 100  # once per tensor: SmolLM2 has 272
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert result["stopped"] == f"Loading {shipped_gguf().name} was stopped."
    assert result["calls_after_stop"] == 1  # llama.cpp asked once more, heard False, gave up
    assert result["broken_display_loaded"] == shipped_gguf().name
    assert result["defaults_restored"]


INTERRUPTED = textwrap.dedent(
    """
    import os, signal, sys, threading
    from engines import llamacpp_setup
    from tui.cli import run

    # As started from a terminal: a background job (CI) inherits SIGINT ignored, Python keeps it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Ctrl+C from another thread a moment after the weights start loading, as a user's lands:
    # while llama.cpp's C code holds the main thread, not inside a Python function.
    real = llamacpp_setup.load_options

    def ctrl_c_while_loading(progress=None, **options):
        timer = threading.Timer(0.005, os.kill, (os.getpid(), signal.SIGINT))
        def start_timer(fraction):
            if fraction == 0.0:
                timer.start()
            return progress(fraction)
        return real(start_timer, **options)

    llamacpp_setup.load_options = ctrl_c_while_loading
    sys.argv = ["cosplay", *sys.argv[1:]]
    sys.exit(run())
    """
)


def test_ctrl_c_while_the_model_loads_stops_it_and_says_interrupted(tmp_path):
    home = tmp_path / "home"
    argv = ["--home", str(home), "ask", "--model", str(shipped_gguf()), "--new", "hello"]
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED, *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 130, done.stderr[-3000:]
    assert done.stderr.strip().endswith("cosplay: interrupted.")
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert done.stdout == ""  # no reply: the model never finished loading


def test_a_stop_after_the_last_weights_frees_the_loaded_engine(tiny_gguf, monkeypatch):
    """Esc after llama.cpp's last progress call (or on an engine that reports none): the
    engine loads, `load_engine` asks once more, hears False, and frees it."""
    import pytest

    from engines.errors import LoadCancelled
    from engines.llamacpp import LlamaCppEngine
    from engines.loader import ModelSpec, load_engine

    closed = []
    real_close = LlamaCppEngine.close
    monkeypatch.setattr(LlamaCppEngine, "close", lambda self: closed.append(real_close(self)))
    at_one = []

    def stop_once_loaded(fraction: float) -> bool:
        at_one.extend([fraction] if fraction == 1.0 else [])
        return len(at_one) < 2  # llama.cpp's own 1.0 passes; load_engine's second one stops

    with pytest.raises(LoadCancelled, match=f"Loading {tiny_gguf.name} was stopped."):
        load_engine(ModelSpec(model=str(tiny_gguf), n_ctx=64), stop_once_loaded)
    assert at_one == [1.0, 1.0] and len(closed) == 1
