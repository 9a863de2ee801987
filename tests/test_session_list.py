"""The session list tells the truth: the open session marked, rows with persona, last activity
and branch length cut to the sidebar's width, `r`/Delete on the highlighted row, the next
session opened when the open one is deleted, and no pile of empty "New chat" sessions."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from rich.cells import cell_len

from engines.fake import FakeEngine
from sessions.models import Role, Session
from sessions.store import Store
from sessions.workspace import NEW_TITLE, Workspace
from tests.conftest import wait_until
from tui.app import make_app
from tui.modals import ConfirmScreen, TextPromptScreen
from tui.widgets.session_list import SessionItem, SessionList, relative_time, session_row


def test_relative_time_says_it_as_people_do():
    now = datetime(2025, 6, 15, 12, 0).timestamp()
    assert relative_time(now - 5, now) == "just now"
    assert relative_time(now - 3 * 60, now) == "3 min ago"
    assert relative_time(now - 2 * 3600, now) == "2 h ago"
    assert relative_time(datetime(2025, 6, 14, 23, 0).timestamp(), now) == "yesterday"
    assert relative_time(datetime(2025, 3, 5, 9, 0).timestamp(), now) == "Mar 5"
    assert relative_time(datetime(2023, 3, 5, 9, 0).timestamp(), now) == "2023-03-05"
    just_after_midnight = datetime(2025, 6, 15, 0, 30).timestamp()
    late_yesterday = (datetime(2025, 6, 15, 0, 30) - timedelta(hours=2)).timestamp()
    assert relative_time(late_yesterday, just_after_midnight) == "yesterday"


def session(title: str, persona: str = "", length: int = 0, **settings) -> Session:
    now = time.time()
    return Session(
        1, title, now - 600, now - 180, persona=persona, settings=settings, length=length
    )


def test_a_row_is_the_title_then_persona_last_activity_and_length():
    lines = session_row(session("三顾茅庐", "诸葛亮", 12), 25).plain.split("\n")
    assert lines[0] == "三顾茅庐"
    assert lines[1].startswith("诸葛亮 · 3 min ago") and lines[1].endswith(" 12")
    assert cell_len(lines[1]) == 25
    plain = session_row(session(NEW_TITLE), 25).plain.split("\n")
    assert plain[1].startswith("assistant · 3 min ago") and plain[1].endswith(" 0")
    scene = session_row(session("夜宴", "刘备", 3, cast=["刘备", "曹操"]), 25).plain
    assert "刘备、曹操 · 3 min ago" in scene


def test_long_chinese_titles_and_personas_are_cut_to_the_width_in_cells():
    long = session("臣本布衣躬耕于南阳苟全性命于乱世不求闻达于诸侯", "诸葛亮" * 8, 1234)
    for width in (25, 20, 15):
        title, detail = session_row(long, width).plain.split("\n")
        assert cell_len(title) <= width and cell_len(detail) <= width
        assert title.startswith("臣本布衣") and title.endswith("…")
        assert detail.endswith("1234")
        assert "3 min ago" in detail  # the time is kept, the persona cut
        assert "…" in detail or width < 18
    assert session_row(session("臣本布衣", length=5), 25).plain.startswith("臣本布衣\n")


def test_titles_are_text_not_markup():
    row = session_row(session("[bold]x[/bold] [red", "[/]"), 40)
    assert row.plain.startswith("[bold]x[/bold] [red")
    assert "[/] · " in row.plain


def items(app) -> list[SessionItem]:
    return list(app.chat.query(SessionItem))


def row_of(app, session_id: int) -> int:
    return [item.session.id for item in items(app)].index(session_id)


def sessions_store(tmp_path) -> tuple[Store, list[int]]:
    store = Store(tmp_path / "c.db")
    ids = []
    for title in ("第三", "第二", "第一"):  # the last one made is the most recent
        made = store.create_session(title)
        store.add_message(made.id, Role.USER, f"{title} question")
        ids.append(made.id)
        time.sleep(0.01)
    return store, ids[::-1]  # most recent first, as the list shows them


async def test_the_open_session_is_marked_and_the_cursor_starts_on_it(tmp_path):
    store, (first, second, third) = sessions_store(tmp_path)
    app = make_app(store=store, engine=FakeEngine(["ok"]), session_id=second)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        sidebar = app.chat.query_one(SessionList)
        assert [item.session.id for item in items(app)] == [first, second, third]
        assert [item.has_class("-open") for item in items(app)] == [False, True, False]
        assert sidebar.index == row_of(app, second)
        sidebar.focus()
        await pilot.press("down")
        assert sidebar.highlighted_session.id == third
        assert items(app)[row_of(app, second)].has_class("-open")  # still marked as open
        # Refreshed twice before the new rows mount: the cursor stays on its row.
        store.create_session("第四")
        app.chat.refresh_sidebar()
        app.chat.refresh_sidebar()
        await pilot.pause()
        assert len(items(app)) == 4 and sidebar.highlighted_session.id == third


async def test_delete_and_rename_act_on_the_highlighted_row_not_the_open_one(tmp_path):
    store, (first, second, third) = sessions_store(tmp_path)
    app = make_app(store=store, engine=FakeEngine(["ok"]), session_id=first)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.chat
        sidebar = screen.query_one(SessionList)
        sidebar.focus()
        sidebar.index = row_of(app, third)
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "第三" in str(app.screen.question)
        await pilot.press("y")
        await wait_until(pilot, lambda: third not in [s.id for s in store.list_sessions()])
        assert screen.session.id == first  # the open chat stays open
        await wait_until(pilot, lambda: len(items(app)) == 2)
        sidebar.index = row_of(app, second)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, TextPromptScreen) and app.screen.value == "第二"
        app.screen.query_one("#answer").value = "隆中对"
        await pilot.press("enter")
        await wait_until(pilot, lambda: store.get_session(second).title == "隆中对")
        assert store.get_session(first).title == "第一" and screen.session.id == first
        await wait_until(pilot, lambda: "隆中对" in [i.session.title for i in items(app)])


async def test_deleting_the_open_session_opens_the_next_and_refreshes_the_status(tmp_path):
    store, (first, second, third) = sessions_store(tmp_path)
    app = make_app(store=store, engine=FakeEngine(["ok"]), session_id=second)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.chat
        refreshed = []
        original = screen.update_status
        screen.update_status = lambda note="": (refreshed.append(note), original(note))
        await pilot.press("f8")  # from the input box: the open session
        await pilot.pause()
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.session.id == third)  # the one below it
        assert refreshed
        assert [item.session.id for item in items(app)] == [first, third]
        assert items(app)[row_of(app, third)].has_class("-open")
        await pilot.press("f8")
        await pilot.pause()
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.session.id == first)  # none below: the one above


async def test_new_chat_reuses_an_empty_new_chat_instead_of_piling_them_up(tmp_path):
    store, (first, _second, _third) = sessions_store(tmp_path)
    app = make_app(store=store, engine=FakeEngine(["ok"]), session_id=first)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.chat
        await pilot.press("ctrl+n")
        await pilot.pause()
        fresh = screen.session.id
        assert fresh != first and len(store.list_sessions()) == 4
        screen.load_session(first)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen.session.id == fresh and len(store.list_sessions()) == 4
        assert items(app)[0].session.id == fresh  # moved to the top, marked open
        assert items(app)[0].has_class("-open")


def test_an_empty_new_chat_is_reused_only_when_plain_and_empty(tmp_path):
    workspace = Workspace.of(Store(tmp_path / "c.db"))
    empty = workspace.new_session()
    assert workspace.new_session(reuse_empty=True).id == empty.id
    assert workspace.new_session().id != empty.id  # `ask --new` and the CLI make a new one
    workspace.store.add_message(empty.id, Role.USER, "hello")
    renamed = workspace.store.create_session("我的草稿")
    again = workspace.new_session(reuse_empty=True)
    assert again.id not in (empty.id, renamed.id)
    persona = workspace.new_session("诸葛亮")
    assert workspace.empty_session().id != persona.id
