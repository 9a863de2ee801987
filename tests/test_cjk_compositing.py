"""Chinese in a widget drawn over another widget's edge keeps every character
(tui/cjk_compositing.py; Textual issue #6357): a notification over the settings panel's
border, rendered in full and as partial updates."""

from __future__ import annotations

import textual._compositor
from rich.cells import cell_len
from textual.app import App

import tui.cjk_compositing  # noqa: F401  (installs itself)
from engines.fake import FakeEngine
from tui.app import make_app
from tui.cjk_compositing import _render_chops, render_partial_update

MESSAGE = "未保存：repetition_penalty 无效：必须 ≤ 5（收到 9）。三国演义，西游记，红楼梦，水浒传。"


def screen_text(app: App) -> str:
    lines = app.screen._compositor.render_strips()
    return "\n".join(line.text for line in lines)


def test_the_compositor_is_ours_and_textual_still_has_what_we_replace():
    assert textual._compositor.Compositor._render_chops is _render_chops
    assert textual._compositor.Compositor.render_partial_update is render_partial_update
    assert "_get_renders" in dir(textual._compositor.Compositor)


async def test_a_notification_over_the_settings_panel_keeps_every_chinese_character(tmp_path):
    app = make_app(home=tmp_path, engine=FakeEngine(["好"]))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.press("ctrl+t")  # the settings panel: its border under the notification
        await pilot.pause(0.3)
        app.notify(MESSAGE, timeout=30)
        await pilot.pause(0.5)
        text = screen_text(app).replace("\n", "")
        for char in "未保存无效必须收到三国演义西游记红楼梦水浒传":
            assert char in text, (char, screen_text(app))
        # The partial update the terminal is sent draws the same characters.
        compositor = app.screen._compositor
        compositor._dirty_regions.add(app.screen.region)
        update = compositor.render_partial_update()
        drawn = "".join(
            strip.text for line in update.chops for strip in line.values() if strip is not None
        )
        for char in "未保存无效必须收到":
            assert char in drawn, char


async def test_a_screen_renders_whole_lines_in_full_and_partial_updates(tmp_path):
    app = make_app(home=tmp_path, engine=FakeEngine(["好"]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"三国演义", "enter")
        await pilot.pause(0.5)
        lines = screen_text(app).splitlines()
        assert len(lines) == 24 and all(cell_len(line) == 80 for line in lines)
        compositor = app.screen._compositor
        compositor._dirty_regions.add(app.screen.region)
        update = compositor.render_partial_update()
        assert update is not None and len(update.chops) == 24
        for line, ends in zip(update.chops, update.chop_ends, strict=True):
            for (x, strip), end in zip(line.items(), ends, strict=False):
                assert strip is None or x + strip.cell_length == end or not strip.cell_length
