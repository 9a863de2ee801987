"""Full-text search across sessions: the trigram index (schema 4), its triggers and migration,
the LIKE path for one- and two-character words, the fallback without FTS5, the CLI and the
search modal."""

from __future__ import annotations

import json
import sqlite3

import pytest

from engines.fake import FakeEngine
from sessions import store_schema
from sessions.models import Role, SearchHit, Status
from sessions.store import Store
from tests.conftest import wait_until
from tui.cli import main

pytestmark = pytest.mark.skipif(
    not store_schema.fts_available(), reason="this SQLite has no FTS5 trigram tokenizer"
)


@pytest.fixture
def no_fts(monkeypatch):
    """Behave as on an SQLite without FTS5 (or older than 3.34: no trigram)."""
    monkeypatch.setattr(store_schema, "fts_available", lambda: False)


def index_matches_messages(store: Store) -> bool:
    """The index holds exactly the trigrams (term, message, position) of every user and
    assistant message as it is now: compared with an index built afresh from the table."""
    db = store._db
    for name in ("fresh", "fresh_terms", "index_terms"):
        db.execute(f"DROP TABLE IF EXISTS temp.{name}")
    db.execute("CREATE VIRTUAL TABLE temp.fresh USING fts5(content, tokenize='trigram')")
    db.execute(
        "INSERT INTO temp.fresh (rowid, content) SELECT id, content FROM messages"
        " WHERE role IN ('user', 'assistant')"
    )
    db.execute("CREATE VIRTUAL TABLE temp.fresh_terms USING fts5vocab(temp, fresh, instance)")
    db.execute(
        "CREATE VIRTUAL TABLE temp.index_terms USING fts5vocab(main, messages_fts, instance)"
    )
    ours = db.execute("SELECT term, doc, offset FROM temp.index_terms ORDER BY 1, 2, 3").fetchall()
    fresh = db.execute("SELECT term, doc, offset FROM temp.fresh_terms ORDER BY 1, 2, 3").fetchall()
    return ours == fresh


def found(store: Store, query: str, **kwargs) -> list[int]:
    return [hit.message_id for hit in store.search(query, **kwargs)]


def reference(store: Store, query: str) -> set[int]:
    """What search must find: user/assistant messages holding every word, ASCII letters in
    either case, nothing special about any character."""
    words = query.split()
    rows = store._db.execute("SELECT id, role, content FROM messages").fetchall()
    return {
        row["id"]
        for row in rows
        if row["role"] in ("user", "assistant")
        and all(w.lower() in row["content"].lower() for w in words)
    }


@pytest.fixture
def three_kingdoms(tmp_path):
    store = Store(tmp_path / "c.db")
    chibi = store.create_session("赤壁")
    m1 = store.add_message(chibi.id, Role.USER, "曹操说：今日东风已至。")
    m2 = store.add_message(chibi.id, Role.ASSISTANT, "孔明曰：曹操必败。", parent_id=m1.id)
    m3 = store.add_message(
        chibi.id, Role.SYSTEM, "曹操 曹操说 is only in the system prompt", parent_id=m2.id
    )
    peach = store.create_session("桃园")
    m4 = store.add_message(
        peach.id, Role.USER, "刘备与关羽、张飞结义于桃园。", meta={"note": "曹操说 in meta"}
    )
    m5 = store.add_message(peach.id, Role.ASSISTANT, "Hello World, said Liu Bei.", parent_id=m4.id)
    yield store, (chibi, peach), (m1, m2, m3, m4, m5)
    store.close()


# --- what matches --------------------------------------------------------------------


def test_chinese_queries_of_one_two_and_many_characters(three_kingdoms):
    store, _, (m1, m2, _m3, m4, _m5) = three_kingdoms
    assert found(store, "曹") == [m2.id, m1.id]  # newest first; not the system message
    assert found(store, "曹操") == [m2.id, m1.id]
    assert found(store, "曹操说") == [m1.id]  # meta and system prompts are not searched
    assert found(store, "刘备与关羽") == [m4.id]
    assert found(store, "孔") == [m2.id]
    assert found(store, "关羽 桃园") == [m4.id]  # every word, anywhere in the message
    assert found(store, "曹操 桃园") == []
    assert found(store, "东风已至 曹") == [m1.id]  # an index word and a LIKE word together


