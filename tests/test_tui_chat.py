"""Pilot tests of the chat screen with the scripted engine."""

import html
import re

from engines.fake import FakeEngine
from sessions.models import Role, Status
from sessions.store import Store
from tests.conftest import wait_until
from tui.app import make_app
from tui.chat_screen import ChatScreen
from tui.first_start_screen import FirstStartScreen
from tui.modals import ConfirmScreen
from tui.widgets.message_view import MessageView
from tui.widgets.params_panel import ParamsPanel
from tui.widgets.session_list import SessionList


def chat_screen(app) -> ChatScreen:
    return app.chat


async def send(pilot, text):
    await pilot.click("#input")
    for char in text:
        await pilot.press(char if char != " " else "space")
    await pilot.press("enter")


def visible_text(app) -> str:
    """What the terminal shows, from an SVG screenshot with the markup stripped."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def body_text(view: MessageView) -> str:
    return view.body.source


async def test_type_a_message_and_see_the_streamed_reply(tmp_path):
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["诸葛亮曰：[bold]东风[/bold] 已至。"])
    app = make_app(store=store, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = chat_screen(app)
        await send(pilot, "hi")
        await wait_until(
            pilot, lambda: not screen.generating and len(app.chat.query(MessageView)) == 2
        )
        user_view, reply_view = app.chat.query(MessageView)
        assert body_text(user_view) == "hi"
        await wait_until(
            pilot, lambda: body_text(reply_view) == "诸葛亮曰：[bold]东风[/bold] 已至。"
        )
        # markup in model output stays literal on screen
        await pilot.pause()
        assert "[bold]东风[/bold]" in visible_text(app)
        branch = store.branch(screen.session.id)
        assert [m.role for m in branch] == [Role.USER, Role.ASSISTANT]
        assert branch[1].status == Status.COMPLETE
        assert engine.prompts[0][-1] == {"role": "user", "content": "hi"}
        assert "ctx" in str(app.chat.query_one("#status").render())
        assert screen.session.title == "hi"


async def test_escape_stops_generation_and_keeps_the_partial_reply(tmp_path):
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["word " * 400], delay=0.01)
    app = make_app(store=store, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = chat_screen(app)
        await send(pilot, "go")
        await wait_until(
            pilot,
            lambda: (
                len(app.chat.query(MessageView)) == 2
                and "word" in body_text(app.chat.query(MessageView).last())
            ),
        )
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.generating)
        reply = store.branch(screen.session.id)[-1]
        assert reply.status == Status.CANCELLED
        assert 0 < reply.content.count("word") < 400
        header = app.chat.query(MessageView).last().query_one(".header").render()
        assert "stopped" in str(header)


async def test_regenerate_keeps_the_old_reply_as_a_sibling(tmp_path):
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["first answer", "second answer"])
    app = make_app(store=store, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = chat_screen(app)
        await send(pilot, "q")
        await wait_until(
            pilot,
            lambda: (
                not screen.generating
                and store.branch(screen.session.id)[-1].content == "first answer"
            ),
        )
        await pilot.press("ctrl+r")
        await wait_until(
            pilot,
            lambda: (
                not screen.generating
                and store.branch(screen.session.id)[-1].content == "second answer"
            ),
        )
        views = app.chat.query(MessageView)
        assert len(views) == 2
        last = store.branch(screen.session.id)[-1]
        assert [m.content for m in store.siblings(last)] == ["first answer", "second answer"]
        assert "2/2" in str(views.last().query_one(".header").render())
        # both prompts ended with the same user turn
        assert engine.prompts[0] == engine.prompts[1]
        await pilot.press("alt+left")
        await wait_until(
            pilot, lambda: store.branch(screen.session.id)[-1].content == "first answer"
        )
        await wait_until(
            pilot, lambda: body_text(app.chat.query(MessageView).last()) == "first answer"
        )


async def test_switch_new_rename_and_delete_sessions(tmp_path):
    store = Store(tmp_path / "c.db")
    old = store.create_session("旧的会话")
    store.add_message(old.id, Role.USER, "old question")
    app = make_app(store=store, engine=FakeEngine(["ok"]), session_id=old.id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = chat_screen(app)
        assert body_text(app.chat.query(MessageView).first()) == "old question"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen.session.id != old.id and len(app.chat.query(MessageView)) == 0
        sessions = app.chat.query_one(SessionList)
        assert len(sessions.children) == 2
        # choose the old session in the sidebar
        sessions.focus()
        sessions.index = [item.session.id for item in sessions.children].index(old.id)
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.session.id == old.id)
        assert body_text(app.chat.query(MessageView).first()) == "old question"
        # rename
        await pilot.press("f2")
        await pilot.pause()
        for _ in range(10):
            await pilot.press("backspace")
        for char in "三顾茅庐":
            await pilot.press(char)
        await pilot.press("enter")
        await wait_until(pilot, lambda: store.get_session(old.id).title == "三顾茅庐")
        # delete asks first; cancelling keeps it
        await pilot.press("f8")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert old.id in [s.id for s in store.list_sessions()]
        await pilot.press("f8")
        await pilot.pause()
        await pilot.press("y")
        await wait_until(pilot, lambda: old.id not in [s.id for s in store.list_sessions()])
        assert screen.session.id != old.id


async def test_parameters_panel_saves_valid_values_and_flags_bad_ones(tmp_path):
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["a", "b"])
    app = make_app(store=store, engine=engine)
    async with app.run_test(size=(120, 60)) as pilot:
        screen = chat_screen(app)
        await pilot.press("ctrl+t")
        await pilot.pause()
        panel = app.chat.query_one(ParamsPanel)
        assert panel.display
        temperature = panel.query_one("#temperature")
        temperature.value = "0.25"
        temperature.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert screen.session.settings["params"]["temperature"] == 0.25
        top_p = panel.query_one("#top_p")
        top_p.value = "7"
        top_p.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert top_p.has_class("-invalid")
        assert "top_p" not in screen.session.settings["params"]
        await pilot.press("ctrl+t")
        await send(pilot, "x")
        await wait_until(pilot, lambda: not screen.generating and len(engine.params) == 1)
        assert engine.params[0].temperature == 0.25


async def test_chinese_text_wraps_inside_the_transcript(tmp_path):
    store = Store(tmp_path / "c.db")
    long_line = "臣本布衣，躬耕于南阳，苟全性命于乱世，不求闻达于诸侯。" * 4
    app = make_app(store=store, engine=FakeEngine([long_line]))
    async with app.run_test(size=(80, 30)) as pilot:
        screen = chat_screen(app)
        await send(pilot, "出师表")
        await wait_until(
            pilot, lambda: not screen.generating and len(app.chat.query(MessageView)) == 2
        )
        await wait_until(pilot, lambda: body_text(app.chat.query(MessageView).last()) == long_line)
        await pilot.pause()
        view = app.chat.query(MessageView).last()
        assert view.body.size.height >= 3  # wrapped onto several lines
        assert view.body.size.width <= 80
        shown = visible_text(app)
        assert "臣本布衣，躬耕于南阳" in shown
        assert "不求闻达于诸侯。" in shown


async def test_without_a_model_the_first_start_screen_offers_one(tmp_path):
    app = make_app(store=Store(tmp_path / "c.db"), engine=None)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, FirstStartScreen)
        await pilot.press("escape")
        await pilot.pause()
        await send(pilot, "hi")
        await pilot.pause()
        assert len(app.chat.query(MessageView)) == 0  # nothing sent without a model


async def test_persona_session_opens_with_greeting_and_replies_in_character(tmp_path):
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["亮在此。"])
    app = make_app(store=store, engine=engine, persona="诸葛亮")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = chat_screen(app)
        greeting = app.chat.query(MessageView).first()
        assert greeting.speaker == "诸葛亮" and body_text(greeting)
        await send(pilot, "hi")
        await wait_until(
            pilot, lambda: not screen.generating and len(app.chat.query(MessageView)) == 3
        )
        reply = store.branch(screen.session.id)[-1]
        assert reply.name == "诸葛亮" and reply.content == "亮在此。"
        assert app.chat.query(MessageView).last().speaker == "诸葛亮"
        assert "诸葛亮" in engine.prompts[0][0]["content"]  # the card's system text


async def test_three_character_scene_gives_one_reply_each_in_turn(tmp_path):
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["刘备答", "曹操答", "孙悟空答"])
    app = make_app(store=store, engine=engine, persona="刘备")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = chat_screen(app)
        for name in ("曹操", "孙悟空"):
            screen.action_add_character()
            await pilot.pause()
            for char in name:
                await pilot.press(char)
            await pilot.press("enter")
            await pilot.pause()
        assert screen.cast == ["刘备", "曹操", "孙悟空"]
        await pilot.press("f10", "o", "escape")  # the scene dialog: natural → list order
        await pilot.pause()
        await send(pilot, "天下英雄谁")
        await wait_until(pilot, lambda: not screen.generating and len(engine.prompts) == 3)
        await wait_until(pilot, lambda: not screen.generating)
        replies = [m for m in store.branch(screen.session.id) if m.role == Role.ASSISTANT][-3:]
        assert [(m.name, m.content) for m in replies] == [
            ("刘备", "刘备答"),
            ("曹操", "曹操答"),
            ("孙悟空", "孙悟空答"),
        ]
        speakers = [v.speaker for v in app.chat.query(MessageView)][-3:]
        assert speakers == ["刘备", "曹操", "孙悟空"]
        for prompt, name in zip(engine.prompts, ["刘备", "曹操", "孙悟空"], strict=True):
            assert name in prompt[0]["content"]


async def test_a_persona_brings_its_adapter_and_template_and_a_plain_session_drops_them(tmp_path):
    from sessions.cards import CharacterCard, CosplayExtension
    from sessions.personas import PersonaStore

    card = CharacterCard.new("孔明", first_mes="亮在此。").with_cosplay(
        CosplayExtension(adapter=str(tmp_path / "runs" / "kongming"), template="cosplay")
    )
    PersonaStore(tmp_path / "personas").save(card)
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["先生请坐。", "hello"], template="chatml")
    engine.default_adapter = "house"  # as `--adapter house=…` sets it
    app = make_app(store=store, engine=engine, persona="孔明")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = chat_screen(app)
        await send(pilot, "先生")
        await wait_until(pilot, lambda: not screen.generating and len(engine.prompts) == 1)
        assert engine.adapter_sources == {"kongming": str(tmp_path / "runs" / "kongming")}
        assert (engine.active_adapter, engine.template_name) == ("kongming", "cosplay")
        status = str(app.chat.query_one("#status").render())
        assert "template cosplay" in status and "adapter kongming" in status
        reply = store.branch(screen.session.id)[-1]
        assert reply.meta["adapter"] == "kongming" and reply.meta["template"] == "cosplay"

        await pilot.press("ctrl+n")  # a session without a persona: the engine's own settings
        await pilot.pause()
        await send(pilot, "hi")
        await wait_until(pilot, lambda: not screen.generating and len(engine.prompts) == 2)
        assert (engine.active_adapter, engine.template_name) == ("house", "chatml")
        assert len(engine.adapter_sources) == 1


async def test_an_adapter_that_cannot_load_is_a_notification(tmp_path):
    from sessions.cards import CharacterCard, CosplayExtension
    from sessions.personas import PersonaStore

    card = CharacterCard.new("孔明").with_cosplay(
        CosplayExtension(adapter=str(tmp_path / "missing"))
    )
    PersonaStore(tmp_path / "personas").save(card)
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(adapter_format="gguf")  # like the CPU engine: needs a GGUF LoRA
    app = make_app(store=store, engine=engine, persona="孔明")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = chat_screen(app)
        await send(pilot, "先生")
        await wait_until(pilot, lambda: not screen.generating)
        await pilot.pause()
        messages = [str(n.message) for n in app._notifications]
        assert any("no GGUF LoRA for the CPU engine" in m for m in messages), messages
        branch = store.branch(screen.session.id)
        assert branch[-1].role == Role.USER and branch[-1].content == "先生"  # kept
        assert not engine.prompts


async def test_edit_the_last_message_and_resend_keeps_the_old_version(tmp_path):
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["答一", "答二"])
    app = make_app(store=store, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = chat_screen(app)
        await send(pilot, "q1")
        await wait_until(pilot, lambda: not screen.generating and len(engine.prompts) == 1)
        await pilot.press("ctrl+e")
        assert screen.query_one("#input").text == "q1"
        assert "editing your last message" in str(app.chat.query_one("#status").render())
        await pilot.press("backspace", "2", "enter")
        await wait_until(pilot, lambda: not screen.generating and len(engine.prompts) == 2)
        branch = store.branch(screen.session.id)
        assert [(m.role, m.content) for m in branch] == [
            (Role.USER, "q2"),
            (Role.ASSISTANT, "答二"),
        ]
        assert engine.prompts[1][-1] == {"role": "user", "content": "q2"}  # q1 is not sent
        assert [m.content for m in store.siblings(branch[0])] == ["q1", "q2"]
        await wait_until(pilot, lambda: len(app.chat.query(MessageView)) == 2)
        assert "2/2" in str(app.chat.query(MessageView).first().query_one(".header").render())

        # The reply has one version, so Alt+← goes back to the first version of the message,
        # with its own reply.
        await pilot.press("alt+left")
        await wait_until(pilot, lambda: store.branch(screen.session.id)[-1].content == "答一")
        assert [m.content for m in store.branch(screen.session.id)] == ["q1", "答一"]

        # Ctrl+E twice: editing is cancelled, nothing is sent.
        await pilot.press("ctrl+e")
        await pilot.press("ctrl+e")
        assert screen.query_one("#input").text == "" and screen._editing is None


async def test_personas_screen_starts_a_group_scene(tmp_path):
    store = Store(tmp_path / "c.db")
    app = make_app(store=store, engine=FakeEngine(["甲", "乙"]))
    async with app.run_test(size=(110, 36)) as pilot:
        screen = chat_screen(app)
        await pilot.press("f3")
        await pilot.pause()
        await pilot.press("space", "down", "space", "enter")  # 诸葛亮 and 曹操
        await wait_until(pilot, lambda: screen.cast == ["诸葛亮", "曹操"])
        speakers = [v.speaker for v in app.chat.query(MessageView)]
        assert speakers == ["诸葛亮", "曹操"]  # each greets


async def test_quitting_mid_reply_stops_it_at_once_and_keeps_the_partial_reply(tmp_path):
    import time

    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["很久以前 " * 2000], delay=0.01)  # about a minute of streaming
    app = make_app(store=store, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = chat_screen(app)
        await send(pilot, "讲个故事")
        await wait_until(pilot, lambda: screen.generating and screen._streaming is not None)
        await pilot.pause(0.3)
        started = time.monotonic()
        await pilot.press("ctrl+q")
    assert time.monotonic() - started < 1.0
    reply = [m for m in store.all_messages(1) if m.role == Role.ASSISTANT][0]
    assert reply.status == Status.CANCELLED
    assert reply.content.startswith("很久以前") and len(reply.content) < len("很久以前 " * 2000)
