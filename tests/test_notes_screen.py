"""Pilot tests of the memory key, the background summary and the memory / Author's Note dialog."""

from __future__ import annotations

import time

from engines.fake import FakeEngine
from sessions.models import Role
from sessions.notes import AuthorNote, Memory
from sessions.store import LEAF, Store
from tests.conftest import wait_until
from tui.app import make_app
from tui.notes_screen import NotesScreen
from tui.widgets.message_view import MessageView

LINE = "第{i}回：刘备三顾茅庐，诸葛亮出山，天下三分之计已定。"


def long_chat(store: Store, rounds: int = 20, **settings) -> int:
    session = store.create_session("长谈")
    for i in range(rounds):
        store.add_message(session.id, Role.USER, LINE.format(i=i), parent_id=LEAF)
        store.add_message(session.id, Role.ASSISTANT, "亮曰：然。" * 3, parent_id=LEAF)
    if settings:
        store.update_session(session.id, settings=settings)
    return session.id


async def send(pilot, text):
    await pilot.click("#input")
    for char in text:
        await pilot.press(char)
    await pilot.press("enter")


def memory_of(store, session_id) -> Memory:
    return Memory.from_settings(store.get_session(session_id).settings)


async def test_alt_m_turns_memory_on_and_off_and_the_status_says_so(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = long_chat(store, 2)
    app = make_app(store=store, engine=FakeEngine(), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        status = app.chat.query_one("#status")
        assert "memory" not in str(status.render())
        await pilot.press("alt+m")
        assert memory_of(store, session_id).enabled
        assert "memory on" in str(status.render())
        await pilot.press("alt+m")
        assert not memory_of(store, session_id).enabled
        assert "memory" not in str(status.render())


async def test_a_reply_that_drops_turns_is_followed_by_a_summary_in_the_background(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = long_chat(store, memory={"enabled": True})
    engine = FakeEngine(
        ["好。"] + [f"刘备请诸葛亮出山（{n}）。" for n in range(9)], context_length=256
    )
    app = make_app(store=store, engine=engine, session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.chat
        await send(pilot, "再说")
        await wait_until(pilot, lambda: memory_of(store, session_id).text != "", timeout=20)
        await wait_until(pilot, lambda: not screen.summarizing, timeout=20)
        memory = memory_of(store, session_id)
        passes = len(engine.prompts) - 1
        assert memory.text == f"刘备请诸葛亮出山（{passes - 1}）。" and memory.through >= 7
        assert "前情提要" in engine.prompts[1][0]["content"]  # the prompts after the reply
        assert "memory on" in str(screen.query_one("#status").render())


async def test_sending_stops_a_summary_at_once_and_it_saves_nothing(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = long_chat(store, memory={"enabled": True, "text": "旧的提要"})
    slow = "摘要 " * 400  # 400 pieces at 20 ms: 8 s unless stopped
    engine = FakeEngine(["好。", slow, "第二个回答。"], delay=0.02, context_length=256)
    app = make_app(store=store, engine=engine, session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.chat
        await send(pilot, "一")
        await wait_until(pilot, lambda: len(engine.prompts) == 2, timeout=20)  # summarizing
        assert screen.summarizing and "summarizing" in str(screen.query_one("#status").render())
        started = time.monotonic()
        await send(pilot, "二")
        await wait_until(
            pilot, lambda: not screen.generating and len(engine.prompts) == 3, timeout=20
        )
        assert time.monotonic() - started < 3  # the reply did not wait for the summary
        views = screen.query(MessageView)
        await wait_until(pilot, lambda: views.last().body.source == "第二个回答。")
        assert memory_of(store, session_id).text == "旧的提要"  # the cancelled one saved nothing


async def test_quitting_during_a_summary_does_not_wait_for_it(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = long_chat(store, memory={"enabled": True})
    engine = FakeEngine(["好。", "摘要 " * 1000], delay=0.02, context_length=256)
    app = make_app(store=store, engine=engine, session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "一")
        await wait_until(pilot, lambda: len(engine.prompts) == 2, timeout=20)
        started = time.monotonic()
        await pilot.press("ctrl+q")
    assert time.monotonic() - started < 5  # 20 s of summary were left unwritten
    assert memory_of(store, session_id).text == ""


async def test_the_dialog_edits_memory_and_note_as_plain_text_at_80_by_24(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = long_chat(store, 2, memory={"enabled": True, "text": "旧", "through": 3})
    app = make_app(store=store, engine=FakeEngine(), session_id=session_id)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("alt+n")
        await wait_until(pilot, lambda: isinstance(app.screen, NotesScreen))
        dialog = app.screen
        save = dialog.query_one("#save")
        assert save.region.bottom <= 24 and save.region.right <= 80  # all of it on screen
        memory_box = dialog.query_one("#memory_text")
        memory_box.text = "[red]桃园结义[/red]，三人同心。"
        dialog.query_one("#note_text").text = "[b]天色已晚[/b]"
        dialog.query_one("#note_interval").value = "99999"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, NotesScreen)  # refused: the interval is too large
        dialog.query_one("#note_interval").value = "2"
        dialog.query_one("#note_depth").value = "0"
        dialog.query_one("#note_position").value = "before_prompt"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, NotesScreen))
        settings = store.get_session(session_id).settings
        assert Memory.from_settings(settings) == Memory(True, "[red]桃园结义[/red]，三人同心。", 3)
        assert AuthorNote.from_settings(settings) == AuthorNote(
            "[b]天色已晚[/b]", 2, 0, "before_prompt", "system"
        )
        await pilot.press("alt+n")
        await wait_until(pilot, lambda: isinstance(app.screen, NotesScreen))
        assert app.screen.query_one("#note_text").text == "[b]天色已晚[/b]"
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, NotesScreen))
