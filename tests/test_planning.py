"""Planning a turn reads the branch back only as far as the context window reaches: per-message
token counts (saved under the tokenizer's key, counted once) choose the cut, one exact count
checks it. A 2,000-message chat costs what a 200-message one costs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import pytest

from engines.base import ChatMessage, GenerationParams
from engines.fake import FakeEngine
from sessions.cards import CharacterCard, card_from_dict
from sessions.context import BLOCK_MESSAGES
from sessions.conversation import Conversation, Turn
from sessions.group import ReplyOrder, plan_turn, start_session
from sessions.models import Role
from sessions.prompt import DEFAULT_SYSTEM, StoredBranch, plan_prompt, tokenizer_key
from sessions.turns import history_messages
from sessions.workspace import Workspace

PARAMS = GenerationParams(max_new_tokens=200)


class CountingEngine(FakeEngine):
    """A FakeEngine that records what it was asked to count."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.counted: list[list[ChatMessage]] = []

    def count_tokens(self, messages):
        self.counted.append([dict(m) for m in messages])
        return super().count_tokens(messages)

    def take(self) -> tuple[int, int]:
        """(messages, characters) passed to count_tokens since the last take."""
        calls, self.counted = self.counted, []
        return sum(len(c) for c in calls), sum(len(m["content"]) for c in calls for m in c)


@pytest.fixture
def workspace(tmp_path):
    with Workspace(tmp_path / "home") as workspace:
        yield workspace


def line(depth: int) -> str:
    """A message's text: the same shape at every depth (the window's cost does not grow)."""
    return f"第{depth:05d}句：曹操问刘备天下英雄 and the river runs east"


def fill(workspace: Workspace, count: int, session_id: int | None = None) -> tuple[int, int]:
    """A plain chat of `count` messages, user first, ending with the user's: (session, leaf)."""
    session_id = session_id or workspace.new_session().id
    parent = None
    for depth in range(count):
        role = Role.USER if depth % 2 == 0 else Role.ASSISTANT
        parent = workspace.store.add_message(session_id, role, line(depth), parent_id=parent).id
    return session_id, parent


def kept_from(plan, history: list[ChatMessage]) -> int:
    """Where the plan's history starts in `history` (the plan: system + a suffix of it)."""
    body = plan.messages[1:]
    start = len(history) - len(body)
    assert body == history[start:]
    return start


def exhaustive_cut(history: list[ChatMessage], engine, budget: int) -> int:
    """The old planner's answer before block rounding: the earliest user message from which
    the whole history fits, found by counting the whole prompt (binary search)."""
    starts = [i for i, m in enumerate(history) if m["role"] == "user"]
    system = [{"role": "system", "content": DEFAULT_SYSTEM}]
    low, high = 0, len(starts) - 1
    while low < high:
        middle = (low + high) // 2
        if engine.count_tokens(system + history[starts[middle] :]) <= budget:
            high = middle
        else:
            low = middle + 1
    return starts[low]


def test_a_long_chat_is_planned_from_a_bounded_window(workspace):
    costs = {}
    for count in (200, 2_000):
        session_id, leaf = fill(workspace, count + 1)
        engine = CountingEngine(context_length=2048)
        plan = Conversation(workspace, engine, session_id).plan(Turn(leaf), PARAMS)
        costs[count] = engine.take()
        assert plan.prompt_tokens == engine.count_tokens(plan.messages) <= 2048 - 200
        history = history_messages(workspace.store.branch(session_id))
        cut = kept_from(plan, history)
        reference = exhaustive_cut(history, FakeEngine(context_length=2048), 2048 - 200)
        # The same messages as counting everything would keep, up to one drop block.
        assert reference <= cut <= reference + BLOCK_MESSAGES + 1
        assert plan.dropped_messages == cut and plan.dropped_rounds is None
        assert f"{cut} earlier message(s) left out" in plan.summary
    # What was counted does not depend on the length of the chat, and is about the window.
    assert costs[200] == costs[2_000]
    messages, characters = costs[2_000]
    assert messages < 4 * len(plan.messages) + 80
    assert characters < 3 * sum(len(m["content"]) for m in plan.messages)


