"""Memory of dropped turns (sessions/memory.py) and the session's note settings
(sessions/notes.py), on the scripted engine; the KV-cache claim on the real SmolLM2."""

from __future__ import annotations

import threading

import pytest

from engines.base import GenerationParams
from engines.fake import FakeEngine
from sessions import memory as mem
from sessions.conversation import Conversation
from sessions.models import HIDDEN, Role
from sessions.notes import AuthorNote, Memory
from sessions.store import LEAF
from sessions.workspace import Workspace


@pytest.fixture
def workspace(tmp_path):
    with Workspace(tmp_path / "home") as workspace:
        yield workspace


def chat(workspace, engine, rounds, *, text="第{i}回合，诸葛亮借东风。", reply="亮曰：东风已至。"):
    """A session of `rounds` user/assistant rounds written straight into the store."""
    session = workspace.new_session()
    store = workspace.store
    for i in range(rounds):
        store.add_message(session.id, Role.USER, text.format(i=i), parent_id=LEAF)
        store.add_message(session.id, Role.ASSISTANT, reply.format(i=i), parent_id=LEAF)
    return Conversation(workspace, engine, session.id)


def set_memory(conversation, **values):
    store = conversation.store
    settings = dict(conversation.session.settings)
    settings["memory"] = Memory.from_value({**Memory().to_value(), **values}).to_value()
    store.update_session(conversation.session_id, settings=settings)


def next_plan(conversation):
    return conversation.preview("", GenerationParams(max_new_tokens=32))


# --- the settings ------------------------------------------------------------------------------


def test_a_damaged_author_note_or_memory_falls_back_to_defaults():
    assert AuthorNote.from_value(None) == AuthorNote()
    hostile = {"text": 5, "interval": -3, "depth": True, "position": "top", "role": "god"}
    assert AuthorNote.from_value(hostile) == AuthorNote()
    assert AuthorNote.from_value({"text": "[b]x", "interval": "2", "depth": 0.0}) == AuthorNote(
        "[b]x", 2, 0
    )
    assert Memory.from_value({"enabled": "yes", "through": "7", "text": None}) == Memory()
    assert Memory.from_value({"enabled": True, "through": 9, "through_id": 3}).through == 9


def test_sillytavern_note_numbers_map_both_ways():
    st = {"note_prompt": "天色已晚", "note_interval": 3, "note_depth": 2, "note_position": 2}
    note = AuthorNote.from_st({**st, "note_role": 1})
    assert note == AuthorNote("天色已晚", 3, 2, "before_prompt", "user")
    assert note.to_st() == {**st, "note_role": 1}
    assert AuthorNote.from_st({"note_position": 0}).position == "in_prompt"
    assert AuthorNote.from_st({"tainted": True}) is None
    assert AuthorNote.from_st({"note_role": 9, "note_depth": "deep"}) == AuthorNote()


# --- when a summary is due, and what it reads -----------------------------------------------------


def test_due_only_when_on_and_the_window_left_out_uncovered_messages(workspace):
    conversation = chat(workspace, FakeEngine(context_length=256), 30)
    plan = next_plan(conversation)
    assert plan.dropped_messages > 8  # the window holds only the end of the chat
    assert not mem.is_due(conversation.session.settings, plan)  # off by default
    set_memory(conversation, enabled=True)
    assert mem.is_due(conversation.session.settings, plan)
    set_memory(conversation, enabled=True, through=plan.dropped_messages - 1)
    assert not mem.is_due(conversation.session.settings, plan)
    short = chat(workspace, FakeEngine(context_length=4096), 3)
    set_memory(short, enabled=True)
    assert not mem.is_due(short.session.settings, next_plan(short))


def tag(depth: int, user: str, reply: str) -> str:
    """The text that marks the message at `depth` in a chat made by `chat`."""
    return f"{user if depth % 2 == 0 else reply}{depth // 2}："


