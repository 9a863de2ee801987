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
    choose_speakers,
    plan_turn,
    reply_order,
    run_group_turn,
    scene_rules,
    session_cast,
    set_cast,
    set_scene_rules,
    start_session,
)
from sessions.group_order import (
    Member,
    SceneRules,
    activate,
    find_mentions,
    member_of,
    talkativeness_of,
    turn_random,
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


def members(*names: str, **aliases: tuple[str, ...]) -> list[Member]:
    return [Member(name, aliases.get(name, ())) for name in names]


def speakers(order, text, *, rules=None, recent=(), seed=0, cast=None) -> list[str]:
    rules = rules or SceneRules(ReplyOrder(order))
    found = activate(
        cast or members(*CAST),
        rules,
        text,
        rng=turn_random(1, seed, text),
        recent_speakers=recent,
    )
    return found.speakers


def test_mentions_by_any_name_in_order_and_the_longest_name_wins():
    cast = members(*CAST, 刘备=("玄德", "刘玄德"), 曹操=("孟德", "阿瞒"))
    found = find_mentions("@孟德 和 ＠刘玄德 怎么看？阿瞒笑了", cast)
    assert found.addressed == ["曹操", "刘备"] and found.named == ["曹操", "刘备"]
    assert find_mentions("曹操说玄德是英雄", cast).addressed == []
    assert find_mentions("曹操说玄德是英雄，曹操又笑", cast).named == ["曹操", "刘备"]
    overlapping = members("刘备", "刘备之")
    assert find_mentions("@刘备之 先说", overlapping).addressed == ["刘备之"]
    assert find_mentions("@刘备之后", overlapping).addressed == ["刘备之"]  # the longest
    assert find_mentions("@刘备 之后", overlapping).addressed == ["刘备"]
    assert find_mentions("@孙悟空", members("孙", "孙悟空")).addressed == ["孙悟空"]


def test_an_at_that_names_nobody_is_reported_not_taken_for_everyone():
    found = find_mentions("@张三 你好，@李四。mail me at a@b.com ＠", members(*CAST))
    assert found.unknown == ["张三", "李四"] and found.addressed == []
    result = activate(
        members(*CAST), SceneRules(ReplyOrder.LIST), "@张三 你好", rng=turn_random(1, 1, "")
    )
    assert result.speakers == CAST  # the order picks, and says so
    assert result.notices == [
        "@张三 is not in this scene (刘备、曹操、孙悟空); nobody was addressed, so the scene's "
        "order picks the speaker."
    ]
    both = activate(members(*CAST), SceneRules(), "@张三 @曹操 坐", rng=turn_random(1, 1, ""))
    assert both.speakers == ["曹操"]
    assert both.notices == ["@张三 is not in this scene (刘备、曹操、孙悟空); answering 曹操."]
    long = find_mentions("@" + "很" * 40, members(*CAST)).unknown
    assert long == ["很" * 16 + "…"]


def test_a_cards_names_are_its_name_nickname_and_aliases(tmp_path):
    from sessions.cards import card_from_dict

    card = card_from_dict(
        {
            "spec": "chara_card_v3",
            "data": {
                "name": "刘备",
                "nickname": "大耳贼",
                "extensions": {
                    "talkativeness": "0.9",
                    "cosplay": {"aliases": ["玄德", " 刘 玄德 ", "", "刘备", "玄德"]},
                },
            },
        }
    )
    member = member_of(card)
    assert member.names == ("刘备", "大耳贼", "玄德", "刘 玄德")
    assert member.talkativeness == 0.9
    builtin = member_of(PersonaStore(tmp_path / "p").get("刘备").card)
    assert {"玄德", "刘玄德", "刘皇叔", "刘豫州"} <= set(builtin.names)
    for name, alias in [("诸葛亮", "孔明"), ("曹操", "阿瞒"), ("孙悟空", "齐天大圣")]:
        assert alias in member_of(PersonaStore(tmp_path / "p").get(name).card).names
    for name, alias in [("林黛玉", "颦儿"), ("贾宝玉", "宝二爷"), ("武松", "武二郎")]:
        assert alias in member_of(PersonaStore(tmp_path / "p").get(name).card).names


def test_a_bad_alias_list_is_a_card_error_naming_the_field():
    from sessions.cards import CardError, card_from_dict

    with pytest.raises(CardError, match="extensions.cosplay.aliases"):
        card_from_dict(
            {
                "spec": "chara_card_v2",
                "data": {"name": "x", "extensions": {"cosplay": {"aliases": "玄德"}}},
            }
        )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.5", 0.5), (1, 1.0), ("2", 1.0), (-1, 0.0), ("x", 0.5), (None, 0.5), ("nan", 0.5)],
)
def test_talkativeness_reads_sillytaverns_strings(value, expected):
    assert talkativeness_of(value) == expected