def test_counts_are_saved_and_only_new_messages_are_counted_on_the_next_turn(workspace):
    session_id, leaf = fill(workspace, 801)
    engine = CountingEngine(context_length=2048)
    conversation = Conversation(workspace, engine, session_id)
    store, key = workspace.store, tokenizer_key(engine)
    first = conversation.plan(Turn(leaf), PARAMS)
    window = store.branch_tail(session_id, limit=200)
    counted = set(store.token_counts([m.id for m in window], key))
    assert 20 < len(counted) < 120  # the window and a little more, not the chat
    assert first.dropped_messages > 600

    engine.take()
    again = conversation.plan(Turn(leaf), PARAMS)
    assert again.messages == first.messages
    calls, _ = engine.take()
    assert calls <= 2 * len(first.messages) + 4  # the exact counts only: nothing re-estimated

    reply = store.add_message(session_id, Role.ASSISTANT, "新的回答", parent_id=leaf)
    question = store.add_message(session_id, Role.USER, "新的问题", parent_id=reply.id)
    estimates_before = len(store.token_counts([m.id for m in window], key))
    conversation.plan(Turn(question.id), PARAMS)
    new = {reply.id, question.id}
    assert set(store.token_counts(list(new), key)) == new
    assert len(store.token_counts([m.id for m in window], key)) == estimates_before
    # Estimating a message is one count with it; the only messages estimated are the new ones.
    estimated = [call[-1]["content"] for call in engine.counted if call[0]["content"] == "."]
    assert sorted(c for c in estimated if c != ".") == ["新的回答", "新的问题"]

    # An edited message is counted again (its old count is gone with its old text).
    store.update_message(question.id, content="改过的问题")
    assert store.token_counts([question.id], key) == {}
    conversation.plan(Turn(question.id), PARAMS)
    assert question.id in store.token_counts([question.id], key)


def test_another_model_or_template_counts_again_an_adapter_does_not(workspace):
    session_id, leaf = fill(workspace, 301)
    store = workspace.store
    chatml = CountingEngine(context_length=1024)
    Conversation(workspace, chatml, session_id).plan(Turn(leaf), PARAMS)
    ids = [m.id for m in store.branch_tail(session_id, limit=100)]
    chatml_counts = store.token_counts(ids, tokenizer_key(chatml))

    chatml.set_adapter("lora")
    assert tokenizer_key(chatml) == tokenizer_key(CountingEngine())
    vicuna = CountingEngine(context_length=1024, template="vicuna")
    assert tokenizer_key(vicuna) != tokenizer_key(chatml)
    plan = Conversation(workspace, vicuna, session_id).plan(Turn(leaf), PARAMS)
    assert plan.prompt_tokens == vicuna.count_tokens(plan.messages)
    vicuna_counts = store.token_counts(ids, tokenizer_key(vicuna))
    assert len(vicuna_counts) >= len(plan.messages) - 1  # counted afresh for this template
    assert store.token_counts(ids, tokenizer_key(chatml)) == chatml_counts  # kept for a switch back


def test_the_cut_stays_put_for_several_turns_and_moves_by_blocks(workspace):
    session_id, leaf = fill(workspace, 401)
    engine = FakeEngine(context_length=1024)
    conversation = Conversation(workspace, engine, session_id)
    store, firsts = workspace.store, []
    for turn in range(12):
        plan = conversation.plan(Turn(leaf), PARAMS)
        assert plan.prompt_tokens == engine.count_tokens(plan.messages) <= 1024 - 200
        firsts.append(plan.messages[1]["content"])
        reply = store.add_message(session_id, Role.ASSISTANT, line(401 + 2 * turn), parent_id=leaf)
        leaf = store.add_message(session_id, Role.USER, line(402 + 2 * turn), parent_id=reply.id).id
    changes = sum(1 for a, b in zip(firsts, firsts[1:], strict=False) if a != b)
    assert 1 <= changes <= 12 // DROP_TURNS + 1
    # The first kept message always starts a depth block: the cut is the same in any window.
    depths = [int(first[1:6]) for first in firsts]
    assert all(depth % BLOCK_MESSAGES == 0 for depth in depths)


