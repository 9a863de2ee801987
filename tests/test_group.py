"""Group scenes: reply order, and one reply per speaker built from that speaker's card."""

from __future__ import annotations

import threading

import pytest

from engines.base import CosplayError, GenerationParams
from engines.fake import FakeEngine
from engines.templates import get_template
from sessions.cards import CosplayExtension
from sessions.group import (
    ReplyOrder,
    mentioned,
    next_speakers,
    plan_turn,
    reply_order,
    run_group_turn,
    session_cast,
    set_cast,
    start_session,
)
from sessions.models import Role
from sessions.personas import PersonaStore
from sessions.prompt import UserPersona, speaker_view
from sessions.store import Store

CAST = ["刘备", "曹操", "孙悟空"]


class RecordingEngine(FakeEngine):
    """A fake engine that also records which adapter each prompt was generated with."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.adapters_used: list[str | None] = []

    def stream_chat(self, messages, params, cancel):
        self.adapters_used.append(self.active_adapter)
        return super().stream_chat(messages, params, cancel)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    yield store
    store.close()


@pytest.fixture
def personas(tmp_path) -> PersonaStore:
    personas = PersonaStore(tmp_path / "personas")
    cao = personas.get("曹操").card
    personas.save(
        cao.with_cosplay(
            CosplayExtension(adapter="adapters/caocao-lora", sampling={"temperature": 0.2})
        )
    )
    return personas


# --- reply order ---------------------------------------------------------------------


def test_mentions():
    assert mentioned("@曹操 和 @刘备 怎么看？", CAST, at_only=True) == ["曹操", "刘备"]
    assert mentioned("＠孙悟空！", CAST, at_only=True) == ["孙悟空"]
    assert mentioned("曹操说刘备是英雄", CAST, at_only=True) == []
    assert mentioned("曹操说刘备是英雄，曹操又笑", CAST, at_only=False) == ["曹操", "刘备"]
    assert mentioned("@孙悟空", ["孙", "孙悟空"], at_only=True) == [
        "孙悟空"
    ]  # the longest name wins


@pytest.mark.parametrize(
    ("order", "text", "pick", "expected"),
    [
        ("round_robin", "诸位怎么看？", None, CAST),
        ("round_robin", "曹操怎么看？", None, CAST),  # a plain name does not change round robin
        ("round_robin", "@孙悟空 你呢？", None, ["孙悟空"]),
        ("natural", "诸位怎么看？", None, CAST),
        ("natural", "孙悟空和曹操怎么看？", None, ["孙悟空", "曹操"]),
        ("natural", "@刘备 先说", None, ["刘备"]),
        ("manual", "诸位怎么看？", None, []),
        ("manual", "@曹操 @刘备 说说", None, ["曹操", "刘备"]),
        ("manual", "诸位怎么看？", ["孙悟空"], ["孙悟空"]),
        ("natural", "@曹操", ["刘备", "刘备"], ["刘备"]),  # an explicit pick wins, once each
    ],
)
def test_next_speakers(order, text, pick, expected):
    assert next_speakers(CAST, ReplyOrder(order), text, pick) == expected


def test_picking_someone_outside_the_scene_is_an_error():
    with pytest.raises(CosplayError, match="林黛玉"):
        next_speakers(CAST, "manual", "", ["林黛玉"])


def test_cast_is_kept_in_session_settings(store, personas):
    session = start_session(
        store, [personas.get(n).card for n in CAST], order=ReplyOrder.ROUND_ROBIN
    )
    assert session_cast(session) == CAST and reply_order(session) == ReplyOrder.ROUND_ROBIN
    assert session.persona == "刘备"
    greetings = store.branch(session.id)
    assert [m.name for m in greetings] == CAST  # each opens the scene in turn
    session = set_cast(store, session.id, ["曹操", "林黛玉", "曹操"], ReplyOrder.MANUAL)
    assert session_cast(session) == ["曹操", "林黛玉"] and session.persona == "曹操"
    assert reply_order(session) == ReplyOrder.MANUAL
    assert len(store.branch(session.id)) == 3  # history kept
    with pytest.raises(CosplayError):
        start_session(store, [personas.get("曹操").card] * 2)


# --- a scene ----------------------------------------------------------------------


def test_group_scene_one_reply_per_speaker_with_their_own_card(store, personas):
    session = start_session(store, [personas.get(n).card for n in CAST], user=UserPersona("玩家"))
    store.add_message(
        session.id, Role.USER, "天下大势如何？", parent_id=session.leaf_id, name="玩家"
    )
    engine = RecordingEngine(
        ["汉室可兴。", "惟使君与操耳。", "俺老孙不管这些！"], template="cosplay"
    )
    speakers = next_speakers(CAST, reply_order(session), "天下大势如何？")
    started = []
    replies = run_group_turn(
        store,
        engine,
        personas,
        session.id,
        speakers,
        GenerationParams(max_new_tokens=64),
        threading.Event(),
        on_start=lambda turn: started.append(turn.speaker),
    )
    assert started == CAST
    assert [(m.name, m.content) for m in replies] == [
        ("刘备", "汉室可兴。"),
        ("曹操", "惟使君与操耳。"),
        ("孙悟空", "俺老孙不管这些！"),
    ]
    branch = store.branch(session.id)
    assert [m.name for m in branch[-3:]] == CAST and branch[-1].id == replies[-1].id
    assert [m.meta["persona"] for m in replies] == CAST

    # Each prompt was built from the speaker's own card.
    descriptions = {name: personas.get(name).card.data.description[:20] for name in CAST}
    for speaker, prompt in zip(CAST, engine.prompts, strict=True):
        system = prompt[0]["content"]
        assert descriptions[speaker] in system
        assert all(descriptions[other] not in system for other in CAST if other != speaker)
        assert f"Write only {speaker}'s next reply" in system
        own_examples = [m for m in prompt if m.get("role") == "assistant"]
        assert own_examples and all(m["name"] == speaker for m in own_examples)
        rendered = get_template("cosplay").render(prompt)
        assert rendered.endswith(f"{speaker}曰：")  # the cosplay template speaks as the speaker
        assert "玩家曰：“天下大势如何？”" in rendered
    # Later speakers see the earlier replies of this round, with their names.
    assert {"role": "user", "content": "汉室可兴。", "name": "刘备"} in engine.prompts[1]
    assert {"role": "user", "content": "惟使君与操耳。", "name": "曹操"} in engine.prompts[2]

    # Each speaker ran with its own adapter (or none) and its own sampling preset.
    assert engine.adapters_used == [None, "caocao-lora", None]
    assert [p.temperature for p in engine.params] == [0.8, 0.2, 0.8]
    assert "\n刘备：" in engine.params[1].stop and "\n曹操：" not in engine.params[1].stop


def test_cancel_stops_the_round(store, personas):
    session = start_session(store, [personas.get(n).card for n in CAST])
    store.add_message(session.id, Role.USER, "诸位？", parent_id=session.leaf_id)
    cancel = threading.Event()
    replies = run_group_turn(
        store,
        FakeEngine(["一", "二", "三"]),
        personas,
        session.id,
        CAST,
        GenerationParams(),
        cancel,
        on_start=lambda turn: cancel.set() if turn.speaker == "曹操" else None,
    )
    assert [m.name for m in replies] == ["刘备", "曹操"]
    assert replies[-1].status.value == "cancelled"


def test_session_params_beat_the_persona_preset(store, personas):
    session = start_session(
        store, personas.get("曹操").card, settings={"params": {"temperature": 1.1}}
    )
    turn = plan_turn(store, session.id, FakeEngine(), GenerationParams(temperature=1.1), personas)
    assert turn.speaker == "曹操" and turn.adapter == "caocao-lora"
    assert turn.params.temperature == 1.1


def test_speaker_view_for_templates_without_names():
    history = [
        {"role": "user", "content": "问", "name": "玩家"},
        {"role": "assistant", "content": "甲答", "name": "刘备"},
        {"role": "assistant", "content": "乙答", "name": "曹操"},
    ]
    view = speaker_view(history, char="孙悟空", user="玩家", name_aware=False)
    assert view == [
        {"role": "user", "content": "玩家: 问\n\n刘备: 甲答\n\n曹操: 乙答", "name": "玩家"}
    ]
    own = speaker_view(history, char="曹操", user="玩家", name_aware=False)
    assert [m["role"] for m in own] == ["user", "assistant"]
    assert own[1] == {"role": "assistant", "content": "乙答", "name": "曹操"}
    single = speaker_view(
        history[:1] + [{"role": "assistant", "content": "答"}], char="x", user="u", name_aware=False
    )
    assert single == [
        {"role": "user", "content": "问", "name": "玩家"},
        {"role": "assistant", "content": "答", "name": "x"},
    ]


def _scene(store, personas, speakers: list[str], rounds: int):
    """A scene of `rounds` rounds (玩家 asks, `speakers` answer in turn), then one more question."""
    session = start_session(store, [personas.get(n).card for n in CAST], user=UserPersona("玩家"))
    parent = session.leaf_id
    for turn in range(rounds + 1):
        parent = store.add_message(
            session.id, Role.USER, f"第{turn}问", parent_id=parent, name="玩家"
        ).id
        for name in speakers if turn < rounds else []:
            parent = store.add_message(
                session.id, Role.ASSISTANT, f"{name}答{turn}", parent_id=parent, name=name
            ).id
    return session


def test_a_long_scene_is_planned_from_its_recent_window(store, personas):
    session = _scene(store, personas, CAST, 300)
    engine = FakeEngine(context_length=1024)  # chatml: other speakers' names go in the text
    plan = plan_turn(store, session.id, engine, GenerationParams(max_new_tokens=100), personas)
    plan = plan.plan
    assert plan.prompt_tokens == engine.count_tokens(plan.messages) <= 1024 - 100
    history = [m for m in plan.messages if m["role"] != "system"]
    # 刘备's view: the others' lines and the question merged into one user turn.
    assert history[-1]["content"] == "曹操: 曹操答299\n\n孙悟空: 孙悟空答299\n\n玩家: 第300问"
    assert history[-2] == {"role": "assistant", "content": "刘备答299", "name": "刘备"}
    assert history[0]["role"] == "user"  # the cut is where a round starts for 刘备
    assert plan.dropped_messages > 1000 and plan.dropped_rounds is None


def test_who_else_speaks_is_read_from_the_window(store, personas):
    # 曹操 and 孙悟空 only greeted, long ago: the recent window is a two-person chat.
    session = _scene(store, personas, ["刘备"], 400)
    engine = FakeEngine(context_length=1024)
    plan = plan_turn(store, session.id, engine, GenerationParams(max_new_tokens=100), personas)
    history = [m for m in plan.plan.messages if m["role"] != "system"]
    assert history[-1] == {"role": "user", "content": "第400问", "name": "玩家"}
    assert history[-2] == {"role": "assistant", "content": "刘备答399", "name": "刘备"}
