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
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
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


# --- every screen and modal ---------------------------------------------------------------

import html  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

from textual.app import App  # noqa: E402
from textual.widgets import Input  # noqa: E402
from textual.widgets._toast import Toast  # noqa: E402

from sessions.workspace import Workspace  # noqa: E402
from tests.conftest import wait_until  # noqa: E402
from tui.first_start_screen import FirstStartScreen  # noqa: E402
from tui.modals import ConfirmScreen, TextPromptScreen  # noqa: E402
from tui.personas_editor import PersonaEditor  # noqa: E402
from tui.training_screen import TrainingMonitorApp, TrainingScreen  # noqa: E402
from tui.widgets.params_panel import ParamsPanel  # noqa: E402
from tui.widgets.session_list import SessionList  # noqa: E402

NAMES = ["Bad [/] Name", "[@click=app.quit]ClickMe[/]", "Seraphina [NSFW]", "[b]x"]
TITLE = "[/][b]x[@click=app.quit]"  # fits the session sidebar


def screen_text(app) -> str:
    """What the terminal shows, as plain text (the SVG screenshot without its tags)."""
    svg = app.export_screenshot()
    body = svg[svg.index("</style>") :]  # the CSS is not text on the screen
    text = html.unescape(re.sub(r"<[^>]+>", "", body))
    return text.replace("\xa0", " ")


async def shown(pilot, *texts: str) -> None:
    """Wait until every text is on the screen, literally (markup would have eaten brackets)."""
    try:
        await wait_until(pilot, lambda: all(t in screen_text(pilot.app) for t in texts), 5)
    except AssertionError:
        screen = screen_text(pilot.app)
        raise AssertionError([t for t in texts if t not in screen], screen) from None


async def test_every_screen_and_modal_shows_hostile_names_as_text(tmp_path):
    personas = PersonaStore(tmp_path / "personas")
    for name in NAMES:
        personas.create(CharacterCard.new(name, description=f"about {name}"))
    store = Store(tmp_path / "cosplay.db")
    session = store.create_session(title=TITLE, persona=NAMES[2])
    store.close()
    workspace = Workspace(tmp_path)
    app = make_app(workspace=workspace, engine=FakeEngine(["ok [b]reply"]))
    async with app.run_test(size=(160, 50), notifications=True) as pilot:
        await wait_until(pilot, lambda: app.screen.query(SessionList))
        chat = app.screen
        # the chat screen: the session list and the transcript
        await wait_until(pilot, lambda: chat.session is not None)
        assert chat.session.id == session.id
        await shown(pilot, TITLE)
        # the params panel, with a hostile stop string typed in (invalid JSON: a warning)
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: chat.query_one(ParamsPanel).display)
        stop = chat.query_one("#stop", Input)
        stop.value = '["[b]x", "[/]"]'
        chat.query_one(ParamsPanel)._changed("stop")
        stop.value = "[/] not json"
        chat.query_one(ParamsPanel)._changed("stop")
        await wait_until(pilot, lambda: app.screen.query(Toast))
        # the confirm and text prompt modals
        app.push_screen(ConfirmScreen(f"Delete “{TITLE}” and all its messages?"))
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await shown(pilot, f"Delete “{TITLE}”")
        app.pop_screen()
        app.push_screen(TextPromptScreen(f"Rename {NAMES[0]}:", TITLE))
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        await shown(pilot, f"Rename {NAMES[0]}:", "Enter to save, Esc to cancel")
        app.pop_screen()
        app.push_screen(FirstStartScreen(workspace, f"The last model used, {NAMES[0]}, is gone."))
        await wait_until(pilot, lambda: isinstance(app.screen, FirstStartScreen))
        await shown(pilot, f"The last model used, {NAMES[0]}, is gone.")
        app.pop_screen()
        # the personas screen: every name in the list, each one's detail
        app.push_screen(PersonasScreen(workspace.personas.directory))
        await wait_until(
            pilot, lambda: isinstance(app.screen, PersonasScreen) and app.screen.query(OptionList)
        )
        options = app.screen.query_one(OptionList)
        await shown(pilot, *NAMES)
        for name in NAMES:
            options.highlighted = [p.name for p in app.screen.shown].index(name)
            await wait_until(pilot, lambda name=name: f"# {name}" in screen_text(app))
        # the persona editor, titled with the name
        card = personas.get(NAMES[1]).card
        app.push_screen(PersonaEditor(card, title=f"Edit {NAMES[1]}"))
        await wait_until(pilot, lambda: isinstance(app.screen, PersonaEditor))
        await shown(pilot, f"Edit {NAMES[1]}")
        app.pop_screen()
        app.pop_screen()
        # the training monitor, on a run folder with a hostile name and log
        run = tmp_path / "Seraphina [NSFW] [b]x"
        run.mkdir()
        (run / "train_log.jsonl").write_text(
            json.dumps({"event": "start", "step": 0, "max_steps": 4})
            + "\n"
            + json.dumps({"step": 1, "loss": 2.5, "lr": 1e-4})
            + "\n"
            + json.dumps({"event": "end", "status": "[b]x [/]"})
            + "\n"
        )
        app.push_screen(TrainingScreen(run, poll_seconds=60))
        await wait_until(pilot, lambda: isinstance(app.screen, TrainingScreen))
        await shown(pilot, str(run), "[b]x [/]")
        app.pop_screen()
        # toasts: names and error text stay text
        for name in NAMES:
            app.notify(f"Deleted {name}.")
        await wait_until(pilot, lambda: len(app.screen.query(Toast)) >= len(NAMES))
        await shown(pilot, *(f"Deleted {name}." for name in NAMES))
        assert app.is_running
    workspace.close()


async def test_the_training_monitor_app_shows_notifications_as_text(tmp_path):
    app = TrainingMonitorApp(tmp_path, poll_seconds=60)
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        app.notify("[/] [@click=app.quit]ClickMe[/]")
        await wait_until(pilot, lambda: app.screen.query(Toast))
        await shown(pilot, "[/] [@click=app.quit]ClickMe[/]")
        assert app.is_running


class _Host(App):
    pass


async def test_a_damaged_training_log_is_skipped_not_a_crash(tmp_path):
    (tmp_path / "train_log.jsonl").write_text(
        "\n".join(
            json.dumps(record)
            for record in [
                {"event": "start", "step": "x"},
                {"step": 1, "loss": "high"},
                {"step": 2, "loss": 1.5, "lr": "fast", "tokens_per_s": [1]},
                {"step": 3, "eval_loss": None},
                {"step": 1e400, "loss": 1.0},
                {"event": "end", "status": {"not": "text"}},
                {"step": 4, "loss": 1.25},
            ]
        )
        + "\n"
    )
    app = _Host()
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        app.push_screen(TrainingScreen(tmp_path, poll_seconds=60))
        await wait_until(
            pilot, lambda: isinstance(app.screen, TrainingScreen) and app.screen.query("LossPlot")
        )
        await wait_until(pilot, lambda: app.screen.run.status == "finished")
        run = app.screen.run
        assert run.train == [(2, 1.5), (4, 1.25)] and run.lr is None and run.tokens_per_s is None
        assert app.screen.run.status == "finished"
        assert app.is_running