@pytest.mark.parametrize(
    ("order", "text", "expected"),
    [
        ("list", "诸位怎么看？", CAST),
        ("list", "曹操怎么看？", CAST),  # a plain name does not change list order
        ("list", "@孙悟空 你呢？", ["孙悟空"]),
        ("natural", "@刘备 先说", ["刘备"]),
        ("manual", "诸位怎么看？", []),
        ("manual", "@曹操 @刘备 说说", ["曹操", "刘备"]),
        ("pooled", "@曹操 @刘备 说说", ["曹操", "刘备"]),  # @ wins in every order
    ],
)
def test_addressing_and_list_and_manual_orders(order, text, expected):
    assert speakers(order, text) == expected


def test_natural_order_names_first_then_talkativeness_rolls():
    chatty = [
        Member("刘备", talkativeness=1.0),
        Member("曹操", talkativeness=0.0),
        Member("孙悟空", talkativeness=0.0),
    ]
    for seed in range(20):
        # 曹操 is named, so he speaks first; 刘备 always passes his roll; 孙悟空 never does
        assert speakers("natural", "曹操怎么看？", cast=chatty, seed=seed) == ["曹操", "刘备"]
    silent = [Member(n, talkativeness=0.0) for n in CAST]
    picked = {tuple(speakers("natural", "诸位？", cast=silent, seed=seed)) for seed in range(30)}
    assert all(len(p) == 1 for p in picked) and len(picked) == 3  # nobody rolled: one at random
    default = [tuple(speakers("natural", "诸位？", seed=seed)) for seed in range(200)]
    sizes = [len(p) for p in default]
    assert min(sizes) == 1 and max(sizes) == 3  # 0.5 each: sometimes one, sometimes everyone
    assert 1.2 < sum(sizes) / len(sizes) < 2.0  # about 1.5 + the "nobody" fallback
    assert len({p for p in default if len(p) == 3}) > 1  # rolled in shuffled order


