"""The personas screen under Pilot, mounted alone in a tiny host app."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.widgets import Input, OptionList, Static, TextArea

from sessions.cards import load_card
from sessions.personas import PersonaStore
from tests.conftest import wait_until
from tui.modals import ConfirmScreen, TextPromptScreen
from tui.personas_editor import PersonaEditor
from tui.personas_screen import PersonasScreen

SERAPHINA = Path(__file__).parent / "data" / "Seraphina.png"
UNSET = object()


class Host(App):
    def __init__(self, directory: Path, export_dir: Path):
        super().__init__()
        self.directory, self.export_dir = directory, export_dir
        self.chosen = UNSET

    def on_mount(self) -> None:
        self.push_screen(PersonasScreen(self.directory, export_dir=self.export_dir), self.done)

    def done(self, name) -> None:
        self.chosen = name


def names(app) -> list[str]:
    return [p.name for p in app.screen.shown] if isinstance(app.screen, PersonasScreen) else []


async def test_search_view_and_choose(tmp_path):
    app = Host(tmp_path / "personas", tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, PersonasScreen)
        assert names(app)[:3] == ["诸葛亮", "曹操", "刘备"]
        assert "卧龙" in str(screen.query_one("#persona-detail", Static).render())
        await pilot.press("slash", *"水浒")
        assert names(app) == ["武松"]
        await pilot.press("enter", "enter")  # leave the search, then choose the highlighted persona
        await wait_until(pilot, lambda: app.chosen is not UNSET)
        assert app.chosen == ["武松"]


async def test_mark_several_personas_for_a_scene(tmp_path):
    app = Host(tmp_path / "personas", tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await pilot.press("down", "space", "up", "space")  # 曹操 first, then 诸葛亮
        await pilot.press("down", "down", "space", "space")  # 刘备 marked, then unmarked
        assert screen.marked == ["曹操", "诸葛亮"]
        labels = [str(o.prompt) for o in screen.query_one(OptionList).options][:3]
        assert labels[0].startswith("[2] 诸葛亮") and labels[1].startswith("[1] 曹操")
        assert not labels[2].startswith("[")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.chosen is not UNSET)
        assert app.chosen == ["曹操", "诸葛亮"]


async def test_escape_returns_none(tmp_path):
    app = Host(tmp_path / "personas", tmp_path)
    async with app.run_test() as pilot:
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.chosen is not UNSET)
        assert app.chosen is None


async def test_create_edit_builtin_duplicate_and_delete(tmp_path):
    directory = tmp_path / "personas"
    store = PersonaStore(directory)
    app = Host(directory, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        # Create, with a multi-line description.
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonaEditor))
        editor = app.screen
        editor.query_one("#field-name", Input).value = "周瑜"
        editor.query_one("#field-description", TextArea).load_text("东吴都督。\n雅量高致。")
        editor.query_one("#field-alternate_greetings", TextArea).load_text("其一\n---\n其二")
        editor.query_one("#field-adapter_gguf", Input).value = "/loras/zhouyu.gguf"
        editor.query_one("#field-engine", Input).value = "tpu"
        await pilot.press("ctrl+s")  # refused: not an engine
        await pilot.pause()
        assert app.screen is editor and not store.directory.joinpath("周瑜.json").exists()
        editor.query_one("#field-engine", Input).value = "cpu"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonasScreen))
        card = store.get("周瑜").card
        assert (card.cosplay.adapter_gguf, card.cosplay.engine) == ("/loras/zhouyu.gguf", "cpu")
        assert card.data.description == "东吴都督。\n雅量高致。"
        assert card.data.alternate_greetings == ["其一", "其二"]
        assert app.screen.current.name == "周瑜"

        # Editing a built-in saves a user copy and leaves the built-in alone.
        app.screen.query_one(OptionList).highlighted = 0
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonaEditor))
        app.screen.query_one("#field-personality", TextArea).load_text("多智而近妖")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonasScreen))
        zhuge = store.get("诸葛亮")
        assert not zhuge.builtin and zhuge.card.data.personality == "多智而近妖"
        assert names(app).count("诸葛亮") == 1

        # Cancelling an edit changes nothing.
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonaEditor))
        app.screen.query_one("#field-personality", TextArea).load_text("discarded")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonasScreen))
        assert store.get("诸葛亮").card.data.personality == "多智而近妖"

        # Duplicate.
        await pilot.press("d")
        await wait_until(pilot, lambda: "诸葛亮 (copy)" in names(app))

        # Delete asks first; "Cancel" keeps it, "Delete" removes it.
        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#no")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonasScreen))
        assert store.exists("诸葛亮 (copy)")
        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#yes")
        await wait_until(pilot, lambda: "诸葛亮 (copy)" not in names(app))
        assert not store.exists("诸葛亮 (copy)")

        # A built-in cannot be deleted: no dialog, a notification.
        app.screen.query_one(OptionList).highlighted = names(app).index("曹操")
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, PersonasScreen) and store.exists("曹操")


async def test_import_and_export(tmp_path):
    directory = tmp_path / "personas"
    app = Host(directory, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        app.screen.query_one(Input).value = str(SERAPHINA)
        await pilot.press("enter")
        await wait_until(pilot, lambda: "Seraphina" in names(app))
        assert app.screen.current.name == "Seraphina"

        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        assert app.screen.query_one(Input).value == str(tmp_path / "Seraphina.png")
        await pilot.press("enter")
        await wait_until(pilot, lambda: (tmp_path / "Seraphina.png").exists())
        assert load_card(tmp_path / "Seraphina.png").to_dict() == load_card(SERAPHINA).to_dict()

        # A bad file is a notification, not a crash.
        bad = tmp_path / "bad.json"
        bad.write_text("{", encoding="utf-8")
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        app.screen.query_one(Input).value = str(bad)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonasScreen))
        assert names(app) == PersonaStore(directory).names()