def test_passes_summarize_only_the_new_dropped_messages_and_save_through(workspace):
    engine = FakeEngine([f"第{n}段摘要。" for n in range(1, 9)], context_length=1024)
    conversation = chat(workspace, engine, 80, text="问{i}：如何破曹？", reply="答{i}：火攻。")
    anchor = workspace.store.branch(conversation.session_id)[3]
    set_memory(
        conversation, enabled=True, text="此前：孙刘联盟已成。", through=3, through_id=anchor.id
    )
    plan = next_plan(conversation)
    result = mem.update_memory(conversation, plan, threading.Event())
    assert result.passes == len(engine.prompts) >= 1 and not result.cancelled
    first = engine.prompts[0]
    assert first[0]["role"] == "system" and "前情提要" in first[0]["content"]  # a Chinese chat
    assert "此前：孙刘联盟已成。" in first[1]["content"]  # rolling: the summary is folded in
    asked = "".join(prompt[1]["content"] for prompt in engine.prompts)
    assert tag(3, "问", "答") not in asked and tag(4, "问", "答") in asked  # 3 was covered
    last_dropped = plan.dropped_messages - 1
    assert tag(last_dropped, "问", "答") in engine.prompts[-1][1]["content"]
    assert tag(last_dropped + 1, "问", "答") not in asked  # what the window holds is not
    for before, after in zip(engine.prompts, engine.prompts[1:], strict=False):
        assert before[1]["content"] not in after[1]["content"]  # each pass: new messages
    saved = Memory.from_settings(conversation.session.settings)
    assert saved.text == f"第{result.passes}段摘要。" and saved.through == last_dropped
    branch = workspace.store.branch(conversation.session_id)
    assert saved.through_id == branch[last_dropped].id
    assert not mem.is_due(conversation.session.settings, plan)


ENGLISH = "Where is the key, old friend? Tell me where you hid it, number {i}."


def test_an_english_chat_gets_an_english_instruction_and_names_its_speakers(workspace):
    engine = FakeEngine(["They met."] * 8, context_length=512)
    conversation = chat(workspace, engine, 40, text=ENGLISH, reply="Under the stone {i}.")
    set_memory(conversation, enabled=True)
    mem.update_memory(conversation, next_plan(conversation), threading.Event())
    system, user = engine.prompts[0]
    assert "roleplay" in system["content"] and "(nothing yet)" in user["content"]
    assert "Assistant: Under the stone 0." in user["content"]
    assert ": Where is the key, old friend? Tell me where you hid it, number 0." in user["content"]


def test_hidden_messages_are_covered_but_not_shown_to_the_summarizer(workspace):
    engine = FakeEngine(["ok."] * 8, context_length=512)
    conversation = chat(workspace, engine, 40, text=ENGLISH, reply="reply {i}")
    store = workspace.store
    second = store.branch(conversation.session_id)[2]
    store.update_message(second.id, meta={HIDDEN: True})
    set_memory(conversation, enabled=True)
    mem.update_memory(conversation, next_plan(conversation), threading.Event())
    asked = engine.prompts[0][1]["content"]
    assert "number 0." in asked and "number 1." not in asked and "reply 1" in asked


def test_the_summary_prompt_is_bounded_and_passes_catch_up(workspace):
    engine = FakeEngine(
        ["s1.", "s2.", "s3.", "s4.", "s5.", "s6.", "s7.", "s8."], context_length=512
    )
    long_text = "word " * 60
    conversation = chat(workspace, engine, 60, text=long_text + "{i}", reply=long_text + "r{i}")
    set_memory(conversation, enabled=True)
    plan = next_plan(conversation)
    result = mem.update_memory(conversation, plan, threading.Event())
    assert result.passes >= 2
    for prompt in engine.prompts:
        assert engine.count_tokens(prompt) <= engine.context_length // mem.PROMPT_SHARE
    assert "s1." in engine.prompts[1][1]["content"]  # the second pass folds the first in
    saved = Memory.from_settings(conversation.session.settings)
    assert saved.text == f"s{result.passes}."
    assert saved.through == plan.dropped_messages - 1 or result.passes == mem.MAX_PASSES


def test_one_huge_message_is_cut_to_fit_and_still_covered(workspace):
    engine = FakeEngine(["big."], context_length=256)
    conversation = chat(workspace, engine, 12, text="问{i}", reply="好")
    first = workspace.store.branch(conversation.session_id)[0]
    workspace.store.update_message(first.id, content="字" * 5000)
    set_memory(conversation, enabled=True)
    plan = next_plan(conversation)
    job = mem.plan_summary(workspace.store, engine, conversation.session_id, plan)
    assert engine.count_tokens(job.prompt) <= 256 // mem.PROMPT_SHARE + 8
    assert job.messages[0].depth == 0 and "…" in job.prompt[1]["content"]


def test_a_cancelled_summary_saves_nothing(workspace):
    engine = FakeEngine(["很长的摘要 " * 200], delay=0.01, context_length=256)
    conversation = chat(workspace, engine, 30)
    set_memory(conversation, enabled=True, text="旧的")
    cancel = threading.Event()
    timer = threading.Timer(0.1, cancel.set)
    timer.start()
    result = mem.update_memory(conversation, next_plan(conversation), cancel)
    timer.join()
    assert result.cancelled and result.passes == 0
    assert Memory.from_settings(conversation.session.settings) == Memory(True, "旧的")


