"""Actions on any message: versions of an earlier message, edit and resend an earlier message of
yours, regenerate with the same seed, delete a subtree, branch, copy, and how a reply was made."""

from engines.fake import FakeEngine
from sessions.models import Role
from sessions.store import Store
from tests.conftest import wait_until
from tui.app import make_app
from tui.message_actions import MessageInfoScreen, describe_message
from tui.modals import ConfirmScreen
from tui.widgets.message_view import MessageView


def chat(store: Store, *texts: str) -> int:
    """A session alternating user / assistant messages."""
    session = store.create_session(title="chat")
    parent = None
    for i, text in enumerate(texts):
        role = Role.USER if i % 2 == 0 else Role.ASSISTANT
        parent = store.add_message(session.id, role, text, parent_id=parent).id
    return session.id


def contents(app) -> list[str]:
    return [v.message.content for v in app.chat.transcript.views]


def header(view: MessageView) -> str:
    return str(view.query_one(".header").render())


async def focus_message(pilot, app, content: str) -> MessageView:
    await pilot.press("alt+up")
    for _ in range(len(app.chat.transcript.views)):
        if app.chat.focused.message.content == content:
            return app.chat.focused
        await pilot.press("up")
    raise AssertionError(f"no message {content!r}")


async def test_versions_of_an_earlier_message_switch_the_branch_below_it(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = chat(store, "q1", "a1", "q2", "a2", "q3", "a3")
    first_a1 = store.branch(session_id)[1]
    # a second version of a1, with its own continuation
    other = store.add_message(session_id, Role.ASSISTANT, "a1 again", parent_id=first_a1.parent_id)
    store.add_message(session_id, Role.USER, "q2 on the other branch", parent_id=other.id)
    store.update_session(session_id, leaf_id=store.deepest_leaf(first_a1.id))
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.transcript.views) == 6)
        view = await focus_message(pilot, app, "a1")
        assert "1/2" in header(view)
        await pilot.press("right")
        await wait_until(
            pilot, lambda: contents(app) == ["q1", "a1 again", "q2 on the other branch"]
        )
        assert app.chat.focused.message.content == "a1 again" and "2/2" in header(app.chat.focused)
        await pilot.press("left")
        await wait_until(pilot, lambda: contents(app) == ["q1", "a1", "q2", "a2", "q3", "a3"])
        assert app.chat.focused.message.content == "a1"
        await pilot.press("escape")
        assert app.chat.focused.id == "input"


async def test_editing_an_earlier_message_of_yours_sends_it_again(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = chat(store, "hi", "hello", "how are you", "fine")
    engine = FakeEngine(["新的回答"])
    app = make_app(store=store, engine=engine, session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.transcript.views) == 4)
        await focus_message(pilot, app, "hi")
        await pilot.press("e")
        assert app.chat.query_one("#input").text == "hi"
        await pilot.press(*" there", "enter")
        await wait_until(
            pilot, lambda: not app.chat.generating and contents(app) == ["hi there", "新的回答"]
        )
        assert "2/2" in header(app.chat.transcript.views[0])
        # the old message and its replies are kept as the other version
        roots = store.siblings(store.branch(session_id)[0])
        assert [m.content for m in roots] == ["hi", "hi there"]


async def test_editing_a_reply_saves_a_version_without_generating(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = chat(store, "hi", "hello")
    engine = FakeEngine(["should not be used"])
    app = make_app(store=store, engine=engine, session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.transcript.views) == 2)
        await focus_message(pilot, app, "hello")
        await pilot.press("enter")
        await pilot.press("backspace", "backspace", "backspace", "backspace", "backspace")
        await pilot.press(*"你好", "enter")
        await wait_until(pilot, lambda: contents(app) == ["hi", "你好"])
        assert engine.prompts == [] and "2/2" in header(app.chat.transcript.views[1])


