"""Group scenes under Pilot: each reply order, the scene dialog (F10), notices, speak now."""

from __future__ import annotations

from engines.fake import FakeEngine
from sessions.group import ReplyOrder, scene_rules, set_scene_rules
from sessions.models import Role
from sessions.store import Store
from sessions.workspace import Workspace
from tests.conftest import wait_until
from tui.app import make_app
from tui.group_screen import SceneScreen
from tui.widgets.message_view import MessageView

CAST = ["刘备", "曹操", "孙悟空"]


def scene(tmp_path, order: str | None = None, talkativeness: dict | None = None):
    """A store holding a three-character scene (greetings only); personas next to it."""
    store = Store(tmp_path / "c.db")
    workspace = Workspace.of(store)
    for name, value in (talkativeness or {}).items():
        card = workspace.personas.get(name).card.model_copy(deep=True)
        card.data.extensions = {**card.data.extensions, "talkativeness": str(value)}
        workspace.personas.save(card)
    session = workspace.new_session(CAST)
    if order is not None:
        set_scene_rules(store, session.id, order=order)
    return store, session


def replies_after_last_user(store, session_id) -> list[str]:
    branch = store.branch(session_id)
    last_user = max(i for i, m in enumerate(branch) if m.role == Role.USER)
    return [m.name for m in branch[last_user + 1 :]]


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


def status(app) -> str:
    return str(app.chat.query_one("#status").render())


async def send(pilot, text):
    app = pilot.app
    app.chat.query_one("#input").text = text
    await pilot.click("#input")
    await pilot.press("enter")
    await pilot.pause()
    await wait_until(pilot, lambda: not app.chat.generating)


async def test_the_scene_dialog_picks_the_order_and_list_order_answers_everyone(tmp_path):
    store, session = scene(tmp_path)
    engine = FakeEngine(["甲", "乙", "丙"])
    app = make_app(store=store, engine=engine, session_id=session.id)
    async with app.run_test(size=(110, 36)) as pilot:
        assert "order natural" in status(app)
        await pilot.press("f10")
        await pilot.pause()
        assert isinstance(app.screen, SceneScreen)
        shown = str(app.screen.query_one("#scene-order").render())
        assert "natural" in shown and "talkativeness 0.5" in str(
            app.screen.query_one("#scene-members").get_option_at_index(0).prompt
        )
        await pilot.press("o")  # natural → list
        await pilot.pause()
        assert "Reply order: list" in str(app.screen.query_one("#scene-order").render())
        await pilot.press("escape")
        await pilot.pause()
        assert "order list" in status(app)
        await send(pilot, "诸位以为如何？")
        await wait_until(pilot, lambda: len(engine.prompts) == 3)
        await wait_until(pilot, lambda: not app.chat.generating)
        assert replies_after_last_user(store, session.id) == CAST
        assert [v.speaker for v in app.chat.query(MessageView)][-3:] == CAST


async def test_manual_order_waits_answers_an_alias_and_speak_now(tmp_path):
    store, session = scene(tmp_path, order="manual")
    engine = FakeEngine(["备在。", "操在。"])
    app = make_app(store=store, engine=engine, session_id=session.id)
    async with app.run_test(size=(110, 36)) as pilot:
        await send(pilot, "诸位好")
        assert engine.prompts == [] and app.chat.session.leaf_id is not None
        assert any(n.startswith("Manual order: nobody was addressed") for n in notices(app))
        await send(pilot, "＠玄德 请坐")  # an alias, with a full-width at sign
        await wait_until(pilot, lambda: len(engine.prompts) == 1 and not app.chat.generating)
        assert replies_after_last_user(store, session.id) == ["刘备"]
        await pilot.press("f10")
        await pilot.pause()
        await pilot.press("down", "enter")  # 曹操 speaks now, after 刘备
        await wait_until(pilot, lambda: len(engine.prompts) == 2)
        await wait_until(pilot, lambda: not app.chat.generating)
        assert replies_after_last_user(store, session.id) == ["刘备", "曹操"]
        assert app.chat.query(MessageView).last().speaker == "曹操"


async def test_pooled_order_one_speaker_a_turn_everyone_before_anyone_twice(tmp_path):
    store, session = scene(tmp_path)
    engine = FakeEngine([f"答{i}" for i in range(6)])
    app = make_app(store=store, engine=engine, session_id=session.id)
    async with app.run_test(size=(110, 36)) as pilot:
        await pilot.press("f10")
        await pilot.pause()
        await pilot.press("o", "o", "o", "escape")  # natural → list → manual → pooled
        await pilot.pause()
        assert scene_rules(store.get_session(session.id)).order == ReplyOrder.POOLED
        heard = []
        for turn in range(6):
            await send(pilot, f"第{turn}问")
            await wait_until(pilot, lambda t=turn: len(engine.prompts) == t + 1)
            await wait_until(pilot, lambda: not app.chat.generating)
            [speaker] = replies_after_last_user(store, session.id)
            heard.append(speaker)
        assert heard[0] != "孙悟空"  # the greetings were a full pool; the last greeter waits
        assert sorted(heard[:3]) == sorted(CAST) and sorted(heard[3:]) == sorted(CAST)


