import sqlite3

import pytest

from sessions.models import Role, Status
from sessions.store import SCHEMA_VERSION, Store, StoreError


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
