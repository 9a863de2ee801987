"""One action table: the bindings, the command palette and the README come from tui/actions.py;
the engine registry: the loader and `--engine` come from engines/registry.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines import registry
from engines.base import CosplayError, ModelLoadError
from engines.fake import FakeEngine
from sessions.models import Role
from sessions.store import Store
from tests.conftest import wait_until
from tui import actions, keymap
from tui.app import make_app
from tui.chat_screen import ChatScreen

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_key_table_is_the_action_table():
    assert actions.markdown_table() in README.read_text(encoding="utf-8")


def test_every_action_has_a_method_and_a_unique_id():
    ids = [a.id for a in actions.CHAT + actions.MESSAGE + actions.APP]
    assert len(ids) == len(set(ids))
    for action in actions.CHAT + actions.MESSAGE:
        assert hasattr(ChatScreen, "action_" + action.action.split("(")[0]), action
    from tui.app import CosplayApp

    for action in actions.APP:
        assert hasattr(CosplayApp, "action_" + action.action), action
    bound = {b.id for b in ChatScreen.BINDINGS}
    assert bound == {a.id for a in actions.CHAT if a.keys}
    from tui.widgets.message_view import MessageView

    assert {b.id for b in MessageView.BINDINGS} == {a.id for a in actions.MESSAGE}
    assert {b.id for b in CosplayApp.BINDINGS} == {a.id for a in actions.APP}
    # every action has a key (the palette is not the only way to reach one)
    assert all(a.keys for a in actions.CHAT + actions.MESSAGE + actions.APP)


async def test_the_palette_lists_every_action_with_its_key(tmp_path):
    app = make_app(store=Store(tmp_path / "c.db"), engine=FakeEngine(["ok"]))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        commands = {c.title: c.help for c in app.get_system_commands(app.screen)}
        for action in actions.CHAT + actions.MESSAGE + actions.APP:
            assert action.title in commands
        assert commands["Regenerate"].endswith("(Ctrl+R)")


async def test_keys_toml_rebinds_an_action_by_its_id(tmp_path):
    (tmp_path / "keys.toml").write_text('regenerate = "f12"\n', encoding="utf-8")
    store = Store(tmp_path / "c.db")
    engine = FakeEngine(["一", "二"])
    app = make_app(store=store, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.chat
        await pilot.click("#input")
        await pilot.press("h", "i", "enter")
        await wait_until(pilot, lambda: not screen.generating and screen._last_reply is not None)
        await pilot.press("f12")
        await wait_until(pilot, lambda: len(engine.prompts) == 2 and not screen.generating)
        commands = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert commands["Regenerate"].endswith("(F12)")
    replies = [m for m in store.all_messages(1) if m.role == Role.ASSISTANT]
    assert [m.content for m in replies] == ["一", "二"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("regenerate = ", "not valid TOML"),
        ('fly = "ctrl+f"', "unknown action 'fly'"),
        ("regenerate = 5", "gives 'regenerate' no keys"),
    ],
)
def test_a_bad_keys_file_is_one_sentence(tmp_path, text, message):
    path = tmp_path / "keys.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CosplayError, match=message):
        keymap.read_keymap(path)
    assert keymap.read_keymap(tmp_path / "none.toml") == {}


async def test_a_bad_keys_file_is_a_notification_not_a_crash(tmp_path):
    (tmp_path / "keys.toml").write_text("[[[", encoding="utf-8")
    app = make_app(store=Store(tmp_path / "c.db"), engine=FakeEngine(["ok"]))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert any("keys.toml is not valid TOML" in n.message for n in app._notifications)


# --- the engine registry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "engine"),
    [
        ("models/qwen.Q4_K_M.gguf", "cpu"),
        ("MODEL.GGUF", "cpu"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "gpu"),
        ("http://127.0.0.1:8080/v1", "remote"),
        ("https://cluster.example/v1", "remote"),
    ],
)
def test_the_registry_picks_the_engine_from_the_model(model, engine):
    assert registry.choose(model).name == engine


def test_a_forced_engine_that_cannot_run_the_model_is_one_sentence(tmp_path):
    with pytest.raises(
        ModelLoadError, match="is not what the gpu engine runs .* leave out --engine"
    ):
        registry.choose("m.gguf", "gpu")
    with pytest.raises(ModelLoadError, match="is not what the cpu engine runs"):
        registry.choose("http://h:1/v1", "cpu")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file but not a .gguf"):
        registry.choose(str(weights))
    with pytest.raises(ModelLoadError, match="Unknown engine 'tpu'"):
        registry.choose("m.gguf", "tpu")


def test_the_cli_offers_the_registry_engines():
    from tui.cli import build_parser

    chat = build_parser()._subparsers._group_actions[0].choices["chat"]
    engine = next(a for a in chat._actions if a.dest == "engine")
    assert engine.choices == ["auto", *registry.names()]


def test_an_adapter_that_fails_to_load_frees_the_model(tiny_gguf, tmp_path, monkeypatch):
    """The model is loaded before its adapters: a bad --adapter must not leak it."""
    from engines.llamacpp import LlamaCppEngine
    from engines.loader import ModelSpec, load_engine

    closed = []
    original = LlamaCppEngine.close
    monkeypatch.setattr(LlamaCppEngine, "close", lambda self: closed.append(1) or original(self))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a lora")
    with pytest.raises(CosplayError):
        load_engine(ModelSpec(model=str(tiny_gguf), adapters={"bad": str(bad)}))
    assert closed == [1]
