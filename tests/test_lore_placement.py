"""Where fired lore, the Author's Note and the memory go in a planned prompt, what the prompt
inspector says of them, attached lorebooks, and — on the real SmolLM2 GGUF — that a turn in which
a new at-depth entry fires re-reads only the tokens after it, where lore spliced into the system
text re-reads the whole prompt."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from engines.base import GenerationParams
from engines.fake import FakeEngine
from sessions.cards import card_from_dict, load_card
from sessions.conversation import Conversation
from sessions.inspector import inspect, report
from sessions.lorebook_files import lorebook_folder
from sessions.models import Role
from sessions.prompt import StoredBranch, plan_prompt
from sessions.workspace import Workspace
from tests.real_model import shipped_gguf

PARAMS = GenerationParams(max_new_tokens=64)


def book(*entries):
    return {"entries": list(entries)}


def entry(keys, content, **ext):
    return {"keys": keys, "content": content, "enabled": True, "insertion_order": 100,
            "comment": content.lower(), "extensions": ext}  # fmt: skip


def chat(workspace: Workspace, card: dict | None, rounds: int, settings=None, last="你好"):
    """A session (with `card` as its persona) of `rounds` rounds ending with the user's `last`."""
    persona = ""
    if card is not None:
        workspace.personas.create(card_from_dict(card))
        persona = card["data"]["name"]
    session = workspace.store.create_session(persona=persona, settings=settings or {})
    parent = None
    for i in range(rounds):
        parent = workspace.store.add_message(session.id, Role.USER, f"问{i}", parent_id=parent).id
        parent = workspace.store.add_message(
            session.id, Role.ASSISTANT, f"答{i}", parent_id=parent
        ).id
    workspace.store.add_message(session.id, Role.USER, last, parent_id=parent)
    return workspace.store.get_session(session.id)


def plan_of(workspace: Workspace, session, engine=None):
    engine = engine or FakeEngine([], context_length=4096)
    branch = StoredBranch(workspace.store, session.id)
    return plan_prompt(session, branch, engine, PARAMS, personas=workspace.personas)


def card(entries, **data):
    return {"spec": "chara_card_v2",
            "data": {"name": "卧龙", "description": "DESC", "character_book": book(*entries),
                     **data}}  # fmt: skip


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path / "home")
    yield ws
    ws.close()


def contents(plan):
    return [m["content"] for m in plan.messages]


def test_at_depth_lore_goes_n_messages_from_the_end_with_its_role(workspace):
    lore = entry(["赤壁"], "LORE", position=4, depth=2, role=1)
    session = chat(workspace, card([lore]), 4, last="赤壁如何")
    plan = plan_of(workspace, session)
    assert contents(plan)[-3:] == ["LORE", "答3", "赤壁如何"]
    assert plan.messages[-3]["role"] == "user" and plan.lore == ["lore"]
    assert "LORE" not in plan.messages[0]["content"]  # the system text did not change
    names = [name for name, _ in plan.parts]
    assert names == ["system", "history", "injection", "history", "input"]
    assert ("lore: lore", "at depth 2 as user") in plan.placed


def test_depth_zero_goes_after_the_message_answered_and_deeper_than_the_chat_goes_above_it(
    workspace,
):
    lore = [entry(["赤壁"], "LAST", position=4, depth=0), entry(["赤壁"], "TOP", depth=99)]
    session = chat(workspace, card(lore), 1, last="赤壁")
    plan = plan_of(workspace, session)
    assert contents(plan)[1] == "TOP" and contents(plan)[-1] == "LAST"
    assert ("lore: top", "at depth 99 as system (above all history)") in plan.placed


def test_card_placement_puts_before_and_after_char_lore_in_the_system_text(workspace):
    lore = [entry(["赤壁"], "BEFORE", position=0), entry(["赤壁"], "AFTER", position=1)]
    settings = {"lore_placement": "card"}
    session = chat(workspace, card(lore, scenario="SCEN"), 1, settings, last="赤壁")
    plan = plan_of(workspace, session)
    system = plan.messages[0]["content"]
    assert system.index("BEFORE") < system.index("DESC") < system.index("SCEN")
    assert system.index("SCEN") < system.index("AFTER")
    assert ("lore: before", "system text, before the character") in plan.placed