DROP_TURNS = BLOCK_MESSAGES // 2  # a turn adds a message and its reply


def test_max_history_rounds_in_a_long_chat(workspace):
    session_id, leaf = fill(workspace, 1001)
    workspace.store.update_session(session_id, settings={"max_history_rounds": 3})
    engine = CountingEngine(context_length=4096)
    plan = Conversation(workspace, engine, session_id).plan(Turn(leaf), PARAMS)
    assert [m["content"] for m in plan.messages[1:]] == [line(d) for d in range(994, 1001)]
    assert plan.dropped_messages == 994 and plan.dropped_rounds is None
    messages, _ = engine.take()
    assert messages < 200


def test_a_history_that_all_fits_is_read_to_the_root_and_reports_rounds(workspace):
    session_id, leaf = fill(workspace, 9)
    workspace.store.update_session(session_id, settings={"max_history_rounds": 2})
    plan = Conversation(workspace, FakeEngine(), session_id).plan(Turn(leaf), PARAMS)
    assert [m["content"] for m in plan.messages[1:]] == [line(d) for d in range(4, 9)]
    assert plan.dropped_rounds == 2 and plan.dropped_messages == 4
    assert plan.summary == "2 earlier round(s) left out"


def _card(**data) -> CharacterCard:
    return card_from_dict({"spec": "chara_card_v2", "data": {"name": "诸葛亮", **data}})


def test_lorebook_and_persona_prompt_with_a_window(workspace):
    book = {
        "scan_depth": 2,
        "entries": [
            {"keys": ["赤壁"], "content": "LORE-RED-CLIFFS", "enabled": True, "insertion_order": 0},
            {"keys": ["官渡"], "content": "LORE-GUANDU", "enabled": True, "insertion_order": 1},
        ],
    }
    card = _card(
        description="卧龙先生。",
        character_book=book,
        mes_example="<START>\n{{user}}: 问\n{{char}}: 答",
    )
    session = start_session(workspace.store, card)
    store, parent = workspace.store, session.leaf_id
    for depth in range(1, 600):
        role = Role.USER if depth % 2 else Role.ASSISTANT
        text = "官渡之战" if depth == 3 else line(depth)
        parent = store.add_message(
            session.id, role, text, parent_id=parent, name="" if depth % 2 else "诸葛亮"
        ).id
    leaf = store.add_message(session.id, Role.USER, "说说赤壁", parent_id=parent).id
    engine = CountingEngine(context_length=2048)
    plan = plan_prompt(
        store.get_session(session.id), StoredBranch(store, session.id, leaf), engine, PARAMS,
        card=card,
    )  # fmt: skip
    # the entry (no position given) goes 4 messages from the end; 官渡 is far back
    assert plan.messages[-5] == {"role": "system", "content": "LORE-RED-CLIFFS"}
    assert "LORE-GUANDU" not in str(plan.messages) and plan.lore == ["赤壁"]
    assert plan.dropped_examples == 1 and plan.dropped_messages > 500
    assert plan.messages[-1] == {"role": "user", "content": "说说赤壁", "name": "User"}
    assert plan.prompt_tokens == engine.count_tokens(plan.messages)
    messages, _ = engine.take()
    assert messages < 6 * len(plan.messages)  # the window, estimated once and counted once


