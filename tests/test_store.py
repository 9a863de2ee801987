import sqlite3

import pytest

from sessions.models import Role, Status
from sessions.store import Store, StoreError
from sessions.store_schema import SCHEMA_VERSION


def test_migrates_a_blank_file_to_the_current_schema(tmp_path):
    path = tmp_path / "blank.db"
    sqlite3.connect(path).close()  # an empty database file, user_version 0
    store = Store(path)
    version = store._db.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    Store(path).close()  # reopening runs no migration twice


def test_a_newer_schema_is_refused_with_a_clear_sentence(tmp_path):
    path = tmp_path / "future.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.close()
    with pytest.raises(StoreError, match="newer Cosplay"):
        Store(path)


def test_a_corrupt_file_is_refused_with_a_clear_sentence(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable Cosplay database"):
        Store(path)


def test_message_tree_branch_and_siblings(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session("t")
    user = store.add_message(session.id, Role.USER, "hi")
    first = store.add_message(session.id, Role.ASSISTANT, "one", parent_id=user.id)
    second = store.add_message(session.id, Role.ASSISTANT, "two", parent_id=user.id)
    # the regenerated reply is the leaf; the first one is kept as a sibling
    assert [m.content for m in store.branch(session.id)] == ["hi", "two"]
    assert [m.id for m in store.siblings(second)] == [first.id, second.id]
    follow = store.add_message(session.id, Role.USER, "more", parent_id=first.id)
    assert [m.content for m in store.branch(session.id)] == ["hi", "one", "more"]
    assert store.deepest_leaf(first.id) == follow.id
    assert store.get_message(first.id).content == "one"


def test_update_message_and_session_settings_round_trip(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session("t", settings={"params": {"temperature": 0.3}})
    reply = store.add_message(session.id, Role.ASSISTANT, "", status=Status.PARTIAL)
    store.update_message(reply.id, content="曹操曰", status=Status.COMPLETE, meta={"seed": 7})
    saved = store.get_message(reply.id)
    assert (saved.content, saved.status, saved.meta) == ("曹操曰", Status.COMPLETE, {"seed": 7})
    assert store.get_session(session.id).settings == {"params": {"temperature": 0.3}}
    store.set_setting("last_model", {"model": "x.gguf"})
    assert store.get_setting("last_model") == {"model": "x.gguf"}
    assert store.get_setting("missing", 5) == 5


def test_delete_session_removes_its_messages_only(tmp_path):
    store = Store(tmp_path / "c.db")
    keep, drop = store.create_session("keep"), store.create_session("drop")
    store.add_message(keep.id, Role.USER, "a")
    store.add_message(drop.id, Role.USER, "b")
    store.delete_session(drop.id)
    assert [s.title for s in store.list_sessions()] == ["keep"]
    assert store.all_messages(drop.id) == []
    assert len(store.all_messages(keep.id)) == 1
    with pytest.raises(StoreError, match="no session"):
        store.get_session(drop.id)


def test_a_parent_id_cycle_in_a_damaged_database_does_not_hang(tmp_path):
    import sqlite3

    store = Store(tmp_path / "c.db")
    session = store.create_session()
    first = store.add_message(session.id, Role.USER, "a")
    second = store.add_message(session.id, Role.ASSISTANT, "b", parent_id=first.id)
    store.close()
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("UPDATE messages SET parent_id = ? WHERE id = ?", (second.id, first.id))
    db.commit()
    db.close()
    store = Store(tmp_path / "c.db")
    branch = store.branch(session.id, second.id)
    assert [m.content for m in branch] == ["a", "b"]
    assert store.deepest_leaf(first.id) in (first.id, second.id)


# --- several processes, ids, old schemas ------------------------------------------------

_APPENDER = """
import sys, time
from pathlib import Path
from sessions.store import LEAF, Store
path, session, tag, count, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
store = Store(path)
while not go.exists():
    time.sleep(0.005)
for i in range(count):
    store.add_message(session, "user", f"{tag}{i}", parent_id=LEAF)
store.close()
"""


def test_two_processes_appending_to_one_session_chain_their_turns(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from sessions.store import LEAF

    path = tmp_path / "c.db"
    store = Store(path)
    session = store.create_session()
    first = store.add_message(session.id, Role.USER, "start", parent_id=LEAF)
    go, count = tmp_path / "go", 40
    root = Path(__file__).resolve().parent.parent
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, str(path), str(session.id), tag, str(count), str(go)],
            cwd=root,
        )
        for tag in ("a", "b")
    ]
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    messages = store.all_messages(session.id)
    assert len(messages) == 2 * count + 1
    parents = [m.parent_id for m in messages]
    assert len(set(parents)) == len(parents)  # no message has two children: no fork
    branch = store.branch(session.id)
    assert len(branch) == 2 * count + 1 and branch[0].id == first.id
    for tag in ("a", "b"):  # each process's own messages stay in order
        mine = [m.content for m in branch if m.content.startswith(tag)]
        assert mine == [f"{tag}{i}" for i in range(count)]


def test_leaf_appends_under_the_current_leaf_and_refuses_a_missing_session(tmp_path):
    from sessions.store import LEAF

    store = Store(tmp_path / "c.db")
    session = store.create_session()
    one = store.add_message(session.id, Role.USER, "one", parent_id=LEAF)
    two = store.add_message(session.id, Role.ASSISTANT, "two", parent_id=LEAF)
    assert (one.parent_id, two.parent_id) == (None, one.id)
    with pytest.raises(StoreError, match="no session 99"):
        store.add_message(99, Role.USER, "x", parent_id=LEAF)
    with pytest.raises(StoreError, match="no message 12345 in session"):
        store.add_message(session.id, Role.USER, "x", parent_id=12345)


def test_ids_of_deleted_sessions_and_messages_are_never_reused(tmp_path):
    store = Store(tmp_path / "c.db")
    keep, drop = store.create_session("keep"), store.create_session("drop")
    message = store.add_message(drop.id, Role.USER, "gone")
    store.delete_session(drop.id)
    again = store.create_session("new")
    assert again.id > drop.id
    assert store.add_message(again.id, Role.USER, "new").id > message.id
    store.close()
    assert Store(tmp_path / "c.db").create_session().id > again.id > keep.id


def _old_schema_db(path):
    """A database as Cosplay wrote it at schema 1 (plain INTEGER PRIMARY KEY ids)."""
    from sessions.store_schema import _migrate_1

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    _migrate_1(db)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO sessions VALUES (1, 'kept', 1.0, 2.0, 3, 'Seraphina', '{\"rounds\": 4}')"
    )
    db.execute("INSERT INTO sessions VALUES (5, 'second', 1.0, 1.5, NULL, '', '{}')")
    rows = [
        (1, 1, None, "user", "hi", "complete", "", 1.0, "{}"),
        (2, 1, 1, "assistant", "one", "complete", "S", 1.1, '{"seed": 7}'),
        (3, 1, 1, "assistant", "two", "cancelled", "S", 1.2, "{}"),
    ]
    db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("INSERT INTO settings VALUES ('last_session', '1')")
    db.close()


