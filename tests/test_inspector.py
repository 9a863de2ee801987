"""The prompt inspector and `cosplay ask --dry-run`: the exact prompt of the next reply, tokens
per part adding up to the engine's own count, the history cut and the lore that fired; nothing
generated or saved."""

import json
import subprocess
import sys
import textwrap

from engines.base import GenerationParams
from engines.fake import FakeEngine
from sessions.cards import card_from_dict
from sessions.conversation import Conversation
from sessions.inspector import inspect, report
from sessions.models import Role
from sessions.store import Store
from sessions.workspace import Workspace
from tests.conftest import wait_until
from tests.real_model import shipped_gguf
from tui.app import make_app
from tui.inspector_screen import InspectorScreen

CARD = {
    "spec": "chara_card_v2",
    "data": {
        "name": "卧龙",
        "description": "卧龙先生。",
        "first_mes": "{{user}}，亮有礼了。",
        "mes_example": "<START>\n{{user}}: 例一问\n{{char}}: 例一答",
        "post_history_instructions": "只以{{char}}的口吻回答。",
        "character_book": {
            "entries": [
                {"keys": ["赤壁"], "content": "赤壁之战，火攻破曹。", "comment": "赤壁之战",
                 "enabled": True, "insertion_order": 1},
                {"keys": ["荆州"], "content": "荆州九郡。", "enabled": True, "insertion_order": 2},
            ]
        },
    },
}  # fmt: skip


def long_persona_chat(home, rounds: int) -> tuple[Workspace, int]:
    workspace = Workspace(home)
    workspace.personas.create(card_from_dict(CARD))
    session = workspace.new_session("卧龙")
    parent = session.leaf_id
    for i in range(rounds):
        parent = workspace.store.add_message(
            session.id, Role.USER, f"第{i}问：天下大势如何？" * 4, parent_id=parent
        ).id
        parent = workspace.store.add_message(
            session.id, Role.ASSISTANT, f"第{i}答：三分天下。" * 4, parent_id=parent, name="卧龙"
        ).id
    return workspace, session.id


def test_parts_add_up_to_the_engines_count_with_the_cut_and_the_lore(tmp_path):
    workspace, session_id = long_persona_chat(tmp_path, 60)
    engine = FakeEngine([], context_length=1024)
    params = GenerationParams(max_new_tokens=64)
    conversation = Conversation(workspace, engine, session_id)
    plan = conversation.preview("赤壁一战，先生以为如何？", params)
    inspection = inspect(plan, engine, params.max_new_tokens)
    assert inspection.total == engine.count_tokens(plan.messages) == plan.prompt_tokens
    names = [part.name for part in inspection.parts]
    # examples are the first to go when the history is cut: dropped, so not a part; the lore
    # entry (no position given) goes in 4 messages from the end
    assert names == ["system", "history", "injection", "history", "input", "post_history"]
    assert plan.dropped_examples == 1
    assert [len(part.messages) for part in inspection.parts[2:5]] == [1, 3, 1]
    assert inspection.parts[2].messages == [{"role": "system", "content": "赤壁之战，火攻破曹。"}]
    assert inspection.parts[4].messages[-1]["content"] == "赤壁一战，先生以为如何？"
    assert plan.lore == ["赤壁之战"]
    text = report(inspection, engine)
    assert "✂ cut above" in text and "lore fired: 赤壁之战" in text
    assert "lore: 赤壁之战 → at depth 4 as system" in text
    assert "1 example dialogue(s) left out" in text
    assert "赤壁一战，先生以为如何？" in text.split("the exact prompt")[1]
    assert len(workspace.store.branch(session_id)) == 121  # nothing saved


def test_an_empty_input_inspects_the_reply_to_the_last_message(tmp_path):
    workspace, session_id = long_persona_chat(tmp_path, 1)
    store = workspace.store
    store.add_message(
        session_id, Role.USER, "荆州如何？", parent_id=store.get_session(session_id).leaf_id
    )
    plan = Conversation(workspace, FakeEngine([]), session_id).preview("", GenerationParams())
    assert plan.messages[-2]["content"] == "荆州如何？" and plan.lore == ["荆州"]
    # the history is shorter than the lore's depth: the entry goes above it all
    assert [name for name, size in plan.parts if size] == [
        "system", "examples", "injection", "history", "input", "post_history"
    ]  # fmt: skip


def test_dry_run_prints_the_prompt_and_saves_nothing(tmp_path):
    home = tmp_path / "home"
    workspace, session_id = long_persona_chat(home, 3)
    before = len(workspace.store.all_messages(session_id))
    workspace.close()

    def dry_run(*flags):
        return subprocess.run(
            [sys.executable, "-m", "tui.cli", "--home", str(home), "ask", "--model",
             str(shipped_gguf()), *flags, "--dry-run", "赤壁如何？"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    done = dry_run("--session", str(session_id))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the exact prompt" in done.stdout and "赤壁如何？<|im_end|>" in done.stdout
    assert "lore fired: 赤壁之战" in done.stdout
    fresh = dry_run("--new", "--persona", "卧龙")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "亮有礼了" in fresh.stdout  # a new persona chat's greeting is in its prompt
    again = Store(home / "cosplay.db")
    assert len(again.all_messages(session_id)) == before
    assert [s.id for s in again.list_sessions()] == [session_id]  # the new one is gone again


REAL = textwrap.dedent(
    """
    import json, sys
    from engines.base import GenerationParams
    from engines.llamacpp import LlamaCppEngine
    from sessions.conversation import Conversation
    from sessions.inspector import inspect
    from sessions.models import Role
    from sessions.workspace import Workspace

    engine = LlamaCppEngine(sys.argv[1], n_ctx=512)
    workspace = Workspace(sys.argv[2])
    session = workspace.new_session()
    parent = None
    for i in range(40):
        parent = workspace.store.add_message(session.id, Role.USER if i % 2 == 0 else
            Role.ASSISTANT, f"第{i}句：曹操挟天子以令诸侯。" * 3, parent_id=parent).id
    plan = Conversation(workspace, engine, session.id).preview("刘备呢？", GenerationParams())
    inspection = inspect(plan, engine, 256)
    print(json.dumps({"parts": [p.tokens for p in inspection.parts], "total": inspection.total,
        "exact": engine.count_tokens(plan.messages), "planned": plan.prompt_tokens,
        "cut": plan.summary, "ends": inspection.text[-40:]}, ensure_ascii=False))
    """
)


def test_on_the_real_model_the_parts_sum_to_the_tokenizers_count(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", REAL, str(shipped_gguf()), str(tmp_path / "home")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["total"] == result["exact"] == result["planned"] == sum(result["parts"])
    assert result["cut"] and "刘备呢？" in result["ends"]


async def test_f4_shows_the_prompt_with_the_typed_message(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    store.add_message(session.id, Role.USER, "[bold]hi[/bold]")
    app = make_app(store=store, engine=FakeEngine([]), session_id=session.id)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.chat.query_one("#input").insert("曹操呢？")
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, InspectorScreen))
        assert "曹操呢？" in app.screen.report and "[bold]hi[/bold]" in app.screen.report
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, InspectorScreen))
        assert store.all_messages(session.id)[-1].content == "[bold]hi[/bold]"  # nothing sent
