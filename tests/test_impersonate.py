"""Impersonate: the model drafts your next message (SillyTavern's impersonation prompt, your
persona's name), streamed to the caller and saved nowhere; in the chat screen, into the input box."""

from __future__ import annotations

import threading

import pytest

from engines.base import GenerationParams
from engines.fake import FakeEngine
from sessions.conversation import IMPERSONATION_PROMPT, Conversation
from sessions.models import Role
from sessions.workspace import Workspace
from tests.conftest import wait_until


@pytest.fixture
def workspace(tmp_path):
    with Workspace(tmp_path / "home") as workspace:
        yield workspace


def as_user(workspace, session_id: int, name: str) -> None:
    settings = dict(workspace.store.get_session(session_id).settings)
    settings["user"] = {"name": name, "description": ""}
    workspace.store.update_session(session_id, settings=settings)


def snapshot(workspace, session_id: int):
    """What the store holds of a session: its messages and its leaf."""
    store = workspace.store
    return [(m.id, m.content, m.status) for m in store.branch(session_id)], store.get_session(
        session_id
    ).leaf_id


def test_the_draft_is_the_users_next_line_and_nothing_is_saved(workspace):
    engine = FakeEngine(["亮夜观天象。", "阿明: 我想借东风。"])
    session = workspace.new_session("诸葛亮")
    as_user(workspace, session.id, "阿明")
    talk = Conversation(workspace, engine, session.id)
    talk.reply(talk.turn_after(talk.say("先生何事？")), GenerationParams(), threading.Event())
    before = snapshot(workspace, session.id)
    sessions = len(workspace.store.list_sessions())
    pieces: list[str] = []
    draft = talk.impersonate(GenerationParams(seed=3), threading.Event(), pieces.append)
    assert draft == "我想借东风。"  # the model's "阿明:" is taken off
    assert "".join(pieces) == "阿明: 我想借东风。"  # streamed as written
    assert snapshot(workspace, session.id) == before
    assert len(workspace.store.list_sessions()) == sessions
    prompt = engine.prompts[-1]
    expected = IMPERSONATION_PROMPT.replace("{{user}}", "阿明").replace("{{char}}", "诸葛亮")
    assert prompt[-1] == {"role": "user", "content": expected}
    assert prompt[-2]["role"] == "assistant" and prompt[-2]["content"] == "亮夜观天象。"
    assert "诸葛亮" in prompt[0]["content"]  # the persona's own system text: the planner's
    params = engine.params[-1]
    assert "\n诸葛亮:" in params.stop and "\n诸葛亮：" in params.stop and params.seed == 3


def test_a_draft_after_your_own_message_joins_it_and_a_session_prompt_wins(workspace):
    engine = FakeEngine(["draft"])
    session = workspace.new_session()
    settings = {"impersonation_prompt": "[Write as {{user}} to {{char}}.]"}
    workspace.store.update_session(session.id, settings=settings)
    talk = Conversation(workspace, engine, session.id)
    talk.say("hello")
    assert talk.impersonate(GenerationParams(), threading.Event()) == "draft"
    last = engine.prompts[-1][-1]
    assert last == {"role": "user", "content": "hello\n\n[Write as User to Assistant.]"}


def test_the_cosplay_template_names_you_as_the_speaker(workspace):
    class Recording(FakeEngine):
        speakers: list[str] = []

        def stream_chat(self, messages, params, cancel, *, prefill=""):
            self.speakers.append(self.speaker)
            self.rendered = self._template.render(messages, char_name=self.speaker)
            yield from super().stream_chat(messages, params, cancel, prefill=prefill)

    engine = Recording(["“愿闻其详。”"], template="cosplay")
    session = workspace.new_session()
    as_user(workspace, session.id, "鲁肃")
    talk = Conversation(workspace, engine, session.id)
    assert talk.impersonate(GenerationParams(), threading.Event()) == "“愿闻其详。”"
    assert engine.speakers == ["鲁肃"] and engine.rendered.endswith("鲁肃曰：")
    assert not any("Write your next reply" in m["content"] for m in engine.prompts[-1])
    assert engine.speaker == ""  # the engine speaks as before


def test_cancel_keeps_what_was_drafted(workspace):
    engine = FakeEngine(["one two three four"])
    talk = Conversation(workspace, engine, workspace.new_session().id)
    cancel = threading.Event()
    draft = talk.impersonate(
        GenerationParams(), cancel, lambda piece: piece == " two" and cancel.set()
    )
    assert draft == "one two"


async def test_the_key_drafts_into_the_input_box_and_esc_stops(tmp_path):
    from tui.app import make_app
    from tui.widgets.chat_input import ChatInput

    workspace = Workspace(tmp_path / "home")
    replies = ["To the river.", "I will go.", "one two three four five six seven eight"]
    engine = FakeEngine(replies, delay=0.05)
    session = workspace.new_session()
    talk = Conversation(workspace, engine, session.id)
    talk.reply(talk.turn_after(talk.say("Where?")), GenerationParams(), threading.Event())
    before = snapshot(workspace, session.id)
    app = make_app(workspace=workspace, engine=engine, session_id=session.id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.chat
        box = screen.query_one(ChatInput)
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not screen.generating)
        assert box.text == "I will go." and not box.read_only
        assert snapshot(workspace, session.id) == before  # a draft, not a message
        box.load_text("Well,")
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: box.text.startswith("Well, one two"))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.generating)
        assert box.text.startswith("Well, one two") and not box.text.endswith("eight")
        assert not box.read_only and screen.focused is box
        draft = box.text
        await pilot.press("enter")  # the draft is yours to send
        await wait_until(pilot, lambda: len(workspace.store.branch(session.id)) == 4)
        sent = workspace.store.branch(session.id)[2]
        assert sent.role == Role.USER and sent.content == draft
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.generating)
    workspace.close()