def test_the_draws_are_reproducible_per_session_place_and_text():
    runs = [speakers("natural", "诸位？", seed=7) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    differ = {tuple(speakers("natural", "诸位？", seed=seed)) for seed in range(10)}
    assert len(differ) > 1


def test_pooled_order_everyone_once_before_anyone_twice():
    cast = members(*CAST)
    heard: list[str] = []
    for turn in range(9):
        [who] = speakers("pooled", "下一位", recent=heard, seed=turn, cast=cast)
        heard.append(who)
    for start in range(0, 9, 3):
        assert sorted(heard[start : start + 3]) == sorted(CAST)  # each pool: everyone once
    assert all(a != b for a, b in zip(heard, heard[1:], strict=False))  # never twice in a row
    # Speakers outside the cast (a plain reply, a member since removed) do not count.
    assert speakers("pooled", "x", recent=["Assistant", "关羽", "刘备", "曹操"], seed=1) == [
        "孙悟空"
    ]


def test_muted_and_mention_only_members():
    rules = SceneRules(
        ReplyOrder.LIST, muted=frozenset({"曹操"}), mention_only=frozenset({"孙悟空"})
    )
    assert speakers("list", "诸位？", rules=rules) == ["刘备"]
    assert speakers("list", "@孙悟空 你呢", rules=rules) == ["孙悟空"]
    muted = activate(members(*CAST), rules, "@曹操 你呢", rng=turn_random(1, 1, ""))
    assert muted.speakers == []
    assert muted.notices == [
        "曹操 is muted in this scene; unmute in the scene dialog (F10) to let them speak."
    ]
    natural = SceneRules(ReplyOrder.NATURAL, mention_only=frozenset({"孙悟空", "刘备"}))
    always = [
        Member("刘备", talkativeness=1.0),
        Member("曹操", talkativeness=1.0),
        Member("孙悟空", talkativeness=1.0),
    ]
    assert speakers("natural", "诸位？", rules=natural, cast=always) == ["曹操"]
    assert speakers("natural", "孙悟空怎么看", rules=natural, cast=always) == ["孙悟空", "曹操"]
    for order in ("pooled", "natural"):
        only = SceneRules(ReplyOrder(order), mention_only=frozenset(CAST))
        result = activate(members(*CAST), only, "诸位？", rng=turn_random(1, 1, ""))
        assert result.speakers == [] and "reply only when mentioned" in result.notices[0]
    everyone = SceneRules(ReplyOrder.LIST, muted=frozenset(CAST))
    result = activate(members(*CAST), everyone, "诸位？", rng=turn_random(1, 1, ""))
    assert result.speakers == [] and result.notices[0].startswith("Everyone in this scene is muted")


def test_old_sessions_round_robin_reads_as_list(store, personas):
    session = start_session(store, [personas.get(n).card for n in CAST])
    settings = dict(session.settings, reply_order="round_robin")
    session = store.update_session(session.id, settings=settings)
    assert reply_order(session) == ReplyOrder.LIST
    assert scene_rules(session) == SceneRules(ReplyOrder.LIST)
    damaged = store.update_session(session.id, settings=dict(settings, reply_order=5, group=[1]))
    assert scene_rules(damaged) == SceneRules(ReplyOrder.NATURAL)


def test_scene_rules_are_kept_in_session_settings(store, personas):
    session = start_session(store, [personas.get(n).card for n in CAST])
    session = set_scene_rules(
        store, session.id, order="pooled", muted=["孙悟空", "刘备"], mention_only=["曹操"]
    )
    assert session.settings["group"] == {"muted": ["刘备", "孙悟空"], "mention_only": ["曹操"]}
    assert scene_rules(session) == SceneRules(
        ReplyOrder.POOLED, frozenset({"刘备", "孙悟空"}), frozenset({"曹操"})
    )
    with pytest.raises(CosplayError, match="no reply order 'loud'; use one of natural"):
        set_scene_rules(store, session.id, order="loud")
    with pytest.raises(CosplayError, match="林黛玉 is not in this scene"):
        set_scene_rules(store, session.id, muted=["林黛玉"])
    session = set_cast(store, session.id, ["曹操", "孙悟空"])
    assert scene_rules(session).muted == frozenset({"孙悟空"})  # 刘备 left: no longer counted


def test_choosing_speakers_in_a_stored_scene(store, personas):
    session = start_session(store, [personas.get(n).card for n in CAST], order=ReplyOrder.POOLED)
    message = store.add_message(
        session.id, Role.USER, "@玄德 @齐天大圣 请", parent_id=session.leaf_id
    )
    chosen = choose_speakers(store, store.get_session(session.id), personas, message)
    assert chosen.speakers == ["刘备", "孙悟空"]
    # Pooled: the greetings were a full pool, so the last greeter (孙悟空) waits.
    question = store.add_message(session.id, Role.USER, "诸位？", parent_id=session.leaf_id)
    picks = {
        choose_speakers(store, store.get_session(session.id), personas, question).speakers[0]
        for _ in range(3)
    }
    assert len(picks) == 1 and picks < {"刘备", "曹操"}
    with pytest.raises(CosplayError, match="林黛玉"):
        choose_speakers(store, store.get_session(session.id), personas, question, ["林黛玉"])
    assert choose_speakers(store, session, personas, question, ["曹操", "曹操"]).speakers == [
        "曹操"
    ]


def test_cast_is_kept_in_session_settings(store, personas):
    session = start_session(store, [personas.get(n).card for n in CAST], order=ReplyOrder.LIST)
    assert session_cast(session) == CAST and reply_order(session) == ReplyOrder.LIST
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
    started = []
    replies = run_group_turn(
        store,
        engine,
        personas,
        session.id,
        CAST,
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


def test_the_other_speakers_are_stopped_at_by_their_aliases_too(store, personas):
    liu = personas.get("刘备").card
    personas.save(liu.with_cosplay(CosplayExtension(aliases=["玄德"])))
    session = start_session(store, [personas.get(n).card for n in CAST])
    store.add_message(session.id, Role.USER, "诸位？", parent_id=session.leaf_id)
    turn = plan_turn(store, session.id, FakeEngine(["一"]), GenerationParams(), personas, "曹操")
    assert {"\n刘备：", "\n玄德：", "\n玄德:"} <= set(turn.params.stop)
    assert not any("曹操" in stop for stop in turn.params.stop)


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


# --- cosplay ask in a scene ---------------------------------------------------------------


def test_ask_in_a_scene_picks_like_the_chat_screen(capsys, tiny_gguf, cosplay_home):
    from sessions.cards import CharacterCard
    from sessions.workspace import Workspace
    from tui.cli import main

    aliases = {"刘备": ["玄德"], "曹操": ["孟德", "阿瞒"], "孙悟空": ["大圣"]}
    with Workspace(cosplay_home) as workspace:
        for name in CAST:  # short cards: the tiny model's context is 512 tokens
            card = CharacterCard.new(name, description="短。", first_mes="在。")
            workspace.personas.save(card.with_cosplay(CosplayExtension(aliases=aliases[name])))
        session = workspace.new_session(CAST)
        set_scene_rules(workspace.store, session.id, order="manual", muted=["孙悟空"])
    ask = ["ask", "--model", str(tiny_gguf), "--session", str(session.id), "--max-tokens", "3"]

    def branch():
        with Workspace(cosplay_home) as workspace:
            return workspace.store.branch(session.id)

    assert main([*ask, "诸位好"]) == 2  # manual order, nobody addressed: said, nothing saved
    err = capsys.readouterr().err
    assert "Manual order: nobody was addressed" in err and "pass --speaker NAME" in err
    assert len(branch()) == 3 and "Traceback" not in err

    assert main([*ask, "@玄德 @张三 请坐"]) == 0
    err = capsys.readouterr().err
    assert "@张三 is not in this scene (刘备、曹操、孙悟空); answering 刘备." in err
    assert [(m.role, m.name or "") for m in branch()[-2:]] == [
        (Role.USER, ""),
        (Role.ASSISTANT, "刘备"),
    ]

    assert main([*ask, "--speaker", "阿瞒", "诸位好"]) == 0  # any of their names
    assert branch()[-1].name == "曹操"
    assert main([*ask, "--speaker", "孙悟空", "大圣？"]) == 0  # picked by hand: muted or not
    assert branch()[-1].name == "孙悟空"
    capsys.readouterr()
    assert main([*ask, "--speaker", "张三", "诸位"]) == 2
    assert "张三 is not in this scene (刘备、曹操、孙悟空)" in capsys.readouterr().err
    assert main([*ask, "--dry-run", "诸位"]) == 2
    assert main([*ask, "--dry-run", "--speaker", "孟德", "诸位"]) == 0
    assert "曹操" in capsys.readouterr().out
    assert (
        len(branch()) == 9
    )  # three replies, three questions, the greetings; dry runs save nothing
