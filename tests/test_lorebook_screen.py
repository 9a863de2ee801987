"""Pilot tests of the lorebook dialog (Alt+L, tui/lorebook_screen.py): attaching a kept book to
the chat or the persona changes the next prompt, an entry switched off stops firing, text from
books is shown as text, a bad import is one notification, and it fits 80×24."""

from __future__ import annotations

import json

from engines.base import GenerationParams
from engines.fake import FakeEngine
from sessions.cards import card_from_dict
from sessions.conversation import Conversation
from sessions.lorebook_files import lorebook_folder
from sessions.models import Role
from sessions.store import Store
from sessions.workspace import Workspace
from tests.conftest import wait_until
from tui.app import make_app
from tui.lorebook_screen import LorebookScreen

PARAMS = GenerationParams(max_new_tokens=64)
HOSTILE = "[red]危险[/red] [/] [b]粗[/b]"


def world_info(*entries) -> dict:
    return {"entries": {str(i): {"uid": i, **e} for i, e in enumerate(entries)}}


def wi_entry(keys, content, comment, **more) -> dict:
    return {"key": keys, "content": content, "comment": comment, "order": 100, "position": 4,
            "depth": 2, "role": 0, **more}  # fmt: skip


CARD = {
    "spec": "chara_card_v2",
    "data": {
        "name": "卧龙先生诸葛亮",
        "description": "卧龙先生。",
        "first_mes": "亮有礼了。",
        "character_book": {
            "entries": [
                {
                    "keys": ["隆中"],
                    "content": "隆中对策。",
                    "comment": "隆中对",
                    "enabled": True,
                    "insertion_order": 1,
                }
            ]  # fmt: skip
        },
    },
}


def setup(tmp_path, books: dict[str, dict], last: str = "说说赤壁之战") -> tuple[Store, int]:
    """A chat with the persona, ending with the user's `last`; `books` written as WI files and
    imported into the data directory's lorebooks/."""
    store = Store(tmp_path / "home" / "c.db")
    workspace = Workspace.of(store)
    workspace.personas.create(card_from_dict(CARD))
    folder = lorebook_folder(workspace.paths.root)
    for index, (name, obj) in enumerate(books.items()):
        source = tmp_path / f"book{index}.json"
        source.write_text(json.dumps(obj, ensure_ascii=False), "utf-8")
        folder.import_file(source, name)
    session = store.create_session(persona=CARD["data"]["name"])
    store.add_message(session.id, Role.USER, last, parent_id=None)
    return store, session.id


def fired(store: Store, session_id: int) -> list[str]:
    """The lore of the next reply's prompt, as the prompt inspector gets it."""
    plan = Conversation(Workspace.of(store), FakeEngine([], context_length=4096), session_id)
    return plan.preview("", PARAMS).lore


def notes(app) -> str:
    return " | ".join(n.message for n in app._notifications)


async def open_dialog(pilot) -> LorebookScreen:
    await pilot.press("alt+l")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, LorebookScreen))
    return pilot.app.screen