def test_words_of_three_or_more_characters_use_the_index(three_kingdoms, monkeypatch):
    store, _, (m1, *_rest) = three_kingdoms

    def no_scan(*args):
        raise AssertionError("scanned instead of using the index")

    monkeypatch.setattr(Store, "_search_scan", no_scan)
    assert store_schema.search_index_ready(store._db)
    assert found(store, "曹操说") == [m1.id]
    assert found(store, "东风已至 曹") == [m1.id]
    with pytest.raises(AssertionError, match="scanned"):
        store.search("曹操")  # two characters: no trigram index can find them


def test_english_is_case_insensitive(three_kingdoms):
    store, _, (*_rest, m5) = three_kingdoms
    for query in ("hello", "HELLO WORLD", "liu bei", "Lo wO", "d L"):
        assert found(store, query) == [m5.id], query
    assert found(store, "hello there") == []


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"yes"',
        '"unbalanced',
        "a OR b",
        "OR",
        "AND",
        "NOT z",
        "c*",
        "*",
        "50%",
        "%",
        "_",
        "e_c",
        "a_b",
        "NEAR(x, y)",
        "NEAR(x",
        "col:umn",
        "^start",
        "-x",
        "+",
        "(",
        "'",
        "\\",
        "\\%",
        "{x y}",
    ],
)
def test_operators_and_wildcards_are_literal_text(tmp_path, query):
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    for text in (
        'He said "yes" and "unbalanced — 50% of a_b OR c* NEAR(x, y) AND NOT z',
        "one cat, a b, 100 percent, col:umn ^start -x + ( ' \\ \\% {x y}",
        "snake_case",
        "plain words only",
    ):
        store.add_message(session.id, Role.USER, text)
    assert set(found(store, query)) == reference(store, query)


def test_an_empty_or_blank_query_finds_nothing(three_kingdoms):
    store = three_kingdoms[0]
    assert store.search("") == [] and store.search(" \n\u3000") == []
    assert store.search("曹", limit=0) == []


def test_hits_carry_where_the_message_is(three_kingdoms):
    store, (chibi, peach), (m1, m2, _m3, m4, _m5) = three_kingdoms
    reply = store.add_message(
        peach.id, Role.ASSISTANT, "关羽曰：兄长放心。", parent_id=m4.id, name="关羽"
    )
    hits = store.search("关羽")
    assert [h.message_id for h in hits] == [reply.id, m4.id]
    first = hits[0]
    assert isinstance(first, SearchHit)
    assert (first.session_id, first.session_title, first.role, first.name) == (
        peach.id,
        "桃园",
        Role.ASSISTANT,
        "关羽",
    )
    assert first.depth == 1 and hits[1].depth == 0
    assert first.created_at == store.get_message(reply.id).created_at
    assert found(store, "曹操", session_id=chibi.id) == [m2.id, m1.id]
    assert found(store, "曹操", session_id=peach.id) == []
    assert found(store, "曹操", limit=1) == [m2.id]
    assert found(store, "曹操说", session_id=peach.id) == []


