"""Persona store, built-ins, the personas CLI, and persona prompt assembly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.base import GenerationParams
from engines.fake import FakeEngine
from sessions.cards import CharacterCard, card_from_dict, load_card
from sessions.group import start_session
from sessions.models import Role
from sessions.personas import PersonaError, PersonaStore, builtin_cards, safe_stem
from sessions.prompt import (
    UserPersona,
    expand_macros,
    parse_examples,
    plan_prompt,
    post_history_text,
    system_text,
)
from sessions.store import Store
from tui.cli import main

SERAPHINA = Path(__file__).parent / "data" / "Seraphina.png"
BUILTIN_NAMES = ["诸葛亮", "曹操", "刘备", "孙悟空", "林黛玉", "贾宝玉", "武松", "Assistant"]


@pytest.fixture
def personas(tmp_path) -> PersonaStore:
    return PersonaStore(tmp_path / "personas")


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    yield store
    store.close()


# --- file names ----------------------------------------------------------------------


def test_safe_stems_never_collide_or_escape():
    names = [
        "曹操",
        "曹操 ",
        " 曹操",
        "曹操_20_",
        "Ann",
        "ann",
        "../etc/passwd",
        "..",
        ".",
        "a/b",
        "a\\b",
        "CON",
        "x" * 100,
        "x" * 99 + "y",
        "诸葛亮" * 33 + "甲",
        "诸葛亮" * 33 + "乙",
    ]
    stems = [safe_stem(name) for name in names]
    assert len(set(stems)) == len(names)
    assert len({stem.casefold() for stem in stems}) == len(
        names
    )  # case-insensitive file systems too
    for stem in stems:
        assert "/" not in stem and "\\" not in stem and "." not in stem
        assert len(stem.encode()) <= 200
    assert safe_stem("曹操") == "曹操"


def test_traversal_names_stay_inside_the_store(personas, tmp_path):
    card = CharacterCard.new("../../evil")
    path = personas.save(card).path
    assert path.parent == personas.directory
    assert personas.get("../../evil").card.name == "../../evil"
    assert not (tmp_path.parent / "evil.json").exists()


def test_names_differing_by_a_space_are_two_personas(personas):
    personas.save(CharacterCard.new("曹操", description="user copy"))
    personas.save(CharacterCard.new("曹操 ", description="with a space"))
    assert personas.get("曹操 ").card.data.description == "with a space"
    assert personas.get("曹操").card.data.description == "user copy"


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 101])
def test_bad_names_are_refused(personas, name):
    with pytest.raises(PersonaError):
        personas.path_for(name)


# --- built-ins -----------------------------------------------------------------------


def test_builtins_are_complete_chinese_cards():
    cards = builtin_cards()
    assert [card.name for card in cards] == BUILTIN_NAMES
    for card in cards:
        data = card.data
        assert data.first_mes and data.creator_notes and data.tags
        blocks = parse_examples(data.mes_example, char=card.name, user="User")
        assert len(blocks) >= 2, card.name
        assert all(any(m["role"] == "assistant" for m in block) for block in blocks)
        if card.name != "Assistant":
            assert "English:" in data.description
            assert any("\u4e00" <= c <= "\u9fff" for c in data.first_mes)


def test_builtins_are_read_only_and_editing_saves_a_copy(personas):
    assert personas.get("诸葛亮").builtin
    with pytest.raises(PersonaError, match="built-in"):
        personas.delete("诸葛亮")
    card = personas.get("诸葛亮").card
    card.data.personality = "edited"
    saved = personas.save(card)
    assert not saved.builtin and saved.path.is_file()
    assert personas.get("诸葛亮").card.data.personality == "edited"
    assert [p.name for p in personas.list()].count("诸葛亮") == 1
    assert builtin_cards()[0].data.personality != "edited"  # the package data is untouched
    personas.delete("诸葛亮")  # deleting the copy brings the built-in back
    assert personas.get("诸葛亮").builtin


def test_list_search_duplicate_and_rename(personas):
    assert [p.name for p in personas.list("红楼梦")] == ["林黛玉", "贾宝玉"]
    assert [p.name for p in personas.list("monkey")] == ["孙悟空"]
    copy = personas.duplicate("武松")
    assert copy.name == "武松 (copy)" and personas.duplicate("武松").name == "武松 (copy 2)"
    card = personas.get("武松 (copy)").card
    card.data.name = "行者"
    personas.save(card, previous_name="武松 (copy)")
    assert personas.exists("行者") and not personas.exists("武松 (copy)")
    with pytest.raises(PersonaError, match="already exists"):
        personas.save(
            personas.get("行者").card.model_copy(update={}), previous_name="武松 (copy 2)"
        )


def test_import_keeps_avatar_and_exports_png(personas, tmp_path):
    persona = personas.import_file(SERAPHINA)
    assert persona.name == "Seraphina" and personas.avatar("Seraphina")
    with pytest.raises(PersonaError, match="already exists"):
        personas.import_file(SERAPHINA)
    personas.import_file(SERAPHINA, replace=True)
    out = personas.export("Seraphina", tmp_path / "out.png")
    assert load_card(out).to_dict() == load_card(SERAPHINA).to_dict()
    assert out.stat().st_size > 500_000  # the real picture, not a generated one
    json_out = personas.export("诸葛亮", tmp_path / "zhuge.json")
    assert json.loads(json_out.read_text(encoding="utf-8"))["data"]["name"] == "诸葛亮"
    with pytest.raises(PersonaError, match=r"\.json or \.png"):
        personas.export("诸葛亮", tmp_path / "zhuge.txt")


def test_a_broken_user_file_does_not_hide_the_others(personas):
    personas.save(CharacterCard.new("ok"))
    (personas.directory / "broken.json").write_text("{", encoding="utf-8")
    assert "ok" in [p.name for p in personas.list()]
    assert personas.problems and "broken.json" in personas.problems[0]


# --- CLI -----------------------------------------------------------------------------


def test_cli_import_list_show_export_delete(tmp_path, capsys):
    home = ["--home", str(tmp_path / "home")]
    assert main([*home, "personas", "import", str(SERAPHINA)]) == 0
    assert main([*home, "personas", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [p["name"] for p in listing] == [*BUILTIN_NAMES, "Seraphina"]
    assert main([*home, "personas", "show", "诸葛亮"]) == 0
    assert "卧龙" in capsys.readouterr().out
    out = tmp_path / "s.png"
    assert main([*home, "personas", "export", "Seraphina", str(out)]) == 0
    assert load_card(out).data.name == "Seraphina"
    assert main([*home, "personas", "delete", "Seraphina"]) == 0
    capsys.readouterr()
    assert main([*home, "personas", "delete", "曹操"]) == 2
    assert main([*home, "personas", "show", "nobody"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    assert main([*home, "personas", "import", str(bad)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("cosplay: ") for line in errors)
    assert "bad.json" in errors[2] and "malformed JSON" in errors[2]


def test_cli_chat_rejects_an_unknown_persona(tmp_path, capsys):
    assert main(["--home", str(tmp_path), "chat", "--demo", "--persona", "nobody"]) == 2
    assert "nobody" in capsys.readouterr().err


# --- prompt assembly -----------------------------------------------------------------


def test_macros():
    text = "{{char}} meets {{user}}; <BOT> and <USER>; {{Char}} {{ user }}; {{original}}"
    assert (
        expand_macros(text, char="亮", user="玄德")
        == "亮 meets 玄德; 亮 and 玄德; 亮 玄德; {{original}}"
    )
    assert expand_macros("A {{original}} B", char="c", user="u", original="X") == "A X B"


def test_system_prompt_and_post_history_override_with_original():
    user = UserPersona("玄德", "A wandering lord.")
    card = CharacterCard.new(
        "诸葛亮",
        description="{{char}} advises {{user}}.",
        personality="calm",
        scenario="隆中",
        system_prompt="{{original}} Speak classically.",
        post_history_instructions="Stay as {{char}}. {{original}}",
        creator_notes="SECRET NOTES",
    )
    system = system_text(card, user=user, original="Play {{char}} for {{user}}.")
    assert system.startswith("Play 诸葛亮 for 玄德. Speak classically.")
    assert "诸葛亮 advises 玄德." in system and "诸葛亮's personality: calm" in system
    assert "Scenario: 隆中" in system and "About 玄德: A wandering lord." in system
    assert "SECRET" not in system
    assert post_history_text(card, user=user, original="Be brief.") == "Stay as 诸葛亮. Be brief."
    plain = CharacterCard.new("x")
    assert system_text(plain, user=UserPersona("u"), original="Default {{char}}.") == "Default x."
    assert post_history_text(plain, user=user, original="") == ""


def test_parse_examples():
    text = (
        "<START>\n{{user}}: 你好\n{{char}}: 幸会。\n第二行\n<start>\n<USER>：问\n<BOT>：答 {{user}}\n"
        "<START>\n玄德: 名字开头\n诸葛亮: 也可以"
    )
    blocks = parse_examples(text, char="诸葛亮", user="玄德")
    assert blocks == [
        [
            {"role": "user", "content": "你好", "name": "玄德"},
            {"role": "assistant", "content": "幸会。\n第二行", "name": "诸葛亮"},
        ],
        [
            {"role": "user", "content": "问", "name": "玄德"},
            {"role": "assistant", "content": "答 玄德", "name": "诸葛亮"},
        ],
        [
            {"role": "user", "content": "名字开头", "name": "玄德"},
            {"role": "assistant", "content": "也可以", "name": "诸葛亮"},
        ],
    ]
    assert parse_examples("", char="a", user="b") == []


def _card() -> CharacterCard:
    return card_from_dict(
        {
            "spec": "chara_card_v2",
            "data": {
                "name": "诸葛亮",
                "description": "卧龙先生。",
                "creator_notes": "NEVER-IN-PROMPT",
                "first_mes": "{{user}}，亮有礼了。",
                "alternate_greetings": ["先生请坐。", "", "<USER>来了。"],
                "mes_example": "<START>\n{{user}}: 例一问\n{{char}}: 例一答\n<START>\n{{user}}: 例二问\n{{char}}: 例二答",
                "post_history_instructions": "只以{{char}}的口吻回答。",
            },
        }
    )


def test_start_session_greeting_and_alternates_as_swipes(store):
    session = start_session(store, _card(), user=UserPersona("玄德"))
    branch = store.branch(session.id)
    assert [(m.role, m.name, m.content) for m in branch] == [
        (Role.ASSISTANT, "诸葛亮", "玄德，亮有礼了。")
    ]
    swipes = store.siblings(branch[0])
    assert [m.content for m in swipes] == ["玄德，亮有礼了。", "先生请坐。", "玄德来了。"]
    assert session.persona == "诸葛亮" and session.settings["user"]["name"] == "玄德"


def test_persona_prompt_order_and_contents(store, personas):
    session = start_session(store, _card(), user=UserPersona("玄德", "汉室宗亲"))
    store.add_message(session.id, Role.USER, "天下大势如何？", parent_id=session.leaf_id)
    engine = FakeEngine()
    plan = plan_prompt(
        store.get_session(session.id),
        store.branch(session.id),
        engine,
        GenerationParams(max_new_tokens=64),
        card=_card(),
    )
    messages = plan.messages
    assert messages[0]["role"] == "system" and "卧龙先生。" in messages[0]["content"]
    assert "About 玄德: 汉室宗亲" in messages[0]["content"]
    assert [m["content"] for m in messages[1:5]] == ["例一问", "例一答", "例二问", "例二答"]
    assert messages[5] == {"role": "assistant", "content": "玄德，亮有礼了。", "name": "诸葛亮"}
    assert messages[6] == {"role": "user", "content": "天下大势如何？", "name": "玄德"}
    assert messages[-1] == {"role": "system", "content": "只以诸葛亮的口吻回答。"}
    assert "NEVER-IN-PROMPT" not in json.dumps(messages, ensure_ascii=False)


def test_session_persona_is_read_from_the_store(store, personas):
    session = start_session(store, personas.get("武松").card)
    plan = plan_prompt(
        session, store.branch(session.id), FakeEngine(), GenerationParams(), personas=personas
    )
    assert "景阳冈" in plan.messages[0]["content"]
    missing = store.create_session(persona="nobody")
    plan = plan_prompt(missing, [], FakeEngine(), GenerationParams(), personas=personas)
    assert (
        plan.messages[0]["content"] == "You are a helpful assistant." and "nobody" in plan.notes[0]
    )


def test_examples_are_pruned_last_block_first_before_any_history(store):
    session = start_session(store, _card(), user=UserPersona("玄德"))
    leaf = session.leaf_id
    for index in range(3):
        user = store.add_message(session.id, Role.USER, f"问题{index}" * 3, parent_id=leaf)
        leaf = store.add_message(
            session.id, Role.ASSISTANT, f"回答{index}" * 3, parent_id=user.id, name="诸葛亮"
        ).id
    store.add_message(session.id, Role.USER, "最后一问", parent_id=leaf)
    session, branch = store.get_session(session.id), store.branch(session.id)
    params = GenerationParams(max_new_tokens=1)
    full = plan_prompt(session, branch, FakeEngine(context_length=100_000), params, card=_card())
    contents = [m["content"] for m in full.messages]
    sizes = {}
    for drop in range(3):  # the token cost of the prompt without the last `drop` example blocks
        engine = FakeEngine(context_length=100_000)
        trimmed = [
            m
            for m in full.messages
            if not any(f"例{n}" in m["content"] for n in "一二"[2 - drop :])
        ]
        sizes[drop] = engine.count_tokens(trimmed)
    plans = {
        drop: plan_prompt(
            session, branch, FakeEngine(context_length=sizes[drop] + 1), params, card=_card()
        )
        for drop in range(3)
    }
    assert (plans[0].dropped_examples, plans[0].dropped_rounds) == (0, 0)
    assert plans[1].dropped_examples == 1 and plans[1].dropped_rounds == 0
    assert "例一问" in str(plans[1].messages) and "例二问" not in str(plans[1].messages)
    assert plans[2].dropped_examples == 2 and plans[2].dropped_rounds == 0
    assert [m["content"] for m in plans[2].messages if m["role"] != "system"] == contents[5:-1]
    tighter = plan_prompt(
        session, branch, FakeEngine(context_length=sizes[2] - 1), params, card=_card()
    )
    assert tighter.dropped_examples == 2 and tighter.dropped_rounds > 0