def test_cache_placement_moves_them_to_depth_4_and_the_inspector_says_so(workspace):
    lore = [entry(["赤壁"], "BEFORE", position=0), entry(["赤壁"], "AFTER", position=1),
            entry(["赤壁"], "EXAMPLES", position=5)]  # fmt: skip
    session = chat(workspace, card(lore, scenario="SCEN"), 3, last="赤壁")  # the default
    plan = plan_of(workspace, session)
    texts = contents(plan)
    assert not any(word in texts[0] for word in ("BEFORE", "AFTER", "EXAMPLES"))
    # one system message 4 messages from the end, in prompt order (equal insertion orders: the
    # later entry first)
    assert texts[-5] == "EXAMPLES\nAFTER\nBEFORE" and plan.messages[-5]["role"] == "system"
    engine = FakeEngine([], context_length=4096)
    text = report(inspect(plan, engine, 64), engine)
    assert (
        "lore: examples (moved from around the example dialogues, for the cache) + lore: after "
        "(moved from after the character, for the cache) + lore: before (moved from before the "
        "character, for the cache) → at depth 4 as system"
    ) in text


def test_the_config_sets_the_placement_and_a_chat_overrides_it(workspace):
    workspace.paths.config.write_text('[lore]\nplacement = "card"\n', "utf-8")
    lore = [entry(["赤壁"], "BEFORE", position=0)]
    session = chat(workspace, card(lore), 1, last="赤壁")
    engine = FakeEngine([], context_length=4096)
    conversation = Conversation(workspace, engine, session.id)
    assert "BEFORE" in conversation.preview("", PARAMS).messages[0]["content"]
    workspace.store.update_session(session.id, settings={"lore_placement": "cache"})
    assert "BEFORE" not in conversation.preview("", PARAMS).messages[0]["content"]
    workspace.store.update_session(session.id, settings={"lore_placement": 7})  # the config's
    assert "BEFORE" in conversation.preview("", PARAMS).messages[0]["content"]


def test_the_authors_note_memory_and_lore_at_the_same_depth(workspace):
    settings = {
        "author_note": {"text": "NOTE for {{char}}", "interval": 1, "depth": 2,
                        "position": "in_chat", "role": "system"},
        "memory": {"enabled": True, "text": "SUMMARY", "through": 3},
    }  # fmt: skip
    lore = [entry(["赤壁"], "LORE", position=4, depth=2), entry(["赤壁"], "TOP", position=2),
            entry(["赤壁"], "BOTTOM", position=3)]  # fmt: skip
    session = chat(workspace, card(lore), 3, settings, last="赤壁")
    plan = plan_of(workspace, session)
    texts = contents(plan)
    # memory right after the system text (no examples), before the first history message
    assert texts[1] == "SUMMARY" and texts[2] == "问0"
    # one message at depth 2: the note with the lore around it, then the at-depth lore
    assert texts[-3] == "TOP\nNOTE for 卧龙\nBOTTOM\nLORE"
    assert [name for name, _ in plan.parts][:3] == ["system", "memory", "history"]
    engine = FakeEngine([], context_length=4096)
    text = report(inspect(plan, engine, 64), engine)
    assert "memory (summary)" in text and "at depth (lore, note)" in text
    assert "lore: top + author's note + lore: bottom + lore: lore → at depth 2 as system" in text


def test_the_note_comes_every_n_user_turns_and_its_lore_only_with_it(workspace):
    settings = {"author_note": {"text": "NOTE", "interval": 3}}
    lore = [entry(["赤壁"], "TOP", position=2)]
    # 3 user turns (2 rounds + this one): due; 4: not due, and the note's lore goes nowhere
    due = plan_of(workspace, chat(workspace, card(lore), 2, settings, last="赤壁"))
    assert "TOP\nNOTE" in contents(due)
    later = plan_of(workspace, chat(workspace, None, 3, settings, last="赤壁"))
    assert not any("NOTE" in text for text in contents(later))
    never = {"author_note": {"text": "NOTE", "interval": 0}}
    assert "NOTE" not in contents(plan_of(workspace, chat(workspace, None, 0, never)))


@pytest.mark.parametrize(("position", "first"), [("before_prompt", True), ("in_prompt", False)])
def test_the_note_in_the_system_text(workspace, position, first):
    settings = {"author_note": {"text": "NOTE", "position": position}}
    system = contents(plan_of(workspace, chat(workspace, None, 1, settings)))[0]
    assert system.startswith("NOTE") is first and system.endswith("NOTE") is not first