def row_texts(screen: LorebookScreen, table_id: str) -> list[str]:
    table = screen.query_one(table_id)
    return [" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


def shown(widget) -> str:
    """What the widget puts on the screen, line by line (markup, had it been read, is gone)."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


async def test_attach_and_detach_to_the_chat_and_the_persona_change_the_next_prompt(tmp_path):
    sanguo = world_info(wi_entry(["赤壁"], "赤壁之战，火攻破曹。", "赤壁之战"))
    store, session_id = setup(tmp_path, {"三国": sanguo})
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_dialog(pilot)
        rows = row_texts(screen, "#books")
        assert rows[0].startswith("三国 1") and "card book" in rows[1]
        assert fired(store, session_id) == []

        await pilot.press("a")
        assert store.get_session(session_id).settings["lorebooks"] == ["三国"]
        assert fired(store, session_id) == ["赤壁之战"]
        assert row_texts(screen, "#books")[0] == "三国 1 on "
        await pilot.press("a")
        assert store.get_session(session_id).settings["lorebooks"] == []
        assert fired(store, session_id) == []

        await pilot.press("p")
        card = Workspace.of(store).personas.get(CARD["data"]["name"]).card
        assert card.data.extensions["cosplay"]["lorebooks"] == ["三国"]
        assert fired(store, session_id) == ["赤壁之战"]
        assert row_texts(screen, "#books")[0] == "三国 1  on"
        await pilot.press("p")
        card = Workspace.of(store).personas.get(CARD["data"]["name"]).card
        assert "lorebooks" not in card.data.extensions["cosplay"]
        assert fired(store, session_id) == []

        await pilot.press("a", "escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, LorebookScreen))
        # The chat screen read the session back: a later settings change keeps the book.
        assert app.chat.session.settings["lorebooks"] == ["三国"]
        await pilot.press("alt+m")
        assert store.get_session(session_id).settings["lorebooks"] == ["三国"]


async def test_an_entry_switched_off_is_saved_in_the_book_and_stops_firing(tmp_path):
    sanguo = world_info(
        wi_entry(["赤壁"], "赤壁之战，火攻破曹。", "赤壁之战"),
        wi_entry(["赤壁"], "周瑜与诸葛亮。", "周瑜"),
    )
    store, session_id = setup(tmp_path, {"三国": sanguo})
    store.update_session(session_id, settings={"lorebooks": ["三国"]})
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_dialog(pilot)
        assert sorted(fired(store, session_id)) == ["周瑜", "赤壁之战"]
        screen.query_one("#entries").focus()
        await pilot.press("down", "space")
        saved = lorebook_folder(tmp_path / "home").world_info("三国")
        assert [e.get("disable", False) for e in saved["entries"].values()] == [False, True]
        assert saved["entries"]["1"]["comment"] == "周瑜"  # the rest of the file as it was
        assert fired(store, session_id) == ["赤壁之战"]
        assert row_texts(screen, "#entries")[1].startswith("off 周瑜")
        assert screen.query_one("#entries").cursor_row == 1
        await pilot.press("space")
        assert sorted(fired(store, session_id)) == ["周瑜", "赤壁之战"]


async def test_the_cards_own_book_is_read_only_here(tmp_path):
    store, session_id = setup(tmp_path, {})
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_dialog(pilot)
        assert row_texts(screen, "#books") == ["卧龙先生诸葛亮's card book 1 always (card)"]
        assert row_texts(screen, "#entries")[0].startswith("on 隆中对 隆中")
        await pilot.press("a")
        screen.query_one("#entries").focus()
        await pilot.press("space")
        assert "lorebooks" not in store.get_session(session_id).settings
        assert "read-only" in notes(app)
        card = Workspace.of(store).personas.get(CARD["data"]["name"]).card
        assert card.data.character_book.entries[0].enabled is True


async def test_text_from_a_book_is_shown_as_text_never_as_markup(tmp_path):
    hostile = world_info(wi_entry([HOSTILE], HOSTILE, "[bold]名[/bold]"))
    store, session_id = setup(tmp_path, {"[b]坏[/b]": hostile})
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_dialog(pilot)
        await pilot.pause()
        assert "[b]坏[/b]" in shown(screen.query_one("#books"))
        entries = shown(screen.query_one("#entries"))
        assert "[bold]名[/bold]" in entries and "[red]危险[/red] [/]" in entries
        assert shown(screen.query_one("#preview")).startswith(HOSTILE)
        await pilot.press("a")
        assert "[b]坏[/b] attached to this chat." in notes(app)
        assert store.get_session(session_id).settings["lorebooks"] == ["[b]坏[/b]"]


async def test_importing_by_path_and_bad_paths_are_one_notification(tmp_path):
    store, session_id = setup(tmp_path, {})
    good = tmp_path / "魏国.json"
    good.write_text(
        json.dumps(world_info(wi_entry(["曹操"], "曹操，字孟德。", "曹操")), ensure_ascii=False),
        "utf-8",
    )
    broken = tmp_path / "broken.json"
    broken.write_text('{"entries": {"0": ', "utf-8")
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_dialog(pilot)
        folder = lorebook_folder(tmp_path / "home")

        async def import_path(text: str) -> None:
            app._notifications.clear()
            await pilot.press("i")
            field = screen.query_one("#import_path")
            assert field.has_focus
            field.value = text
            await pilot.press("enter")

        await import_path(str(tmp_path / "nowhere.json"))
        assert "Cannot read" in notes(app) and "nowhere.json" in notes(app)
        await import_path(str(broken))
        assert "broken.json is malformed JSON" in notes(app)
        assert folder.names() == []
        await import_path(f"'{good}'")  # pasted with quotes
        assert folder.names() == ["魏国"]
        assert row_texts(screen, "#books")[0].startswith("魏国 1")
        assert screen.query_one("#books").has_focus
        await pilot.press("a")
        assert store.get_session(session_id).settings["lorebooks"] == ["魏国"]
        await import_path(str(good))
        assert "A lorebook named '魏国' exists" in notes(app)
        assert len(app._notifications) == 1


async def test_an_unreadable_book_is_listed_with_its_error(tmp_path):
    store, session_id = setup(tmp_path, {})
    folder = lorebook_folder(tmp_path / "home")
    folder.directory.mkdir(parents=True, exist_ok=True)
    folder.path_for("坏书").write_text(
        json.dumps({"name": "坏书", "entries": {"0": "not an entry"}}), "utf-8"
    )
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_dialog(pilot)
        assert row_texts(screen, "#books")[0] == "坏书 unreadable  "
        assert "entry 0 is not an object" in str(screen.query_one("#preview").render())
        assert row_texts(screen, "#entries") == []


async def test_it_fits_80_by_24_with_chinese_names(tmp_path):
    long_name = "三国演义人物与地名大全之赤壁之战前后" * 2
    entries = [
        wi_entry([f"关键词{i}", "赤壁"], "内容" * 50, f"条目名称很长的第{i}条") for i in range(12)
    ]
    store, session_id = setup(tmp_path, {long_name: world_info(*entries)})
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_dialog(pilot)
        await pilot.pause()
        for selector in ("#lore_title", "#books", "#entries", "#preview", "#import_path"):
            region = screen.query_one(selector).region
            assert region.height >= 1 and region.right <= 80 and region.bottom <= 24, selector
        assert screen.query_one("#entries").region.height >= 5
        entries_table = screen.query_one("#entries")
        assert entries_table.virtual_size.width <= entries_table.region.width


async def test_a_book_with_bad_numbers_shows_its_entries_with_defaults(tmp_path):
    store, session_id = setup(tmp_path, {})
    folder = lorebook_folder(tmp_path / "home")
    folder.directory.mkdir(parents=True, exist_ok=True)
    folder.path_for("坏数").write_text(
        '{"name": "坏数", "entries": {"0": {"uid": 0, "key": ["赤壁"], "content": "FIRE",'
        ' "comment": "火", "order": NaN, "position": Infinity, "depth": 1e999,'
        ' "role": -Infinity}}}',
        "utf-8",
    )
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_dialog(pilot)
        assert row_texts(screen, "#books")[0].startswith("坏数")
        (row,) = row_texts(screen, "#entries")
        assert "火" in row and "@4 system" in row and "100" in row
