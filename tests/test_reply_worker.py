"""The chat screen's engine swap (tui/reply_worker.py): `closed` is set only once the old engine
is closed, at once when there is none, and after a reply under way has stopped."""

from __future__ import annotations

import threading

from engines.fake import FakeEngine
from sessions.store import Store
from tests.conftest import wait_until
from tui.app import make_app


class SlowToClose(FakeEngine):
    def __init__(self, replies, release: threading.Event, **kwargs):
        super().__init__(replies, **kwargs)
        self.release = release
        self.was_closed = False

    def close(self) -> None:
        self.release.wait(5)
        self.was_closed = True
        super().close()


async def test_closed_is_set_once_the_old_engine_is_closed(tmp_path):
    release, closed = threading.Event(), threading.Event()
    old = SlowToClose(["旧的回复"], release)
    app = make_app(store=Store(tmp_path / "c.db"), engine=old)
    async with app.run_test(size=(100, 30)) as pilot:
        new = FakeEngine(["新的回复"])
        app.chat.swap_engine(new, closed)
        await pilot.pause(0.1)
        assert app.chat.engine is new and not closed.is_set() and not old.was_closed
        release.set()
        await wait_until(pilot, closed.is_set)
        assert old.was_closed


async def test_closed_is_set_at_once_when_there_is_nothing_to_close(tmp_path):
    engine = FakeEngine(["回复"])
    app = make_app(store=Store(tmp_path / "c.db"), engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        closed = threading.Event()
        app.chat.swap_engine(engine, closed)  # the same engine: nothing to close
        assert closed.is_set()
        app.chat.swap_engine(None, threading.Event())
        await wait_until(pilot, lambda: app.chat.engine is None)
        again = threading.Event()
        app.chat.swap_engine(None, again)  # no model before or after
        assert again.is_set()
    engine.close()


async def test_a_reply_under_way_is_stopped_before_the_old_engine_is_closed(tmp_path):
    release = threading.Event()
    release.set()
    old = SlowToClose(["一二三四五六七八九十" * 30], release, delay=0.02)
    app = make_app(store=Store(tmp_path / "c.db"), engine=old)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.click("#input")
        await pilot.press("h", "i", "enter")
        await wait_until(pilot, lambda: app.chat.generating)
        closed = threading.Event()
        app.chat.swap_engine(None, closed)
        await wait_until(pilot, closed.is_set)
        assert old.was_closed and not app.chat.generating and app.chat.engine is None
        reply = app.chat.store.branch_tail(app.chat.session.id, limit=1)[-1]
        assert reply.content and len(reply.content) < 300  # stopped part-way, and kept