def test_damaged_settings_fall_back_and_never_stop_a_turn(workspace):
    settings = {"author_note": {"text": 5, "depth": "deep", "role": "god", "interval": -1},
                "memory": "yes", "lorebooks": "三国"}  # fmt: skip
    plan = plan_of(workspace, chat(workspace, None, 1, settings))
    assert contents(plan)[-1] == "你好" and plan.lore == []


def test_attached_lorebooks_session_then_card_and_a_missing_one_is_a_note(workspace, tmp_path):
    folder = lorebook_folder(workspace.store.path.parent)
    source = tmp_path / "三国.json"
    source.write_text(json.dumps({"entries": {"0": {"uid": 0, "key": ["赤壁"],
                      "content": "SESSION-BOOK", "order": 1, "position": 4, "depth": 0}}},
                      ensure_ascii=False), "utf-8")  # fmt: skip
    folder.import_file(source)
    shutil.copy("tests/data/Seraphina.png", tmp_path / "eldoria.png")
    folder.import_file(tmp_path / "eldoria.png", "Eldoria")
    persona = card([])
    persona["data"]["extensions"] = {"cosplay": {"lorebooks": ["Eldoria"]}}
    settings = {"lorebooks": ["三国", "gone"]}
    session = chat(workspace, persona, 1, settings, last="赤壁 and the forest")
    plan = plan_of(workspace, session)
    assert contents(plan)[-1] == "SESSION-BOOK"
    # the card's book (before the character): moved next to the history, here above it all
    assert "Eldoria" not in contents(plan)[0] and "Eldoria" in contents(plan)[1]
    assert plan.lore == ["赤壁", "eldoria、wood、forest、magical forest"]  # (no comments)
    assert any("lorebook 'gone' left out" in note for note in plan.notes)


@pytest.mark.timeout(10)
def test_a_book_whose_regex_keys_run_out_of_time_is_named_in_a_note(workspace):
    hostile = [entry(["/(a|aa)+$b/"], f"H{i}") for i in range(40)]
    session = chat(workspace, card([*hostile, entry(["赤壁"], "FINE", position=4)]), 1,
                   last="a" * 40 + "! 赤壁")  # fmt: skip
    plan = plan_of(workspace, session)
    assert plan.lore == ["fine"] and "FINE" in contents(plan)
    assert "regex keys of lorebook '卧龙' took too long; skipped" in plan.notes


def seraphina_plan(workspace, settings):
    seraphina = load_card("tests/data/Seraphina.png")
    workspace.personas.create(seraphina)
    session = workspace.store.create_session(persona=seraphina.name, settings=settings)
    parent = None
    for i in range(6):
        role, text = (Role.USER, f"Hello {i}.") if i % 2 == 0 else (Role.ASSISTANT, f"Hi {i}.")
        parent = workspace.store.add_message(session.id, role, text, parent_id=parent).id
    question = "What are these beasts in the woods?"
    workspace.store.add_message(session.id, Role.USER, question, parent_id=parent)
    plan = plan_of(workspace, workspace.store.get_session(session.id))
    # equal insertion orders: SillyTavern's prompt has the later entry first
    assert plan.lore == ["shadowfang、beast、monster、monsters、beasts",
                         "eldoria、wood、forest、magical forest"]  # fmt: skip
    return seraphina, plan


def test_seraphina_plays_her_lorebook_as_sillytavern_does_with_card_placement(workspace):
    seraphina, plan = seraphina_plan(workspace, {"lore_placement": "card"})
    system = plan.messages[0]["content"]
    # before the character, macros filled; the power entry (not mentioned) is not there
    assert system.index('User: "What is Eldoria?"') < system.index(seraphina.data.description[:30])
    assert "What are your powers?" not in system


def test_seraphinas_lorebook_leaves_her_system_text_alone_with_cache_placement(workspace):
    seraphina, plan = seraphina_plan(workspace, {})
    texts = contents(plan)
    assert 'User: "What is Eldoria?"' not in texts[0] and "Shadowfang" not in texts[0]
    assert seraphina.data.description[:30] in texts[0]
    # SillyTavern's position 0 on both: one system message, 4 messages from the end
    assert plan.messages[-5]["role"] == "system"
    assert texts[-5].index("Shadowfang") < texts[-5].index('User: "What is Eldoria?"')
    assert "What are your powers?" not in "".join(texts)