def test_snippets_are_one_line_around_the_match_with_its_place(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session("[bold]title[/bold]")
    long_zh = (
        "天下大势，分久必合，合久必分。" * 10
        + "\n\n诸葛亮借东风[red]于赤壁[/red]。\n"
        + "周末" * 100
    )
    m = store.add_message(session.id, Role.USER, long_zh)
    for query in ("借东风", "借东"):  # the index's snippet(), then the scan's own
        (hit,) = store.search(query)
        assert hit.message_id == m.id
        assert "\n" not in hit.snippet and hit.snippet.startswith("…") and hit.snippet.endswith("…")
        assert len(hit.snippet) <= 60
        assert [hit.snippet[a:b] for a, b in hit.highlights] == [query]
        assert hit.session_title == "[bold]title[/bold]"  # stored text, never markup
    (hit,) = store.search("[red]")
    assert "[red]" in hit.snippet
    english = store.add_message(
        session.id, Role.USER, "x " * 60 + "The QUICK brown fox" + " y" * 60
    )
    for query in ("quick", "qu"):
        (hit,) = store.search(query)
        assert hit.message_id == english.id
        assert [hit.snippet[a:b] for a, b in hit.highlights] == [query.upper()]
    (hit,) = store.search("fox qu")
    assert sorted(hit.snippet[a:b] for a, b in hit.highlights) == ["QU", "fox"]


def test_a_limit_beyond_what_one_statement_takes(tmp_path):
    store = Store(tmp_path / "c.db")
    # SQLite's default bound on a statement's parameters is 32,766 (this build's may be more):
    # hold it to 999 so that 1,200 hits are too many for one statement.
    store._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    session = store.create_session()
    with store._transaction() as db:
        db.executemany(
            "INSERT INTO messages (session_id, role, content, created_at) VALUES (?, 'user', ?, ?)",
            ((session.id, f"第{i}回 曹操说", i) for i in range(1200)),
        )
    ids = [row[0] for row in store._db.execute("SELECT id FROM messages ORDER BY id")]
    for query in ("曹操说", "曹操"):  # the index, the scan
        hits = store.search(query, limit=100_000)
        assert [h.message_id for h in hits] == ids[::-1]
        assert all(h.snippet.endswith("曹操说") for h in hits)


# --- the index kept in step ------------------------------------------------------------


def test_triggers_follow_inserts_streaming_flushes_and_deletions(three_kingdoms):
    store, (chibi, peach), (m1, m2, _m3, m4, m5) = three_kingdoms
    assert index_matches_messages(store)
    reply = store.add_message(chibi.id, Role.ASSISTANT, "", status=Status.PARTIAL, parent_id=m2.id)
    text = "诸葛亮笑曰：东风既至，曹军必败于赤壁之下。The fleet burns tonight."
    for end in range(4, len(text) + 1, 4):  # as a streaming reply is flushed
        store.update_message(reply.id, content=text[:end])
    store.update_message(reply.id, content=text, status=Status.COMPLETE, meta={"seed": 1})
    assert index_matches_messages(store)
    assert found(store, "曹军必败") == [reply.id] and found(store, "FLEET BURNS") == [reply.id]
    store.update_message(reply.id, content="改写：蜀军凯旋。")  # an edit in place
    assert found(store, "曹军必败") == [] and found(store, "蜀军凯旋") == [reply.id]
    store.update_message(m1.id, status=Status.ERROR)  # status only: text untouched
    assert found(store, "东风已至") == [m1.id]
    assert index_matches_messages(store)

    store.delete_message(m2.id)  # and its subtree, by the foreign key's cascade
    assert found(store, "蜀军凯旋") == [] and found(store, "孔明曰") == []
    assert index_matches_messages(store)
    store.delete_session(peach.id)
    assert found(store, "刘备与关羽") == [] and found(store, "Hello") == []
    assert found(store, "东风已至") == [m1.id]
    assert index_matches_messages(store)
    store.delete_session(chibi.id)
    assert store._db.execute("SELECT COUNT(*) FROM messages_fts").fetchone()[0] == 0
    assert index_matches_messages(store)


def test_a_forked_session_is_searchable(three_kingdoms):
    store, (chibi, _), (m1, m2, *_rest) = three_kingdoms
    fork = store.fork_session(m2.id, "分支")
    hits = store.search("孔明曰")
    assert {h.session_id for h in hits} == {chibi.id, fork.id}
    assert index_matches_messages(store)


def _schema_3_database(path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    for migration in store_schema.MIGRATIONS[:3]:
        db.execute("BEGIN")
        migration(db)
        db.execute("COMMIT")
    db.execute("PRAGMA user_version = 3")
    db.execute(
        "INSERT INTO sessions (id, title, created_at, updated_at) VALUES (1, '旧对话', 1, 1)"
    )
    for i, (role, content) in enumerate(
        [
            ("system", "你是曹操。"),
            ("user", "曹操说了什么？"),
            ("assistant", "Old WORDS from 2023."),
        ]
    ):
        db.execute(
            "INSERT INTO messages (id, session_id, parent_id, role, content, created_at, depth)"
            " VALUES (?, 1, ?, ?, ?, ?, ?)",
            (i + 1, i or None, role, content, 10 + i, i),
        )
    db.execute("UPDATE sessions SET leaf_id = 3")
    db.close()


def test_a_schema_3_database_migrates_and_is_searchable(tmp_path):
    path = tmp_path / "old.db"
    _schema_3_database(path)
    store = Store(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == store_schema.SCHEMA_VERSION
    assert store_schema.search_index_ready(store._db)
    assert index_matches_messages(store)
    assert found(store, "曹操说") == [2] and found(store, "曹操") == [2]  # not the system one
    assert found(store, "old words") == [3]
    (hit,) = store.search("2023")
    assert (hit.session_id, hit.session_title, hit.depth) == (1, "旧对话", 2)
    store.add_message(1, Role.USER, "新消息：曹操说")
    assert len(found(store, "曹操说")) == 2
    store.close()


# --- without FTS5 ------------------------------------------------------------------------


def test_without_fts5_the_migration_passes_and_search_scans(tmp_path, no_fts):
    path = tmp_path / "old.db"
    _schema_3_database(path)
    store = Store(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == store_schema.SCHEMA_VERSION
    assert not store_schema.search_index_ready(store._db)
    assert (
        store._db.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'messages_fts%'"
        ).fetchall()
        == []
    )
    assert found(store, "曹操说") == [2] and found(store, "OLD words") == [3]
    assert found(store, "曹") == [2]
    message = store.add_message(1, Role.USER, "写入照常")
    store.update_message(message.id, content="写入照常，搜索照常")
    assert found(store, "搜索照常") == [message.id]
    store.close()


def test_an_index_is_rebuilt_after_a_cosplay_without_fts5_wrote(tmp_path, monkeypatch):
    path = tmp_path / "c.db"
    store = Store(path)
    session = store.create_session()
    kept = store.add_message(session.id, Role.USER, "孙权据江东")
    gone = store.add_message(session.id, Role.ASSISTANT, "周瑜曰：火攻", parent_id=kept.id)
    store.close()

    monkeypatch.setattr(store_schema, "fts_available", lambda: False)
    store = Store(path)  # it drops the triggers: its writes would fail on them
    assert store_schema._search_triggers(store._db) == set()
    store.delete_message(gone.id)
    store.update_message(kept.id, content="孙权据江东，周瑜为都督")
    added = store.add_message(session.id, Role.ASSISTANT, "鲁肃来访", parent_id=kept.id)
    assert found(store, "周瑜为都督") == [kept.id]  # scanned
    store.close()

    monkeypatch.undo()
    store = Store(path)  # FTS5 again: the index is built afresh
    assert store_schema.search_index_ready(store._db)
    assert index_matches_messages(store)
    assert found(store, "周瑜为都督") == [kept.id] and found(store, "鲁肃来访") == [added.id]
    assert found(store, "火攻") == []
    store.close()


def test_reopening_a_current_database_leaves_the_index_alone(tmp_path):
    path = tmp_path / "c.db"
    store = Store(path)
    session = store.create_session()
    store.add_message(session.id, Role.USER, "曹操说")
    store.close()
    store = Store(path)
    schema = store._db.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    store.close()
    store = Store(path)
    assert store._db.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema
    assert found(store, "曹操说") != []
    store.close()


# --- the command line ----------------------------------------------------------------------


@pytest.fixture
def home_with_chats(cosplay_home):
    store = Store(cosplay_home / "cosplay.db")
    chibi = store.create_session("赤壁之战")
    user = store.add_message(chibi.id, Role.USER, "孔明何在？曹操大军已至。")
    reply = store.add_message(
        chibi.id, Role.ASSISTANT, "亮在此。曹操必败，东风将至。", parent_id=user.id, name="诸葛亮"
    )
    other = store.create_session("English [b]chat[/b]")
    english = store.add_message(other.id, Role.USER, "Tell me about Cao Cao (曹操).")
    store.close()
    return chibi, other, user, reply, english


def test_cli_search_prints_one_line_per_hit(capsys, home_with_chats):
    chibi, other, user, reply, english = home_with_chats
    assert main(["sessions", "search", "曹操"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{other.id}:{english.id}  [English [b]chat[/b]]")
    assert lines[0].endswith("user: Tell me about Cao Cao (曹操).")
    assert lines[1].startswith(f"{chibi.id}:{reply.id}  [赤壁之战]")
    assert "诸葛亮: 亮在此。曹操必败，东风将至。" in lines[1]
    assert lines[2].startswith(f"{chibi.id}:{user.id}  [赤壁之战]")
    # the speaker column starts at the same terminal column on every line
    from tui.cli_sessions import _cells

    speakers = ["user: ", "诸葛亮: ", "user: "]
    assert (
        len({_cells(line[: line.index(s)]) for line, s in zip(lines, speakers, strict=True)}) == 1
    )

    assert main(["sessions", "search", "东风将至", "--session", str(chibi.id)]) == 0
    assert capsys.readouterr().out.startswith(f"{chibi.id}:{reply.id}  [赤壁之战]  诸葛亮: ")


def test_cli_search_json_and_no_hits(capsys, home_with_chats):
    chibi, _other, _user, reply, _english = home_with_chats
    assert main(["sessions", "search", "东风将至", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["session_id"] == chibi.id and record["message_id"] == reply.id
    assert record["session_title"] == "赤壁之战" and record["name"] == "诸葛亮"
    assert record["role"] == "assistant" and record["depth"] == 1
    start, end = record["highlights"][0]
    assert record["snippet"][start:end] == "东风将至"
    assert main(["sessions", "search", "曹操", "--limit", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1

    assert main(["sessions", "search", "司马懿"]) == 0
    assert capsys.readouterr().out == "No messages contain '司马懿'.\n"
    assert main(["sessions", "search", "司马懿", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["sessions", "search", '"a OR b*']) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["sessions", "search", ""], "TEXT must not be empty."),
        (["sessions", "search", "x", "--limit", "0"], "--limit must be at least 1"),
        (["sessions", "search", "x", "--session", "999"], "There is no session 999;"),
    ],
)
def test_cli_search_mistakes_are_one_sentence(capsys, home_with_chats, args, expected):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


# --- the search modal ----------------------------------------------------------------------


async def test_the_modal_finds_as_you_type_and_returns_the_chosen_hit(tmp_path):
    from tui.app import make_app
    from tui.search_screen import SearchScreen

    store = Store(tmp_path / "c.db")
    chibi = store.create_session("[red]赤壁[/red]")
    first = store.add_message(chibi.id, Role.USER, "曹操说：[bold]东风[/bold]已至")
    second = store.add_message(chibi.id, Role.ASSISTANT, "曹操必败", parent_id=first.id)
    chosen: list = []
    app = make_app(store=store, engine=FakeEngine([]))
    async with app.run_test(size=(110, 30)) as pilot:
        screen = SearchScreen(store)
        app.push_screen(screen, chosen.append)
        await wait_until(pilot, lambda: app.screen is screen)
        for key in "曹操":
            await pilot.press(key)
        await wait_until(pilot, lambda: screen.shown_query == "曹操")
        assert [h.message_id for h in screen.hits] == [second.id, first.id]
        await pilot.pause()
        shown = app.export_screenshot()
        assert "[red]赤壁[/red]" in shown and "[bold]东风[/bold]" in shown  # literal text
        await pilot.press("down", "down", "enter")  # into the list, to the second, choose
        await wait_until(pilot, lambda: chosen)
    (hit,) = chosen
    assert (hit.session_id, hit.message_id) == (chibi.id, first.id)
    assert store.deepest_leaf(hit.message_id) == second.id  # where the lead opens the branch


async def test_the_modal_debounces_enter_searches_now_and_escape_returns_none(tmp_path):
    from tui.app import make_app
    from tui.search_screen import SearchScreen

    store = Store(tmp_path / "c.db")
    session = store.create_session("s")
    message = store.add_message(session.id, Role.USER, "hello world")
    calls: list[str] = []
    search = store.search

    def counting(query, **kwargs):
        calls.append(query)
        return search(query, **kwargs)

    store.search = counting
    chosen: list = []
    app = make_app(store=store, engine=FakeEngine([]))
    async with app.run_test(size=(110, 30)) as pilot:
        screen = SearchScreen(store, debounce=30)
        app.push_screen(screen, chosen.append)
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.press(*"hello")  # no query until the typing pauses
        await pilot.pause(0.3)
        assert calls == [] and screen.shown_query is None
        await pilot.press("enter")  # Enter asks at once
        await wait_until(pilot, lambda: screen.shown_query == "hello")
        assert calls == ["hello"]
        await pilot.press("enter")  # Enter moved to the results: this one opens
        await wait_until(pilot, lambda: chosen)
        assert chosen[0].message_id == message.id

        screen = SearchScreen(store)
        app.push_screen(screen, chosen.append)
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.press(*"zzz")  # the default pause: it asks by itself
        await wait_until(pilot, lambda: screen.shown_query == "zzz")
        assert screen.hits == [] and calls[0] == "hello" and calls[-1] == "zzz"
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(chosen) == 2)
    assert chosen[1] is None
