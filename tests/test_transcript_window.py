"""The transcript of a long chat: only the end is mounted, earlier pages load on scrolling up."""

from engines.fake import FakeEngine
from sessions.models import Role
from sessions.store import Store
from tests.conftest import wait_until
from tui.app import make_app
from tui.widgets.message_view import MessageView
from tui.widgets.transcript import page_size


def long_session(store: Store, n: int, text: str = "第{i}句：曹操说了一些话。\n\n" * 3) -> int:
    session = store.create_session(title="long")
    parent = None
    for i in range(n):
        role = Role.USER if i % 2 == 0 else Role.ASSISTANT
        parent = store.add_message(session.id, role, text.format(i=i), parent_id=parent).id
    return session.id


def shown(app) -> list[str]:
    return [view.message.content.split("：")[0] for view in app.chat.query(MessageView)]


async def test_a_long_chat_mounts_its_end_and_loads_earlier_pages_in_place(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = long_session(store, 300)
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(90, 24)) as pilot:
        page = page_size(24)
        await wait_until(pilot, lambda: len(app.chat.query(MessageView)) == page)
        assert shown(app)[-1] == "第299句" and shown(app)[0] == f"第{300 - page}句"
        earlier = app.chat.query_one("#earlier")
        assert earlier.display and f"{300 - page} earlier" in str(earlier.render())
        transcript = app.chat.query_one("#transcript")
        await pilot.pause()
        top_view = app.chat.query(MessageView).first()
        transcript.scroll_home(animate=False)
        await wait_until(pilot, lambda: len(app.chat.query(MessageView)) == 2 * page)
        assert shown(app)[0] == f"第{300 - 2 * page}句"
        # What was at the top stays at the top of the screen: the new page went above it.
        await wait_until(pilot, lambda: transcript.scroll_y > 0)
        await pilot.pause()
        # (below the "earlier" line, as when it was scrolled to the top)
        assert 0 <= top_view.region.y - transcript.region.y <= earlier.outer_size.height + 1
        assert f"{300 - 2 * page} earlier" in str(earlier.render())


async def test_pages_that_do_not_fill_the_screen_load_more_until_they_do(tmp_path, monkeypatch):
    monkeypatch.setattr("tui.widgets.transcript.page_size", lambda height: 3)
    store = Store(tmp_path / "c.db")
    session_id = long_session(store, 200, text="{i}")
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(90, 40)) as pilot:
        transcript = app.chat.query_one("#transcript")
        await wait_until(pilot, lambda: transcript.max_scroll_y > 0)
        await pilot.pause()
        count = len(app.chat.query(MessageView))
        assert 3 < count < 30  # filled, a page at a time, but the chat was not loaded whole


async def test_a_short_chat_shows_everything_and_no_earlier_line(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = long_session(store, 6)
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(90, 24)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.query(MessageView)) == 6)
        assert not app.chat.query_one("#earlier").display


async def test_versions_and_regenerate_work_at_the_end_of_a_long_chat(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = long_session(store, 120)
    engine = FakeEngine(["新的回答"])
    app = make_app(store=store, engine=engine, session_id=session_id)
    async with app.run_test(size=(90, 24)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.query(MessageView)) == page_size(24))
        await pilot.press("ctrl+r")
        await wait_until(
            pilot,
            lambda: (
                not app.chat.generating
                and app.chat.query(MessageView).last().message.content == "新的回答"
            ),
        )
        header = str(app.chat.query(MessageView).last().query_one(".header").render())
        assert "2/2" in header
        await pilot.press("alt+left")
        await wait_until(pilot, lambda: shown(app)[-1] == "第119句")
        assert len(app.chat.query(MessageView)) == page_size(24)


async def test_jumping_to_an_old_message_loads_around_it_and_pages_down(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = long_session(store, 300)
    target = store.branch(session_id)[100]
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(90, 24)) as pilot:
        page = page_size(24)
        await wait_until(pilot, lambda: len(app.chat.query(MessageView)) == page)
        app.chat.load_session(session_id, show=target.id)
        await wait_until(pilot, lambda: getattr(app.chat.focused, "message", None) == target)
        assert "第100句" in shown(app) and len(shown(app)) <= page + 1
        later = app.chat.query_one("#later")
        assert later.display and "later message(s)" in str(later.render())
        before = len(shown(app))
        transcript = app.chat.transcript
        await pilot.pause()

        def scrolled_down() -> bool:  # as a user keeps scrolling until the page comes
            transcript.scroll_end(animate=False)
            return len(shown(app)) > before

        await wait_until(pilot, scrolled_down)
        assert shown(app)[before] == f"第{100 + page // 2 + 1}句"  # the page below, in order
        # sending from here goes back to the end of the chat first
        assert not transcript.reaches_end
