"""The reply flow without Textual: what the chat screen and `cosplay ask` both call."""

from __future__ import annotations

import threading

import pytest

from engines.base import GenerationParams
from engines.fake import FakeEngine
from sessions.conversation import ASSISTANT, Conversation, ReplyEvents, Turn
from sessions.group import ReplyOrder, set_cast
from sessions.models import Role, Status
from sessions.workspace import NEW_TITLE, Workspace


@pytest.fixture
def workspace(tmp_path):
    with Workspace(tmp_path / "home") as workspace:
        yield workspace


def reply(conversation: Conversation, turn: Turn, **params):
    seen: list[tuple[str, str]] = []
    events = ReplyEvents(
        started=lambda speaker, plan: seen.append((speaker, "")),
        piece=lambda text: seen.append((seen[-1][0], text)),
    )
    messages = conversation.reply(turn, GenerationParams(**params), threading.Event(), events)
    return messages, seen


def test_a_plain_chat_titles_itself_and_streams_the_assistant(workspace):
    engine = FakeEngine(["你好，我在。"])
    conversation = Conversation(workspace, engine, workspace.new_session().id)
    assert conversation.session.title == NEW_TITLE
    user = conversation.say("你好\n第二行")
    assert conversation.session.title == "你好"
    turn = conversation.turn_after(user)
    assert turn == Turn(user.id)
    [answer], seen = reply(conversation, turn)
    assert answer.content == "你好，我在。" and answer.status == Status.COMPLETE
    assert answer.parent_id == user.id and answer.meta["model"] == "demo"
    assert seen[0] == (ASSISTANT, "") and "".join(t for _, t in seen) == "你好，我在。"
    assert conversation.session.leaf_id == answer.id
    assert conversation.last_plan is not None


def test_regenerate_writes_a_new_version_and_edit_keeps_the_old_message(workspace):
    engine = FakeEngine(["一", "二", "三"])
    conversation = Conversation(workspace, engine, workspace.new_session().id)
    user = conversation.say("问")
    [first], _ = reply(conversation, conversation.turn_after(user))
    turn = conversation.regenerate()
    assert turn == Turn(user.id)
    [second], _ = reply(conversation, turn)
    assert [m.content for m in workspace.store.siblings(second)] == ["一", "二"]

    edited = conversation.edit(user, "再问")
    assert edited.parent_id == user.parent_id and edited.id != user.id
    assert conversation.regenerate() == Turn(edited.id)  # no reply yet: reply to it
    [third], _ = reply(conversation, conversation.turn_after(edited))
    assert [m.content for m in workspace.store.branch(conversation.session_id)] == ["再问", "三"]
    assert [m.content for m in workspace.store.siblings(edited)] == ["问", "再问"]


def test_a_persona_session_replies_in_character_and_a_greeting_is_not_regenerated(workspace):
    engine = FakeEngine(["亮在此。"])
    session = workspace.new_session("诸葛亮")
    conversation = Conversation(workspace, engine, session.id)
    assert conversation.regenerate() is None  # only the greeting so far
    user = conversation.say("先生安好？")
    turn = conversation.turn_after(user)
    assert turn == Turn(user.id, ("诸葛亮",))
    [answer], seen = reply(conversation, turn)
    assert answer.name == "诸葛亮" and seen[0][0] == "诸葛亮"
    assert "诸葛亮" in engine.prompts[-1][0]["content"]  # the card's system text
    assert conversation.regenerate() == Turn(user.id, ("诸葛亮",))


def test_a_scene_answers_whoever_is_addressed_and_a_manual_scene_waits(workspace):
    engine = FakeEngine(["备在。", "操在。"])
    session = workspace.new_session(["刘备", "曹操"])
    conversation = Conversation(workspace, engine, session.id)
    user = conversation.say("@曹操 @刘备 二位请坐")
    turn = conversation.turn_after(user)
    assert turn.speakers == ("曹操", "刘备")
    answers, _ = reply(conversation, turn)
    assert [(m.name, m.parent_id) for m in answers] == [("曹操", user.id), ("刘备", answers[0].id)]

    set_cast(workspace.store, session.id, ["刘备", "曹操"], order=ReplyOrder.MANUAL)
    nobody = conversation.say("大家好")
    assert conversation.turn_after(nobody) is None
    assert conversation.turn_after(nobody, pick=["刘备"]) == Turn(nobody.id, ("刘备",))


def test_cancel_keeps_the_partial_reply_and_no_engine_is_one_sentence(workspace):
    session = workspace.new_session()
    user = Conversation(workspace, None, session.id).say("hi")
    with pytest.raises(Exception, match="No model is loaded"):
        Conversation(workspace, None, session.id).reply(
            Turn(user.id), GenerationParams(), threading.Event()
        )
    cancel = threading.Event()
    engine = FakeEngine(["a b c d e f g h"])
    conversation = Conversation(workspace, engine, session.id)
    pieces = []

    def piece(text):
        pieces.append(text)
        if len(pieces) == 2:
            cancel.set()

    [answer] = conversation.reply(
        Turn(user.id), GenerationParams(), cancel, ReplyEvents(piece=piece)
    )
    assert answer.status == Status.CANCELLED and answer.content == "".join(pieces)
    assert answer.role == Role.ASSISTANT


def test_damaged_session_params_fall_back_to_defaults(workspace):
    session = workspace.store.create_session("x", settings={"params": {"temperature": "hot"}})
    assert Conversation(workspace, None, session.id).params() == GenerationParams()