def test_an_old_schema_database_migrates_with_every_row_intact(tmp_path):
    path = tmp_path / "old.db"
    _old_schema_db(path)
    store = Store(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    schema = " ".join(r[0] for r in store._db.execute("SELECT sql FROM sqlite_master") if r[0])
    assert schema.count("AUTOINCREMENT") == 2
    assert store._db.execute("PRAGMA foreign_key_check").fetchall() == []
    kept = store.get_session(1)
    assert (kept.title, kept.persona, kept.settings, kept.leaf_id) == (
        "kept",
        "Seraphina",
        {"rounds": 4},
        3,
    )
    assert [m.content for m in store.branch(1)] == ["hi", "two"]
    assert [(m.id, m.depth) for m in store.branch(1)] == [(1, 0), (3, 1)]  # depths filled in
    assert store.get_message(2).depth == 1 and kept.length == 2
    assert [m.id for m in store.siblings(store.get_message(3))] == [2, 3]
    assert store.get_message(2).meta == {"seed": 7}
    assert store.get_setting("last_session") == 1
    assert [s.id for s in store.list_sessions()] == [1, 5]
    assert store.create_session().id == 6
    store.delete_session(1)  # foreign keys still cascade after the rebuild
    assert store.all_messages(1) == []
    store.close()


# --- locked, read-only, full: a healthy database is never called unreadable -------------


def test_a_database_locked_by_another_process_is_one_sentence(tmp_path, monkeypatch):
    import sessions.store as store_module

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "c.db"
    store = Store(path)
    session = store.create_session()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    store2 = Store(path)  # opening a WAL database still works
    with pytest.raises(StoreError) as error:
        store2.add_message(session.id, Role.USER, "hi")
    assert str(error.value) == (
        f"The database {path} is locked by another Cosplay process; close it and retry."
    )
    with pytest.raises(StoreError, match="locked by another Cosplay process"):
        store2.update_session(session.id, title="t")
    other.execute("COMMIT")
    store2.add_message(session.id, Role.USER, "hi")  # works once the lock is gone
    other.close()


def test_opening_a_database_locked_exclusively_says_locked_not_unreadable(tmp_path, monkeypatch):
    import sessions.store as store_module

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "c.db"
    other = sqlite3.connect(path, isolation_level=None)  # rollback journal, not yet WAL
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="locked by another Cosplay process"):
        Store(path)
    other.execute("ROLLBACK")
    other.close()