def test_a_memory_edited_during_the_pass_is_not_overwritten(workspace):
    engine = FakeEngine(["模型写的。"], context_length=256)
    conversation = chat(workspace, engine, 30)
    set_memory(conversation, enabled=True, text="旧的")
    job = mem.plan_summary(
        workspace.store, engine, conversation.session_id, next_plan(conversation)
    )
    set_memory(conversation, enabled=True, text="我亲手改的")
    assert mem.save_summary(workspace.store, job, "模型写的。") is None
    assert Memory.from_settings(conversation.session.settings).text == "我亲手改的"


def test_a_summary_of_another_branch_starts_over(workspace):
    engine = FakeEngine(["新分支的摘要。"] * 8, context_length=512)
    conversation = chat(workspace, engine, 40, text=ENGLISH, reply="a{i}")
    set_memory(conversation, enabled=True, text="别的分支", through=5, through_id=999_999)
    mem.update_memory(conversation, next_plan(conversation), threading.Event())
    asked = engine.prompts[0][1]["content"]
    assert "别的分支" not in asked and "number 0." in asked
    assert Memory.from_settings(conversation.session.settings).text == "新分支的摘要。"


def test_clean_summary_drops_a_heading_and_a_cut_sentence():
    cut = "Summary: They met at the inn and swore an oath. Then he wa"
    assert mem.clean_summary(cut) == "They met at the inn and swore an oath."
    assert mem.clean_summary("前情提要：二人在桃园结为兄弟。随后") == "二人在桃园结为兄弟。"
    assert mem.clean_summary("  plain  ") == "plain"


def test_no_warming_on_an_engine_without_a_local_cache(workspace):
    engine = FakeEngine(["摘要。"] * 8, context_length=1024)
    conversation = chat(workspace, engine, 80)
    set_memory(conversation, enabled=True)
    result = mem.update_memory(conversation, next_plan(conversation), threading.Event())
    assert result.passes >= 1 and not result.warmed and len(engine.prompts) == result.passes


# --- the real model: the reply after a summary reads only its new tokens -------------------------


@pytest.mark.slow
def test_on_the_real_model_the_turn_after_a_summary_evaluates_only_its_new_tokens(tmp_path):
    """SmolLM2 Q4_1 on the CPU engine: a summary prompt evicts the chat from llama.cpp's KV
    cache and the new memory text changes the prompt after the persona; the warm-up in the
    background restores the chat's saved state and reads the new prompt, so the next reply
    evaluates about its own new tokens. Without it that reply reads the history again."""
    from engines.llamacpp import LlamaCppEngine
    from tests.real_model import shipped_gguf

    engine = LlamaCppEngine(shipped_gguf(), n_ctx=512, n_threads=2)
    try:
        with Workspace(tmp_path / "home") as workspace:
            conversations = [
                chat(workspace, engine, 16, text=ENGLISH, reply="It is under stone {i}.")
                for _ in range(2)
            ]
            params = GenerationParams(max_new_tokens=8, do_sample=False, seed=0)
            evaluated = {}
            for warmed, conversation in zip((True, False), conversations, strict=True):
                conversation.store.update_session(
                    conversation.session_id, settings={"params": params.to_dict()}
                )
                set_memory(conversation, enabled=True)
                user = conversation.say("And the map?")
                conversation.reply(conversation.turn_after(user), params, threading.Event())
                plan = conversation.last_plan
                assert plan.dropped_messages > 0
                if warmed:
                    result = mem.update_memory(conversation, plan, threading.Event())
                    assert result.passes >= 1 and result.warmed
                else:  # the same summary, without the warm-up
                    job = mem.plan_summary(workspace.store, engine, conversation.session_id, plan)
                    text = mem.summarize(engine, job, threading.Event())
                    assert mem.save_summary(workspace.store, job, text or "They talked.")
                memory = Memory.from_settings(conversation.session.settings)
                assert memory.enabled and memory.text
                user = conversation.say("Where is the boat?")
                conversation.reply(conversation.turn_after(user), params, threading.Event())
                sent = conversation.last_plan.messages
                assert any(m["content"] == memory.text for m in sent)  # the planner placed it
                stats = engine.last_stats
                evaluated[warmed] = (stats.prompt_eval_tokens, stats.prompt_tokens)
    finally:
        engine.close()
    (new, total), (reread, _) = evaluated[True], evaluated[False]
    assert total > 250 and new < 40, evaluated  # about the new message and its framing
    assert reread > 150, evaluated  # without the warm-up: the history after the memory again
