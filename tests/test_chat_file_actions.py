"""Export and import chats from the TUI: Ctrl+S writes the chosen format, Ctrl+L opens a file
as a new session (versions kept as SillyTavern swipes through the round trip)."""

import json

from engines.fake import FakeEngine
from sessions.models import Role
from sessions.store import Store
from tests.conftest import wait_until
from tui.app import make_app
from tui.chat_file_actions import ExportScreen, default_path
from tui.modals import TextPromptScreen


def test_default_paths_are_safe_file_names_that_keep_chinese():
    assert default_path("三国/演义: 第一回", "st") == "~/三国_演义_ 第一回.jsonl"
    assert default_path("...", "md") == "~/chat.md"
    assert default_path("x", "tgw") == "~/x-tgw.json"


async def test_export_as_sillytavern_then_import_it_back_with_its_swipes(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session(title="曹营")
    hi = store.add_message(session.id, Role.USER, "丞相安好？")
    store.add_message(session.id, Role.ASSISTANT, "安好。", parent_id=hi.id)
    store.add_message(session.id, Role.ASSISTANT, "甚好！", parent_id=hi.id)
    target = tmp_path / "out.jsonl"
    app = make_app(store=store, engine=FakeEngine([]), session_id=session.id)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.transcript.views) == 2)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
        app.screen.query_one("#format").value = "st"
        await pilot.pause()
        path_box = app.screen.query_one("#path")
        assert path_box.value.endswith("曹营.jsonl")
        path_box.value = str(target)
        path_box.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: target.exists())
        lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
        assert lines[-1]["swipes"] == ["安好。", "甚好！"] and lines[-1]["swipe_id"] == 1

        await pilot.press("ctrl+l")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        app.screen.query_one("#answer").value = str(target)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.chat.session.id != session.id)
        assert [v.message.content for v in app.chat.transcript.views] == ["丞相安好？", "甚好！"]
        assert "2/2" in str(app.chat.transcript.views[-1].query_one(".header").render())


async def test_a_bad_file_or_path_is_one_notification(tmp_path):
    store = Store(tmp_path / "c.db")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json", encoding="utf-8")
    app = make_app(store=store, engine=FakeEngine([]))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        before = app.chat.session.id
        await pilot.press("ctrl+l")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        app.screen.query_one("#answer").value = str(bad)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app._notifications)
        text = " ".join(n.message for n in app._notifications)
        assert "bad.jsonl" in text and app.chat.session.id == before

        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
        app.screen.query_one("#path").value = str(tmp_path)  # a folder
        app.screen.query_one("#path").focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: any("folder" in n.message for n in app._notifications))