async def test_regenerating_with_the_same_seed_reuses_the_replys_parameters(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = chat(store, "hi")
    engine = FakeEngine(["one", "two"])
    app = make_app(store=store, engine=engine, session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.transcript.views) == 1)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: not app.chat.generating and len(contents(app)) == 2)
        first = app.chat.transcript.views[-1].message
        await focus_message(pilot, app, "one")
        await pilot.press("R")
        await wait_until(pilot, lambda: not app.chat.generating and contents(app)[-1] == "two")
        assert engine.params[-1].seed == first.meta["seed"]
        assert engine.params[-1].temperature == first.meta["params"]["temperature"]
        assert "2/2" in header(app.chat.transcript.views[-1])


async def test_deleting_a_message_asks_then_takes_everything_below_it(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = chat(store, "q1", "a1", "q2", "a2")
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.transcript.views) == 4)
        await focus_message(pilot, app, "a1")
        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "2 message(s) below" in app.screen.question
        await pilot.press("y")
        await wait_until(pilot, lambda: contents(app) == ["q1"])
        assert [m.content for m in store.all_messages(session_id)] == ["q1"]


async def test_branching_opens_a_new_session_with_the_conversation_so_far(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = chat(store, "q1", "a1", "q2", "a2")
    app = make_app(store=store, engine=FakeEngine([]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.transcript.views) == 4)
        await focus_message(pilot, app, "a1")
        await pilot.press("b")
        await wait_until(pilot, lambda: app.chat.session.id != session_id)
        assert contents(app) == ["q1", "a1"] and app.chat.session.title == "chat ⑂"
        assert len(store.branch(session_id)) == 4  # the original is unchanged


async def test_copy_and_info_show_the_message_as_plain_text(tmp_path):
    store = Store(tmp_path / "c.db")
    session_id = chat(store, "hi")
    app = make_app(store=store, engine=FakeEngine(["[bold]曹操[/bold]"]), session_id=session_id)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.transcript.views) == 1)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: not app.chat.generating and len(contents(app)) == 2)
        await focus_message(pilot, app, "[bold]曹操[/bold]")
        await pilot.press("c")
        assert app.clipboard == "[bold]曹操[/bold]"
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageInfoScreen))
        text = app.screen.text
        assert "seed:" in text and "reply tokens:" in text and "model:" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, MessageInfoScreen))


def test_describing_a_message_with_nothing_recorded_says_so(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    message = store.add_message(session.id, Role.ASSISTANT, "hello", meta={"error": "[red]x"})
    text = describe_message(message, "诸葛亮")
    assert text.startswith("诸葛亮 · message") and "error: [red]x" in text


async def test_a_search_hit_opens_its_session_at_the_message_on_its_branch(tmp_path):
    from tui.search_screen import SearchScreen

    store = Store(tmp_path / "c.db")
    old = chat(store, *[f"第{i}句" for i in range(200)])
    hidden = store.add_message(
        old,
        Role.ASSISTANT,
        "曹操在另一个版本里",
        parent_id=store.branch(old)[4].id,
        make_leaf=False,
    )
    current = chat(store, "hi", "hello")
    app = make_app(store=store, engine=FakeEngine([]), session_id=current)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.transcript.views) == 2)
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await pilot.press(*"曹操", "enter")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.chat.session.id == old)
        await wait_until(pilot, lambda: getattr(app.chat.focused, "message", None) is not None)
        assert app.chat.focused.message.id == hidden.id  # on its branch, focused
        assert contents(app)[-1] == "曹操在另一个版本里"
        assert store.get_session(old).leaf_id == hidden.id


async def test_text_in_the_transcript_can_be_selected_with_the_mouse(tmp_path):
    """Textual's own selection (then Ctrl+C copies it) works on a message's text."""
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    store.add_message(session.id, Role.USER, "hello world of the three kingdoms")
    app = make_app(store=store, engine=FakeEngine([]), session_id=session.id)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.chat.transcript.views) == 1)
        body = app.chat.transcript.views[0].body
        await pilot.pause()
        await pilot.mouse_down(body, offset=(0, 0))
        await pilot.hover(body, offset=(11, 0))
        await pilot.mouse_up(body, offset=(11, 0))
        await pilot.pause()
        assert "hello world" in (app.screen.get_selected_text() or "")
