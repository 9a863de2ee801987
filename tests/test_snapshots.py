"""SVG snapshots of the screens a user sees most (pytest-textual-snapshot's `snap_compare`).

Update them after a deliberate UI change with `pytest tests/test_snapshots.py --snapshot-update`
and look at the new files under tests/__snapshots__/ before committing them.

Each snapshot is the same on every machine: fixed data in a fresh data dir, built-in personas
(their detail says "built-in", not a temporary path), the training run given as a relative path,
an engine whose reply statistics are fixed (the status line prints tok/s), and no cursor blink
(Textual's blink timer keeps running headless, so a screenshot could catch either phase).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from textual.widgets import Input, TextArea

from engines.fake import FakeEngine
from sessions.store import Store
from tests.conftest import wait_until
from tui.app import make_app
from tui.personas_editor import PersonaEditor
from tui.personas_screen import PersonasScreen
from tui.training_screen import TrainingMonitorApp
from tui.widgets.message_view import MessageView

REPLY = "亮夜观天象，知三日之内必有东风。主公勿忧，可令军士预备火船。"


class SteadyEngine(FakeEngine):
    """FakeEngine whose timings are fixed, so the status line's tok/s never changes."""

    def stream_chat(self, messages, params, cancel):
        yield from super().stream_chat(messages, params, cancel)
        self.last_stats = dataclasses.replace(self.last_stats, ttft_s=0.25, total_s=1.25)


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch):
    """The cursor stays shown: the blink timers' ticks do nothing."""
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    monkeypatch.setattr(TextArea, "_toggle_cursor_blink_visible", lambda self: None)


def zhuge_app(tmp_path):
    """The chat screen on a new 诸葛亮 session (his greeting shown)."""
    store = Store(tmp_path / "c.db")
    return make_app(store=store, engine=SteadyEngine([REPLY]), persona="诸葛亮")


async def say(pilot, text: str) -> None:
    """Type `text` into the message box, send it, and wait for the whole reply."""
    app = pilot.app
    await pilot.click("#input")
    app.chat.query_one("#input", TextArea).insert(text)
    await pilot.press("enter")
    await wait_until(
        pilot, lambda: not app.chat.generating and len(app.chat.query(MessageView)) == 3
    )
    await wait_until(pilot, lambda: app.chat.query(MessageView).last().body.source == REPLY)
    await pilot.pause()


def test_chat_with_a_short_chinese_conversation(snap_compare, tmp_path):
    app = zhuge_app(tmp_path)
    assert snap_compare(app, run_before=lambda pilot: say(pilot, "先生，曹军势大，如之奈何？"))


def test_chat_wide_terminal(snap_compare, tmp_path):
    app = zhuge_app(tmp_path)
    assert snap_compare(
        app,
        terminal_size=(120, 36),
        run_before=lambda pilot: say(pilot, "先生，曹军势大，如之奈何？"),
    )


def test_chat_with_the_parameters_panel(snap_compare, tmp_path):
    async def open_params(pilot):
        await say(pilot, "先生，曹军势大，如之奈何？")
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: pilot.app.chat.query_one("#params").display)

    assert snap_compare(zhuge_app(tmp_path), run_before=open_params)


def test_first_start_without_a_model(snap_compare, tmp_path, monkeypatch):
    """The first start at 80x24: try it now, the downloads, how to point at a file (the data
    dir given as a relative path, the Hugging Face cache empty: the same on every machine)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    app = make_app(home="home", engine=None)
    assert snap_compare(app)


def test_personas_screen(snap_compare, tmp_path):
    async def open_personas(pilot):
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PersonasScreen))

    app = make_app(store=Store(tmp_path / "c.db"), engine=SteadyEngine())
    assert snap_compare(app, run_before=open_personas)


def test_persona_editor(snap_compare, tmp_path):
    async def edit_zhuge(pilot):
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PersonasScreen))
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PersonaEditor))

    app = make_app(store=Store(tmp_path / "c.db"), engine=SteadyEngine())
    assert snap_compare(app, run_before=edit_zhuge)


def test_training_monitor(snap_compare, tmp_path, monkeypatch):
    run = tmp_path / "runs" / "zhuge-lora"
    run.mkdir(parents=True)
    records = [
        {"event": "start", "step": 0, "max_steps": 40},
        *[
            {"step": s, "loss": round(3.2 / s**0.5, 4), "lr": 2e-4, "tokens_per_s": 850.0}
            for s in range(1, 41)
        ],
        {"step": 20, "eval_loss": 1.05},
        {"step": 40, "eval_loss": 0.72},
        {"event": "end", "status": "finished", "step": 40},
    ]
    (run / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.chdir(tmp_path)  # the status line prints the run directory as given
    app = TrainingMonitorApp(run.relative_to(tmp_path), poll_seconds=3600)
    assert snap_compare(app)


def test_chat_with_versions_and_a_focused_earlier_message(snap_compare, tmp_path):
    async def two_versions(pilot):
        await say(pilot, "先生，曹军势大，如之奈何？")
        await pilot.press("ctrl+r")
        await wait_until(
            pilot,
            lambda: (
                not pilot.app.chat.generating
                and "2/2"
                in str(pilot.app.chat.query(MessageView).last().query_one(".header").render())
            ),
        )
        await pilot.press("alt+up", "up")
        await pilot.pause()

    store = Store(tmp_path / "c.db")
    app = make_app(
        store=store, engine=SteadyEngine([REPLY, "东风已备，主公放心。"]), persona="诸葛亮"
    )
    assert snap_compare(app, run_before=two_versions)


def test_prompt_inspector(snap_compare, tmp_path):
    async def inspect_prompt(pilot):
        await say(pilot, "先生，曹军势大，如之奈何？")
        pilot.app.chat.query_one("#input", TextArea).insert("东风何时至？")
        await pilot.press("f4")
        await wait_until(pilot, lambda: pilot.app.screen.__class__.__name__ == "InspectorScreen")
        await pilot.pause()

    assert snap_compare(zhuge_app(tmp_path), run_before=inspect_prompt)
