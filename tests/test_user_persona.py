"""Your own name and persona ({{user}}): an app-wide default copied into each new chat, per chat
overridable, used by the greetings and the prompt; set in the TUI."""

from __future__ import annotations

import threading

import pytest
from textual.widgets import Checkbox, Input, TextArea

from engines.base import GenerationParams
from engines.fake import FakeEngine
from sessions.cards import card_from_dict
from sessions.config import load_config
from sessions.conversation import Conversation
from sessions.models import Role
from sessions.prompt import UserPersona
from sessions.store import Store
from sessions.workspace import Workspace
from tests.conftest import wait_until
from tui.app import make_app
from tui.user_screen import UserPersonaScreen
from tui.widgets.message_view import MessageView


@pytest.fixture
def workspace(tmp_path):
    with Workspace.of(Store(tmp_path / "c.db")) as workspace:
        yield workspace


def greeting(workspace: Workspace, session_id: int) -> str:
    return workspace.store.branch(session_id)[0].content


def test_with_no_default_you_are_user_and_nothing_is_copied(workspace):
    assert workspace.default_user_persona() is None
    session = workspace.new_session("武松")
    assert "user" not in session.settings
    assert "User" in greeting(workspace, session.id)
    assert workspace.session_user_persona(session) == UserPersona()


def test_new_chats_copy_the_default_and_the_greeting_and_prompt_use_it(workspace):
    workspace.set_default_user_persona(UserPersona("赵云", "常山赵子龙，白马银枪。"))
    saved = load_config(workspace.paths.config)  # the config file is where it lives
    assert (saved.get("chat.user_name"), saved.get("chat.user_persona")) == (
        "赵云",
        "常山赵子龙，白马银枪。",
    )
    plain = workspace.new_session()
    assert plain.settings["user"]["name"] == "赵云"
    wusong = workspace.new_session("武松")
    assert "{{user}}" not in greeting(workspace, wusong.id)
    assert "赵云" in greeting(workspace, wusong.id)
    zhuge = workspace.new_session("诸葛亮")
    engine = FakeEngine(["亮已知之。"])
    conversation = Conversation(workspace, engine, zhuge.id)
    turn = conversation.turn_after(conversation.say("丞相，"))
    conversation.reply(turn, GenerationParams(), threading.Event())
    system = engine.prompts[0][0]["content"]
    assert "赵云来到蜀营" in system and "User来到蜀营" not in system
    assert "常山赵子龙" in system


def test_changing_the_default_leaves_older_chats_as_they_began(workspace):
    workspace.set_default_user_persona(UserPersona("赵云"))
    old = workspace.new_session("武松")
    workspace.set_default_user_persona(UserPersona("张飞"))
    assert workspace.session_user_persona(workspace.store.get_session(old.id)).name == "赵云"
    assert "赵云" in greeting(workspace, old.id)
    assert workspace.new_session().settings["user"]["name"] == "张飞"
    assert workspace.new_session(user=UserPersona("关羽")).settings["user"]["name"] == "关羽"


def test_a_chat_overrides_its_persona_and_untouched_greetings_follow(workspace):
    session = workspace.new_session("武松")
    workspace.set_session_user_persona(session.id, UserPersona("宋江", "及时雨"))
    assert workspace.session_user_persona(workspace.store.get_session(session.id)).name == "宋江"
    assert "宋江" in greeting(workspace, session.id)
    assert workspace.default_user_persona() is None  # only this chat
    # Once you have spoken, the greeting is part of the conversation: it stays as it was.
    first = workspace.store.branch(session.id)[0]
    workspace.store.add_message(session.id, Role.USER, "二郎！", parent_id=first.id)
    workspace.set_session_user_persona(session.id, UserPersona("李逵"))
    assert "宋江" in greeting(workspace, session.id)


def dialog_open(app) -> bool:
    return isinstance(app.screen, UserPersonaScreen) and bool(app.screen.query("#user_name"))


async def test_the_your_persona_dialog_sets_this_chat_and_the_default(tmp_path):
    store = Store(tmp_path / "c.db")
    app = make_app(store=store, engine=FakeEngine(["好汉！"]), persona="武松")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.chat
        await pilot.pause()
        assert "User" in screen.query(MessageView).first().body.source
        await pilot.press("ctrl+p")  # from the command palette
        await pilot.pause()
        await pilot.press(*"Your persona")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: dialog_open(app))
        dialog = app.screen
        assert dialog.query_one("#user_name", Input).value == "User"
        assert dialog.query_one("#as_default", Checkbox).value is True
        dialog.query_one("#user_name", Input).value = "[red]林冲"
        dialog.query_one("#user_description", TextArea).text = "八十万禁军教头"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is screen)
        await wait_until(
            pilot, lambda: "[red]林冲" in screen.query(MessageView).first().body.source
        )
        assert screen.session.settings["user"] == {
            "name": "[red]林冲",
            "description": "八十万禁军教头",
        }
        assert screen.workspace.default_user_persona() == UserPersona("[red]林冲", "八十万禁军教头")
        # This chat only: the default stays.
        await screen.run_action("user_persona")
        await wait_until(pilot, lambda: dialog_open(app))
        app.screen.query_one("#user_name", Input).value = "鲁智深"
        app.screen.query_one("#as_default", Checkbox).value = False
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: screen.session.settings["user"]["name"] == "鲁智深")
        assert screen.workspace.default_user_persona().name == "[red]林冲"
        # Esc cancels; an empty name is refused.
        await screen.run_action("user_persona")
        await wait_until(pilot, lambda: dialog_open(app))
        app.screen.query_one("#user_name", Input).value = "  "
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, UserPersonaScreen)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        assert screen.session.settings["user"]["name"] == "鲁智深"


def test_ask_user_name_names_you_in_a_new_persona_session_and_a_continued_one(
    tiny_gguf, cosplay_home
):
    from tui.cli import main

    with Workspace(cosplay_home) as workspace:  # a short card: the tiny model's context is small
        workspace.personas.create(
            card_from_dict({"name": "小二", "first_mes": "{{user}}客官请坐。"}, "小二")
        )
    argv = ["ask", "--model", str(tiny_gguf), "--max-tokens", "2", "--persona", "小二"]
    assert main([*argv, "--user-name", "林冲", "二郎！"]) == 0
    with Workspace(cosplay_home) as workspace:
        session = workspace.store.get_session(workspace.last_session())
        assert session.settings["user"]["name"] == "林冲"
        assert "林冲" in greeting(workspace, session.id)
    assert main(["ask", "--max-tokens", "2", "--user-name", "鲁智深", "再吃一碗"]) == 0
    with Workspace(cosplay_home) as workspace:
        session = workspace.store.get_session(session.id)
        assert session.settings["user"]["name"] == "鲁智深"
        assert "林冲" in greeting(workspace, session.id)  # already answered: kept as it was
        assert workspace.default_user_persona() is None  # the flag names you in this chat only