def test_a_full_disk_mid_write_is_a_sentence_and_loses_nothing(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    kept = store.add_message(session.id, Role.USER, "kept")
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # the disk fills up
    with pytest.raises(StoreError, match="is full; free some space"):
        store.add_message(session.id, Role.ASSISTANT, "x" * 200_000)
    assert store.get_session(session.id).leaf_id == kept.id
    assert [m.content for m in store.branch(session.id)] == ["kept"]


def test_a_folder_in_place_of_the_database_cannot_be_opened(tmp_path):
    path = tmp_path / "c.db"
    path.mkdir()
    with pytest.raises(StoreError) as error:
        Store(path)
    assert "Cannot open the database" in str(error.value)
    assert "move it aside" not in str(error.value)


@pytest.mark.parametrize(
    ("code", "text", "words"),
    [
        ("SQLITE_BUSY", "database is locked", "locked by another Cosplay process"),
        ("SQLITE_LOCKED_SHAREDCACHE", "database table is locked", "locked by another"),
        ("SQLITE_READONLY", "attempt to write a readonly database", "read-only"),
        ("SQLITE_READONLY_DBMOVED", "attempt to write a readonly database", "read-only"),
        ("SQLITE_FULL", "database or disk is full", "is full"),
        ("SQLITE_CANTOPEN", "unable to open database file", "Cannot open"),
        ("SQLITE_IOERR_WRITE", "disk I/O error", "check the disk"),
        ("SQLITE_NOTADB", "file is not a database", "move it aside"),
        ("SQLITE_CORRUPT", "database disk image is malformed", "move it aside"),
    ],
)
def test_sqlite_errors_are_told_apart_by_their_code(tmp_path, code, text, words):
    from sessions.store_schema import store_error

    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorname = code
    message = str(store_error(tmp_path / "c.db", exc))
    assert words in message and str(tmp_path / "c.db") in message
    if words != "move it aside":
        assert "move it aside" not in message and "not a readable" not in message


def test_a_read_only_database_is_not_called_unreadable(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes to read-only files")
    path = tmp_path / "c.db"
    Store(path).close()
    for file in tmp_path.iterdir():
        file.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StoreError) as error:
            Store(path).create_session()
        assert "read-only" in str(error.value) or "Cannot open" in str(error.value)
        assert "move it aside" not in str(error.value)
    finally:
        tmp_path.chmod(0o755)


# --- damaged or newer rows degrade one by one ---------------------------------------------


def test_damaged_and_newer_rows_degrade_per_row(tmp_path):
    path = tmp_path / "c.db"
    store = Store(path)
    good = store.create_session("good")
    store.add_message(good.id, Role.USER, "fine")
    bad = store.create_session("bad")
    user = store.add_message(bad.id, Role.USER, "hello")
    reply = store.add_message(bad.id, Role.ASSISTANT, "thinking…", parent_id=user.id)
    tool = store.add_message(bad.id, Role.ASSISTANT, "result", parent_id=reply.id)
    store.close()
    db = sqlite3.connect(path)
    db.execute(
        "UPDATE messages SET status = 'thinking', meta = 'not json' WHERE id = ?", (reply.id,)
    )
    db.execute("UPDATE messages SET role = 'tool', meta = '[1, 2]' WHERE id = ?", (tool.id,))
    db.execute("UPDATE messages SET content = ? WHERE id = ?", (b"\xff raw bytes", user.id))
    db.execute("UPDATE sessions SET settings = '{broken', leaf_id = 999 WHERE id = ?", (bad.id,))
    db.execute("INSERT INTO settings VALUES ('last_model', 'not json')")
    db.commit()
    db.close()

    store = Store(path)
    assert {s.title for s in store.list_sessions()} == {"good", "bad"}
    session = store.get_session(bad.id)
    assert session.settings == {} and session.leaf_id == tool.id  # the dangling leaf
    branch = store.branch(bad.id)
    assert [m.id for m in branch] == [user.id, reply.id, tool.id]
    assert branch[0].content == "\ufffd raw bytes"
    assert (branch[1].status, branch[1].meta) == (Status.ERROR, {"stored_status": "thinking"})
    assert (branch[2].role, branch[2].status) == (Role.ASSISTANT, Status.ERROR)
    assert branch[2].meta == {"stored_role": "tool"}
    assert store.siblings(branch[1]) == [branch[1]]
    assert store.get_setting("last_model", "default") == "default"
    assert [m.content for m in store.branch(good.id)] == ["fine"]  # the rest is untouched
    from sessions.store import LEAF

    follow = store.add_message(bad.id, Role.USER, "next", parent_id=LEAF)
    assert follow.parent_id == tool.id


# --- a long chat: read from the leaf up, as far as asked ---------------------------------


def _chain(store, session_id, n, parent=None):
    ids = []
    for i in range(n):
        role = Role.USER if i % 2 == 0 else Role.ASSISTANT
        parent = store.add_message(session_id, role, f"m{i}", parent_id=parent).id
        ids.append(parent)
    return ids


def test_branch_tail_reads_only_the_end_of_a_long_branch_and_pages_upwards(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    ids = _chain(store, session.id, 50)
    assert store.get_session(session.id).length == 50
    tail = store.branch_tail(session.id, limit=20)
    assert [m.id for m in tail] == ids[-20:]
    assert [m.depth for m in tail] == list(range(30, 50))
    above = store.branch_tail(session.id, tail[0].parent_id, limit=20)
    assert [m.id for m in above] == ids[10:30]
    assert [m.id for m in store.branch_tail(session.id, ids[5], limit=100)] == ids[:6]
    assert store.branch_tail(session.id, limit=0) == []
    assert store.branch(session.id) == store.branch_tail(session.id, limit=None)


def test_versions_of_a_screenful_come_in_one_query(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    root = store.add_message(session.id, Role.USER, "hi")
    first = store.add_message(session.id, Role.ASSISTANT, "a", parent_id=root.id)
    second = store.add_message(session.id, Role.ASSISTANT, "b", parent_id=root.id)
    other_root = store.add_message(session.id, Role.USER, "hello")  # a second version of hi
    versions = store.versions([root, first, second, other_root])
    assert versions == {root.id: (1, 2), first.id: (1, 2), second.id: (2, 2), other_root.id: (2, 2)}
    assert store.versions([]) == {}


def test_deepest_leaf_follows_the_newest_child_down(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    ids = _chain(store, session.id, 6)
    side = store.add_message(session.id, Role.ASSISTANT, "side", parent_id=ids[0])
    assert store.deepest_leaf(ids[0]) == side.id  # the newest child wins
    assert store.deepest_leaf(ids[1]) == ids[-1]
    assert store.deepest_leaf(ids[-1]) == ids[-1]


def test_token_counts_are_kept_per_tokenizer_and_forgotten_when_the_text_changes(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    a, b = (store.add_message(session.id, Role.USER, t) for t in ("one", "two"))
    store.save_token_counts("smol", {a.id: 3, b.id: 4, 999_999: 1})  # a missing id is skipped
    store.save_token_counts("other", {a.id: 5})
    assert store.token_counts([a.id, b.id], "smol") == {a.id: 3, b.id: 4}
    assert store.token_counts([a.id, b.id], "other") == {a.id: 5}
    store.update_message(b.id, status="complete")  # same text: still counted
    assert store.token_counts([b.id], "smol") == {b.id: 4}
    store.update_message(b.id, content="two, longer")
    assert store.token_counts([a.id, b.id], "smol") == {a.id: 3}
    store.delete_session(session.id)
    assert store._db.execute("SELECT COUNT(*) FROM token_counts").fetchone()[0] == 0


def test_deleting_a_message_takes_its_subtree_and_moves_the_branch_beside_it(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    hi = store.add_message(session.id, Role.USER, "hi")
    first = store.add_message(session.id, Role.ASSISTANT, "one", parent_id=hi.id)
    below = store.add_message(session.id, Role.USER, "more", parent_id=first.id)
    second = store.add_message(session.id, Role.ASSISTANT, "two", parent_id=hi.id)
    third = store.add_message(session.id, Role.ASSISTANT, "three", parent_id=hi.id)
    store.update_session(session.id, leaf_id=below.id)
    assert store.delete_message(second.id) == below.id  # not on the branch: it stays
    assert store.delete_message(first.id) == third.id  # on it: the version beside it
    assert [m.id for m in store.all_messages(session.id)] == [hi.id, third.id]
    assert store.delete_message(third.id) == hi.id  # no version left: the parent
    assert store.delete_message(hi.id) is None
    assert store.get_session(session.id).leaf_id is None and store.branch(session.id) == []


def test_forking_copies_the_branch_down_to_a_message_into_a_new_session(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session("三国", persona="诸葛亮", settings={"params": {"seed": 3}})
    ids = _chain(store, session.id, 5)
    store.add_message(
        session.id, Role.ASSISTANT, "another version", parent_id=ids[0], make_leaf=False
    )
    fork = store.fork_session(ids[2], "三国 (branch)")
    assert (fork.title, fork.persona, fork.settings) == (
        "三国 (branch)",
        "诸葛亮",
        {"params": {"seed": 3}},
    )
    copied = store.branch(fork.id)
    assert [m.content for m in copied] == ["m0", "m1", "m2"] and fork.length == 3
    assert len(store.all_messages(fork.id)) == 3  # the other version stays behind
    assert [m.content for m in store.branch(session.id)] == [f"m{i}" for i in range(5)]


def test_branch_below_pages_down_towards_the_leaf(tmp_path):
    store = Store(tmp_path / "c.db")
    session = store.create_session()
    ids = _chain(store, session.id, 30)
    m5 = store.get_message(ids[5])
    assert [m.id for m in store.branch_below(session.id, m5, 4)] == ids[6:10]
    assert [m.id for m in store.branch_below(session.id, m5, 100)] == ids[6:]
    assert store.branch_below(session.id, store.get_message(ids[-1]), 5) == []
    side = store.add_message(session.id, Role.ASSISTANT, "side", parent_id=ids[0], make_leaf=False)
    assert store.branch_below(session.id, side, 5) == []  # not on the current branch