def test_conversation_plan_is_the_first_reply_of_the_turn_and_saves_no_message(workspace):
    personas = workspace.personas
    names = [p.name for p in personas.list()][:2]
    session = start_session(
        workspace.store, [personas.get(n).card for n in names], order=ReplyOrder.ROUND_ROBIN
    )
    engine = FakeEngine(["甲", "乙"], context_length=2048)
    conversation = Conversation(workspace, engine, session.id)
    user = conversation.say("诸位请讲")
    turn = conversation.turn_after(user)
    assert turn.speakers == tuple(names)
    before = len(workspace.store.all_messages(session.id))
    plan = conversation.plan(turn, PARAMS)
    assert len(workspace.store.all_messages(session.id)) == before
    assert f"Write only {names[0]}'s next reply" in plan.messages[0]["content"]
    expected = plan_turn(workspace.store, session.id, engine, PARAMS, personas, names[0]).plan
    assert plan.messages == expected.messages
    # The reply sends what plan() showed.
    conversation.reply(turn, PARAMS, threading.Event())
    assert engine.prompts[0] == plan.messages


REAL_PLAN = textwrap.dedent(
    """
    import json, sys
    from engines.base import GenerationParams
    from engines.llamacpp import LlamaCppEngine
    from sessions.conversation import Conversation, Turn
    from sessions.models import Role
    from sessions.workspace import Workspace

    engine = LlamaCppEngine(sys.argv[1], n_ctx=2048, n_threads=2)
    lines = ["曹操何如人也？请说说他在官渡之战中的谋略。", "亮夜观天象，见东南风起，此天助也。",
             "The river runs east; 滚滚长江东逝水，浪花淘尽英雄。", "Why did Liu Bei cry so often?"]
    results = []
    with Workspace(sys.argv[2]) as workspace:
        session_id, parent = workspace.new_session().id, None
        for depth in range(301):
            role = Role.USER if depth % 2 == 0 else Role.ASSISTANT
            parent = workspace.store.add_message(
                session_id, role, f"{depth}. " + lines[depth % 4] * 2, parent_id=parent
            ).id
        conversation = Conversation(workspace, engine, session_id)
        params = GenerationParams(max_new_tokens=256)
        for turn in range(3):
            plan = conversation.plan(Turn(parent), params)
            results.append({"planned": plan.prompt_tokens,
                            "exact": engine.count_tokens(plan.messages),
                            "kept": len(plan.messages), "dropped": plan.dropped_messages})
            reply = workspace.store.add_message(session_id, Role.ASSISTANT, "是。" * 40,
                                                parent_id=parent)
            parent = workspace.store.add_message(session_id, Role.USER, "再说说赤壁之战。",
                                                 parent_id=reply.id).id
    print(json.dumps(results))
    """
)


@pytest.mark.slow
def test_real_smollm2_planned_tokens_are_the_engines_exact_count(tmp_path):
    from tests.real_model import shipped_gguf

    done = subprocess.run(
        [sys.executable, "-c", REAL_PLAN, str(shipped_gguf()), str(tmp_path / "home")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for result in results:
        assert result["planned"] == result["exact"] <= 2048 - 256
        assert result["dropped"] > 200 and result["kept"] > 10


@pytest.mark.parametrize("damaged", ["3", -1, True, 2.5])
def test_a_damaged_max_history_rounds_means_no_limit(workspace, damaged):
    session_id, leaf = fill(workspace, 9)
    workspace.store.update_session(session_id, settings={"max_history_rounds": damaged})
    plan = Conversation(workspace, FakeEngine(), session_id).plan(Turn(leaf), PARAMS)
    assert len(plan.messages) == 10 and plan.dropped_rounds == 0


def test_a_parent_id_cycle_in_a_damaged_database_ends_the_window(workspace):
    import sqlite3

    session_id, leaf = fill(workspace, 200)
    root = workspace.store.branch_tail(session_id, limit=200)[0]
    path = workspace.store.path
    db = sqlite3.connect(path)
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("UPDATE messages SET parent_id = ? WHERE id = ?", (leaf, root.id))
    db.commit()
    db.close()
    engine = FakeEngine(context_length=100_000)
    plan = Conversation(workspace, engine, session_id).plan(Turn(leaf), PARAMS)
    contents = [m["content"] for m in plan.messages[1:]]
    assert len(contents) == len(set(contents)) <= 200  # each message once, no endless loop
