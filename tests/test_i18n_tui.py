"""The TUI in 简体中文: the footer, the palette, a screen's words, the status line and a
notification come out in Chinese at 80×24 with `set_language("zh")`; and every notification in
tui/ goes through the catalogue (an AST guard: a new English literal fails here)."""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path

import pytest

from engines.fake import FakeEngine
from engines.i18n import set_language
from sessions.store import Store
from tests.conftest import wait_until
from tui.app import make_app
from tui.first_start_screen import FirstStartScreen

TUI = Path(__file__).resolve().parent.parent / "tui"


@pytest.fixture
def chinese():
    set_language("zh")
    yield
    set_language("en")


def visible_text(app) -> str:
    """What the terminal shows, from an SVG screenshot with the markup stripped."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def footer_labels(app) -> list[str]:
    from textual.widgets._footer import FooterKey

    return [key.description for key in app.screen.query(FooterKey)]


async def test_the_chat_screen_speaks_chinese_at_80x24(tmp_path, chinese):
    app = make_app(store=Store(tmp_path / "c.db"), engine=FakeEngine(["东风已至。"]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        labels = footer_labels(app)
        assert "重新生成" in labels and "角色" in labels and "生成参数" in labels, labels
        assert not [label for label in labels if re.search(r"[A-Za-z]{3}", label)], labels
        status = str(app.chat.query_one("#status").render())
        assert "上下文" in status, status
        app.chat.action_scene()  # a notification, through the catalogue
        await wait_until(pilot, lambda: any(n for n in app._notifications))
        messages = [n.message for n in app._notifications]
        assert "这不是群聊场景：请先按 F5 添加角色。" in messages, messages
        await pilot.pause()
        screen = visible_text(app)
        assert "重新生成" in screen and "命令面板" in screen
        # the footer still fits in 80 columns: its last key (the palette's) is on screen
        last_line = screen.strip().splitlines()[-1]
        assert "命令面板" in last_line, last_line


async def test_the_default_speaker_names_read_in_chinese(tmp_path, chinese):
    """ "User" and "Assistant" (what the prompt calls you and the model when nobody set a name)
    head the transcript's messages as 用户 and 助手; a name someone chose is shown as it is."""
    from tui.widgets.message_view import MessageView

    app = make_app(store=Store(tmp_path / "c.db"), engine=FakeEngine(["东风已至。"]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"你好", "enter")
        await wait_until(pilot, lambda: not app.chat.generating and app.chat.query(MessageView))
        await pilot.pause(0.2)
        speakers = [view.speaker for view in app.chat.query(MessageView)]
        assert speakers == ["用户", "助手"], speakers
        # The prompt still names them as before: only the UI translates.
        assert app.chat.workspace.session_user_persona(app.chat.session).name == "User"


async def test_the_palette_lists_actions_in_chinese(tmp_path, chinese):
    app = make_app(store=Store(tmp_path / "c.db"), engine=FakeEngine(["好。"]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = {command.title: command.help for command in app.get_system_commands(app.screen)}
        assert "重新生成" in titles and "退出" in titles and "主题" in titles, titles
        assert titles["重新生成"].startswith("重新生成最后一条回复")
        assert titles["重新生成"].endswith("(Ctrl+R)")


async def test_the_first_start_screen_is_chinese(tmp_path, chinese):
    app = make_app(home=tmp_path / "home")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FirstStartScreen))
        await pilot.pause()
        screen = visible_text(app)
        assert "欢迎使用 Cosplay" in screen and "选择一个模型" in screen, screen


async def test_english_is_the_default_and_unchanged(tmp_path):
    app = make_app(store=Store(tmp_path / "c.db"), engine=FakeEngine(["ok"]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "Regenerate" in footer_labels(app)
        assert "ctx" in str(app.chat.query_one("#status").render())


def _translated(node: ast.expr) -> bool:
    """A notification's message that the catalogue covers: `_(…)`, or text made elsewhere
    (a variable, an attribute, a call such as str(exc)), never an English literal or f-string."""
    if isinstance(node, ast.Constant | ast.JoinedStr):
        return False
    if isinstance(node, ast.BinOp):
        return _translated(node.left) and _translated(node.right)
    if isinstance(node, ast.IfExp):
        return _translated(node.body) and _translated(node.orelse)
    return True


def untranslated_notifications() -> list[str]:
    found = []
    for path in sorted(TUI.rglob("*.py")):
        if path.name.startswith("cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "notify"
                and node.args
                and not _translated(node.args[0])
            ):
                found.append(f"{path.relative_to(TUI.parent)}:{node.lineno}")
    return found


def test_every_notification_goes_through_the_catalogue():
    missing = untranslated_notifications()
    assert not missing, "notify() with an English literal or f-string; use _():\n" + "\n".join(
        missing
    )


def test_the_guard_catches_a_literal_and_an_f_string():
    assert not _translated(ast.parse('"Saved."', mode="eval").body)
    assert not _translated(ast.parse('f"Saved {path}."', mode="eval").body)
    assert not _translated(ast.parse('_("a") if x else "b"', mode="eval").body)
    assert _translated(ast.parse('_("Saved {path}.", path=p)', mode="eval").body)
    assert _translated(ast.parse("str(exc)", mode="eval").body)


def test_no_function_hides_the_translator_behind_a_throwaway_variable():
    """`session, _ = …` in a function that also calls `_()` makes `_` a local there: the call
    then fails at run time (found once in the import action)."""
    clashes = []
    for path in sorted(TUI.rglob("*.py")):
        for function in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            names = [n for n in ast.walk(function) if isinstance(n, ast.Name) and n.id == "_"]
            if any(isinstance(n.ctx, ast.Store) for n in names) and any(
                isinstance(n.ctx, ast.Load) for n in names
            ):
                clashes.append(f"{path.relative_to(TUI.parent)}:{function.lineno}")
    assert not clashes, "a local `_` hides the translator:\n" + "\n".join(clashes)
