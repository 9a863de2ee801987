"""Names, titles and error text from files, models and exceptions are shown as text, never
as Rich markup: a card named `Bad [/] Name` or `[@click=app.quit]ClickMe[/]` is just a name."""

from __future__ import annotations

from textual.widgets import OptionList

from engines.fake import FakeEngine
from sessions.cards import CharacterCard
from sessions.personas import PersonaStore
from sessions.store import Store
from tui.app import make_app
from tui.personas_screen import PersonasScreen

HOSTILE = ["Bad [/] Name", "[@click=app.quit]ClickMe[/]", "Seraphina [NSFW]", "[b]bold[/b"]


async def test_hostile_persona_names_and_titles_show_as_text(tmp_path):
    personas = PersonaStore(tmp_path / "personas")
    for name in HOSTILE:
        personas.create(CharacterCard.new(name, description="x"))
    store = Store(tmp_path / "cosplay.db")
    store.create_session(title="[/] [@click=app.quit]title[/]")
    app = make_app(store=store, engine=FakeEngine(["ok"]))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        await pilot.pause(0.2)
        assert isinstance(app.screen, PersonasScreen)
        prompts = [str(option.prompt) for option in app.screen.query_one(OptionList).options]
        for name in HOSTILE:
            assert name in prompts
        for index in range(len(HOSTILE)):  # walk the list: each is described without a crash
            app.screen.query_one(OptionList).highlighted = index
            await pilot.pause(0.05)
        await pilot.press("escape")
        await pilot.pause(0.1)
        app.notify("The model's own chat template failed to render (no [/] role); [b]x")
        await pilot.pause(0.3)  # the toast renders: a markup error would crash here
        assert app.is_running
    store.close()