def test_a_regenerate_fires_the_same_probable_lore(workspace):
    lore = [entry(["赤壁"], f"P{i}", position=4, probability=50, useProbability=True)
            for i in range(30)]  # fmt: skip
    session = chat(workspace, card(lore), 2, last="赤壁")
    engine = FakeEngine([], context_length=8192)
    conversation = Conversation(workspace, engine, session.id)
    first = conversation.preview("", PARAMS).lore
    assert first == conversation.preview("", PARAMS).lore and 3 < len(first) < 27


CACHE = textwrap.dedent(
    """
    import json, sys, threading
    from engines.base import GenerationParams
    from engines.llamacpp import LlamaCppEngine
    from sessions.cards import card_from_dict
    from sessions.models import Role
    from sessions.prompt import StoredBranch, plan_prompt
    from sessions.workspace import Workspace

    engine = LlamaCppEngine(sys.argv[1], n_ctx=2048, n_threads=2)
    params = GenerationParams(max_new_tokens=8, seed=1, temperature=0.0)
    result = {}
    for position, placement in ((4, "cache"), (0, "cache"), (0, "card")):
        workspace = Workspace(sys.argv[2] + str(position) + placement)
        workspace.personas.create(card_from_dict({"spec": "chara_card_v2", "data": {
            "name": "Kongming", "description": "A strategist of the Three Kingdoms. " * 20,
            "character_book": {"entries": [{"keys": ["Red Cliffs"], "enabled": True,
                "insertion_order": 1, "content": "The fire attack at the Red Cliffs won.",
                "extensions": {"position": position, "depth": 2}}]}}}))
        session = workspace.store.create_session(
            persona="Kongming", settings={"lore_placement": placement})
        parent = None
        for i in range(12):
            role = Role.USER if i % 2 == 0 else Role.ASSISTANT
            text = f"Line {i}: the north is strong and the south is wet this year."
            parent = workspace.store.add_message(session.id, role, text, parent_id=parent).id
        turns = []
        for question in ("Where shall we go?", "Tell me of the Red Cliffs."):
            parent = workspace.store.add_message(
                session.id, Role.USER, question, parent_id=parent).id
            session = workspace.store.get_session(session.id)
            plan = plan_prompt(session, StoredBranch(workspace.store, session.id), engine,
                               params, personas=workspace.personas)
            reply = "".join(engine.stream_chat(plan.messages, params, threading.Event()))
            stats = engine.last_stats
            where = [i for i, m in enumerate(plan.messages) if "fire attack" in m["content"]]
            before = engine.count_tokens(plan.messages[: where[0]]) if where else None
            turns.append({"lore": plan.lore, "prompt": stats.prompt_tokens,
                          "evaluated": stats.prompt_eval_tokens, "before_lore": before,
                          "at": where})
            parent = workspace.store.add_message(
                session.id, Role.ASSISTANT, reply, parent_id=parent).id
        result[f"{position} {placement}"] = turns
    print(json.dumps(result))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_on_the_real_model_new_lore_rereads_only_what_follows_it_unless_placed_as_the_card_says(
    tmp_path,
):
    done = subprocess.run(
        [sys.executable, "-c", CACHE, str(shipped_gguf()), str(tmp_path / "home")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result))  # the numbers, for the record (pytest -s)
    # an at-depth entry, and a "before the character" one moved to depth 4 for the cache: the
    # prompt up to the entry was in the cache, only the entry and what follows is read (give
    # or take a few: the count of the messages before the entry ends with the reply's opening,
    # `<|im_start|>assistant`, which is not there in the prompt)
    for case in ("4 cache", "0 cache"):
        first, second = result[case]
        assert first["lore"] == [] and second["lore"] == ["Red Cliffs"], case
        assert second["at"] and second["at"][0] > 0, case  # not in the system text
        after = second["prompt"] - second["before_lore"]
        assert after - 8 <= second["evaluated"] <= after + 8, (case, second)
        assert second["evaluated"] < second["prompt"] // 4, (case, second)
    # the same entry spliced into the system text (position 0 with "card" placement, as
    # SillyTavern does) changes the prompt at its start: nearly all is read again
    spliced, moved = result["0 card"][1], result["0 cache"][1]
    assert spliced["lore"] == ["Red Cliffs"] and spliced["at"] == [0]
    assert spliced["evaluated"] > 0.8 * spliced["prompt"], spliced
    assert spliced["evaluated"] > 5 * moved["evaluated"]
