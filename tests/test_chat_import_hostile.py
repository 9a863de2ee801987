"""Chat import (sessions/chat_import/) on hostile files: each gives a session or one
ChatImportError sentence naming the file, in time, and a refused file leaves nothing behind.

The cases pinned here each gave a traceback or a hang before: a list where SillyTavern's
`extra.type` or our export's `parent_id`/`leaf_id` is a name or an id, a very long date, data
nested just under Python's recursion limit (kept a few levels deeper: not written, or read
back as nothing), and a device with no end.
The fuzzers put hostile values into the real fields of each format's fixture.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions.chat_import import (
    MAX_IMPORT_BYTES,
    ChatImportError,
    dates,
    import_chat,
    parse_time,
    read_chat,
)
from sessions.models import Role
from sessions.store import Store
from tui.cli import main

DATA = Path(__file__).parent / "data"
ST_HEAD = {"user_name": "You", "character_name": "Bot", "chat_metadata": {}}
OURS = {"format": "cosplay-session", "title": "t"}


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "chats.db")
    yield store
    store.close()


def write(tmp_path: Path, name: str, value) -> Path:
    path = tmp_path / name
    if isinstance(value, list):  # JSON Lines
        path.write_text("\n".join(json.dumps(line) for line in value), encoding="utf-8")
    else:
        path.write_text(json.dumps(value), encoding="utf-8")
    return path


def refused(store: Store, path: Path) -> str:
    with pytest.raises(ChatImportError) as caught:
        import_chat(store, path)
    message = str(caught.value)
    assert message.startswith(f"Cannot import {path}: ") and "\n" not in message
    assert store.list_sessions() == []
    return message


def test_a_list_or_object_as_a_sillytavern_message_type_is_no_system_type(store, tmp_path):
    lines = [
        ST_HEAD,
        {"mes": "a", "extra": {"type": ["narrator"]}},
        {"mes": "b", "extra": {"type": {"narrator": 1}}},
        {"mes": "c", "extra": {"type": "narrator"}},
    ]
    session, _ = import_chat(store, write(tmp_path, "types.jsonl", lines))
    roles = [m.role for m in store.all_messages(session.id)]
    assert roles == [Role.ASSISTANT, Role.ASSISTANT, Role.SYSTEM]


@pytest.mark.parametrize("bad", [[1], {"id": 1}])
def test_a_list_or_object_as_an_id_in_our_export_is_refused(store, tmp_path, bad):
    message = {"id": 1, "role": "user", "content": "x"}
    parent = {**OURS, "messages": [message, {**message, "id": 2, "parent_id": bad}]}
    assert f"message 2's parent {bad!r} is not in the file" in refused(
        store, write(tmp_path, "parent.json", parent)
    )
    leaf = {**OURS, "messages": [message], "leaf_id": bad}
    assert f"its leaf_id {bad!r} is not one of its messages" in refused(
        store, write(tmp_path, "leaf.json", leaf)
    )


def test_a_long_run_of_letters_as_a_date_is_read_in_linear_time(store, tmp_path):
    start = time.perf_counter()
    assert parse_time("x" * 1_000_000) is None  # before: hours (each letter rescanned the run)
    assert parse_time("June " * 200_000 + "19, 2023 2:20pm") is not None
    lines = [ST_HEAD, {"mes": "a", "send_date": "a" * 1_000_000 + " 19, 2023 2:20pm"}]
    import_chat(store, write(tmp_path, "date.jsonl", lines))
    assert time.perf_counter() - start < 10


OLD_MERIDIEM = re.compile(r"(\w+)\s(\d{1,2}),\s(\d{4})\s(\d{1,2}):(\d{1,2})(am|pm)", re.I)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(["June", "jun", "x", "é", "2", "19", "2023", " ", ",", ":", "am", "PM"]),
        max_size=16,
    ).map("".join)
)
def test_the_date_pattern_finds_what_sillytaverns_unanchored_pattern_finds(text):
    """The month must start a word now; the leftmost match always did, so nothing changes."""
    old, new = OLD_MERIDIEM.search(text), dates._MERIDIEM.search(text)
    assert (old and old.groups()) == (new and new.groups())


def deepest_accepted(tmp_path: Path, shape) -> int:
    """The deepest nesting `shape(depth)` may have for the reader to accept it."""
    low, high = 1, 5000
    while low < high:
        depth = (low + high + 1) // 2
        path = tmp_path / "probe.json"
        path.write_text(shape(depth), encoding="utf-8")
        try:
            read_chat(path)
            low = depth
        except ChatImportError as exc:
            assert "its JSON nests too deeply" in str(exc)
            high = depth - 1
    return low


def stored(store: Store, session_id: int) -> tuple:
    session = store.get_session(session_id)
    return session.settings, [m.meta for m in store.all_messages(session_id)]


def from_deeper_in_the_stack(frames: int, call):
    return call() if frames == 0 else from_deeper_in_the_stack(frames - 1, call)


@pytest.mark.parametrize(
    "shape",
    [
        lambda d: '{"internal": [["a", "b"]], "visible": [], "x": ' + "[" * d + "]" * d + "}",
        lambda d: json.dumps(ST_HEAD) + '\n{"mes": "a", "x": ' + "[" * d + "]" * d + "}",
        lambda d: (
            '{"format": "cosplay-session", "messages": [{"id": 1, "role": "user", '
            '"content": "a", "meta": {"x": ' + "[" * d + "]" * d + "}}]}"
        ),
    ],
    ids=["tgw", "st", "ours"],
)
def test_the_deepest_file_accepted_reads_back_whole_from_deep_in_the_stack(store, tmp_path, shape):
    """What a file says beyond our model is stored a few levels deeper than the file had it.
    Accepted just under Python's recursion limit (before: about 985 levels), it could not be
    written (a RecursionError traceback) or read back from a deeper stack, say the TUI's (the
    store reads JSON it cannot parse as {}: the settings and notes were lost)."""
    limit = deepest_accepted(tmp_path, shape)
    assert limit >= 50  # real chats nest under ten levels
    path = tmp_path / "deepest.json"
    path.write_text(shape(limit), encoding="utf-8")
    session, _ = import_chat(store, path)
    whole = stored(store, session.id)
    assert "x" in json.dumps(whole)  # the nested data is kept
    assert from_deeper_in_the_stack(600, lambda: stored(store, session.id)) == whole
    path.write_text(shape(limit + 1), encoding="utf-8")
    refused_store = Store(tmp_path / "refused.db")
    try:
        assert "its JSON nests too deeply" in refused(refused_store, path)
    finally:
        refused_store.close()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_without_end_is_refused_at_the_size_limit(store):
    message = refused(store, Path("/dev/zero"))
    assert f"more than the {MAX_IMPORT_BYTES // 2**20} MiB a chat import reads" in message


def test_a_pipe_is_still_read(store, tmp_path):
    """`cosplay sessions import <(…)`: a pipe has no size, and is read to its end."""
    readable, writable = os.pipe()
    text = (DATA / "st_chat.jsonl").read_bytes()

    def feed():
        with os.fdopen(writable, "wb") as pipe:
            pipe.write(text)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        session, chat = import_chat(store, f"/dev/fd/{readable}")
    finally:
        feeder.join()
        os.close(readable)
    assert chat.kind == "st" and session.length > 1


def test_cli_import_of_a_list_as_parent_exits_2(capsys, cosplay_home, tmp_path):
    message = {"id": 1, "role": "user", "content": "x", "parent_id": [0]}
    path = write(tmp_path, "parent.json", {**OURS, "messages": [message]})
    assert main(["sessions", "import", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("cosplay: Cannot import ") and "Traceback" not in err
    assert len(err.splitlines()) == 1


# --- fuzzing: a hostile value in a real field of each format --------------------------------------

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
any_text = st.text(st.characters(codec=None, categories=None), max_size=12)
FIELDS = [
    "mes", "name", "is_user", "is_system", "swipes", "swipe_id", "swipe_info", "send_date",
    "extra", "type", "user_name", "character_name", "create_date", "chat_metadata",
    "note_prompt", "note_interval", "note_depth", "note_position", "internal", "visible",
    "metadata", "versions", "current_version_index", "content", "visible_content", "timestamp",
    "id", "parent_id", "leaf_id", "role", "status", "meta", "title", "persona", "settings",
    "created_at", "messages",
]  # fmt: skip
hostile = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text | st.sampled_from(FIELDS),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | any_text, children, max_size=4)
    ),
    max_leaves=12,
)


def json_paths(value, path=()):
    """Every place in a JSON value: (the keys and indexes down to it)."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from json_paths(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from json_paths(child, (*path, i))


def replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(
        value.get(path[0]) if isinstance(value, dict) else value[path[0]], path[1:], new
    )
    return copy


def fixtures():
    from sessions.chat_export import export_session

    lines = [json.loads(line) for line in (DATA / "st_chat.jsonl").read_text("utf-8").splitlines()]
    docs = {
        "st": lines,
        "tgw": json.loads((DATA / "tgw_chat.json").read_text("utf-8")),
        "legacy": json.loads((DATA / "tgw_legacy.json").read_text("utf-8")),
    }
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"cosplay-fuzz-{os.getpid()}.db"
    store = Store(scratch)
    try:
        session, _ = import_chat(store, DATA / "st_chat.jsonl")
        docs["ours"] = json.loads(export_session(store, session.id, "json")[0])
    finally:
        store.close()
        for leftover in scratch.parent.glob(scratch.name + "*"):
            leftover.unlink()
    return {name: (doc, list(json_paths(doc))) for name, doc in docs.items()}


FIXTURES = fixtures()


@FUZZ
@given(
    name=st.sampled_from(sorted(FIXTURES)),
    where=st.integers(min_value=0),
    value=hostile,
    add=st.sampled_from([None, *FIELDS]),
)
def test_a_hostile_value_anywhere_in_a_real_file_imports_or_is_refused(
    tmp_path, name, where, value, add
):
    doc, paths = FIXTURES[name]
    path = paths[where % len(paths)]
    target = doc
    for step in path:
        target = target[step]
    if add is not None and isinstance(target, dict):  # a new key beside the real ones
        path = (*path, add)
    broken = replaced(doc, path, value)
    file = tmp_path / f"fuzz-{name}.{'jsonl' if name == 'st' else 'json'}"
    if name == "st" and isinstance(broken, list):
        file.write_text("\n".join(json.dumps(line) for line in broken), encoding="utf-8")
    else:
        file.write_text(json.dumps(broken), encoding="utf-8")
    store = Store(tmp_path / f"fuzz-{time.monotonic_ns()}.db")
    try:
        try:
            import_chat(store, file)
        except ChatImportError as exc:
            assert "\n" not in str(exc)
            assert store.list_sessions() == []
    finally:
        store.close()