async def test_natural_order_names_first_then_the_talkative(tmp_path):
    store, session = scene(tmp_path, talkativeness={"刘备": 1, "曹操": 0, "孙悟空": 0})
    engine = FakeEngine(["悟空答", "玄德答", "玄德又答"])
    app = make_app(store=store, engine=engine, session_id=session.id)
    async with app.run_test(size=(110, 36)) as pilot:
        await send(pilot, "大圣以为如何？")  # 孙悟空 named by an alias, 刘备 always talks
        await wait_until(pilot, lambda: len(engine.prompts) == 2 and not app.chat.generating)
        assert replies_after_last_user(store, session.id) == ["孙悟空", "刘备"]
        await send(pilot, "诸位？")  # nobody named: only the talkative one
        await wait_until(pilot, lambda: len(engine.prompts) == 3 and not app.chat.generating)
        assert replies_after_last_user(store, session.id) == ["刘备"]


async def test_mute_and_mention_only_from_the_dialog_and_an_unknown_mention(tmp_path):
    store, session = scene(tmp_path, order="list")
    engine = FakeEngine(["一", "二", "三", "四", "五"])
    app = make_app(store=store, engine=engine, session_id=session.id)
    async with app.run_test(size=(110, 36)) as pilot:
        await pilot.press("f10")
        await pilot.pause()
        await pilot.press("down", "m", "down", "w", "escape")  # mute 曹操; 孙悟空 when mentioned
        await pilot.pause()
        rules = scene_rules(store.get_session(session.id))
        assert rules.muted == {"曹操"} and rules.mention_only == {"孙悟空"}
        assert "muted 曹操" in status(app) and "@only 孙悟空" in status(app)

        await send(pilot, "诸位？")
        await wait_until(pilot, lambda: len(engine.prompts) == 1 and not app.chat.generating)
        assert replies_after_last_user(store, session.id) == ["刘备"]
        await send(pilot, "@悟空 你呢？")
        await wait_until(pilot, lambda: len(engine.prompts) == 2 and not app.chat.generating)
        assert replies_after_last_user(store, session.id) == ["孙悟空"]
        await send(pilot, "@阿瞒 你呢？")  # muted: no reply, and says so
        assert len(engine.prompts) == 2
        assert (
            "曹操 is muted in this scene; unmute in the scene dialog (F10) to let them speak."
            in notices(app)
        )

        await send(pilot, "@张三 [b]你好[/b]")
        await wait_until(pilot, lambda: len(engine.prompts) == 3 and not app.chat.generating)
        assert replies_after_last_user(store, session.id) == ["刘备"]
        assert (
            "@张三 is not in this scene (刘备、曹操、孙悟空); nobody was addressed, so the scene's "
            "order picks the speaker." in notices(app)
        )

        await pilot.press("f10")
        await pilot.pause()
        await pilot.press("down", "m", "escape")  # 曹操 speaks again
        await pilot.pause()
        assert scene_rules(store.get_session(session.id)).muted == frozenset()
        assert "muted" not in status(app)


async def test_the_scene_dialog_needs_a_group_and_its_keys_can_be_rebound(tmp_path):
    (tmp_path / "keys.toml").write_text('scene_mute = "x"\n', encoding="utf-8")
    store, session = scene(tmp_path, order="list")
    solo = Workspace.of(store).new_session("诸葛亮")
    app = make_app(store=store, engine=FakeEngine(), session_id=solo.id)
    async with app.run_test(size=(110, 36)) as pilot:
        await pilot.press("f10")
        await pilot.pause()
        assert not isinstance(app.screen, SceneScreen)
        assert "This is not a group scene: add a character with F5 first." in notices(app)
        app.chat.load_session(session.id)
        await pilot.press("f10")
        await pilot.pause()
        assert "x mute" in str(app.screen.query_one("#scene-help").render())
        await pilot.press("x", "escape")
        await pilot.pause()
        assert scene_rules(store.get_session(session.id)).muted == {"刘备"}


async def test_f6_takes_out_a_character_by_any_name_and_names_show_as_text(tmp_path):
    from sessions.cards import CosplayExtension

    store, session = scene(tmp_path, order="list")
    personas = Workspace.of(store).personas
    card = personas.get("曹操").card
    personas.save(card.with_cosplay(CosplayExtension(aliases=["[/]阿瞒[b]"])))
    app = make_app(store=store, engine=FakeEngine(), session_id=session.id)
    async with app.run_test(size=(110, 36)) as pilot:
        await pilot.press("f10")
        await pilot.pause()
        assert "[/]阿瞒[b]" in str(
            app.screen.query_one("#scene-members").get_option_at_index(1).prompt
        )
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("f6")
        await pilot.pause()
        app.screen.query_one("#answer").value = "@[/]阿瞒[b]"
        await pilot.press("enter")
        await pilot.pause()
        assert app.chat.cast == ["刘备", "孙悟空"]
