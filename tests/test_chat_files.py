"""Chats in and out: SillyTavern JSONL, text-generation-webui JSON (both forms), our own JSON,
md/txt transcripts; defensive, atomic import; `sessions delete --vacuum`.

The fixtures in tests/data/ are written exactly as the apps write them, checked against their
sources:
- st_chat.jsonl: SillyTavern (github.com/SillyTavern/SillyTavern, public/script.js at
  ba6f7b7a): `saveChat` (header {user_name, character_name, create_date, chat_metadata} + the
  chat; the server joins `JSON.stringify` lines with '\\n', src/endpoints/chats.js `/save`),
  `getFirstMessage` (greeting: alternate greetings as swipes, swipe_info []),
  `sendMessageAsUser` (user line), `saveReply` (reply keys in its order, swipe_info entries
  {send_date, gen_started, gen_finished, extra}), slash-commands.js `sendNarratorMessage`
  (/sys: name 'System', extra.type 'narrator') and `sendCommentMessage` (/comment: is_system),
  RossAscends-mods.js `humanizedDateTime` (create_date) and `getMessageTimeStamp` (send_date,
  'September 27, 2024 2:05pm'), utils.js `timestampToMoment` (the dates it reads).
- tgw_chat.json: text-generation-webui (github.com/oobabooga/text-generation-webui,
  modules/chat.py at 1dcde41d): `save_history` (json.dumps(indent=4, ensure_ascii=False)),
  `start_new_chat` (greeting row ['<|BEGIN-VISIBLE-CHAT|>', greeting], visible ['', escaped]),
  `chatbot_wrapper` (visible = html.escape with {{user}} replaced by the user's name;
  regenerate adds `versions` and `current_version_index`), `handle_edit_message_click` (a
  user message's versions), `handle_navigate_version_click`, `send_dummy_reply` (['', reply]
  rows), `add_message_attachment`, `get_current_timestamp` ('%b %d, %Y %H:%M').
- tgw_legacy.json: the same repository before 4b1804a4 (July 2023): `save_history` wrote
  json.dumps({'data': internal, 'data_visible': visible}, indent=2), visible not escaped;
  `load_history` still reads it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

import sessions.store
from sessions.chat_export import ST_KEY, TGW_KEY, export_session, st_send_date
from sessions.chat_import import MAX_IMPORT_BYTES, ChatImportError, import_chat, parse_time
from sessions.models import Role, Status
from sessions.store import LEAF, Store
from tui.cli import main

DATA = Path(__file__).parent / "data"
ST_FILE, TGW_FILE, TGW_LEGACY = (
    DATA / "st_chat.jsonl",
    DATA / "tgw_chat.json",
    DATA / "tgw_legacy.json",
)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "chats.db")
    yield store
    store.close()


def tree(store: Store, session_id: int) -> tuple[list[tuple], int | None]:
    """A session's tree with its ids replaced by positions: equal for identical trees."""
    messages = store.all_messages(session_id)
    place = {m.id: i for i, m in enumerate(messages)}
    shape = [
        (place.get(m.parent_id), m.role, m.name, m.status, m.content, m.meta, m.created_at)
        for m in messages
    ]
    return shape, place.get(store.get_session(session_id).leaf_id)


def talk(store: Store, session_id: int) -> list[tuple]:
    """Who said what under whom, leaving out what each app adds (its metadata, its clock)."""
    return [shape[:5] for shape in tree(store, session_id)[0]]


def round_trip(store: Store, session_id: int, fmt: str, tmp_path: Path) -> int:
    text, _ = export_session(store, session_id, fmt)
    out = tmp_path / f"again.{fmt}"
    out.write_text(text, encoding="utf-8")
    return import_chat(store, out)[0].id


def local(*when: int) -> float:
    return datetime(*when).timestamp()


# --- SillyTavern ---------------------------------------------------------------------------------


def test_sillytavern_chat_imports_with_swipes_as_versions(store):
    session, chat = import_chat(store, ST_FILE)
    assert chat.kind == "st" and chat.character == "Seraphina"
    branch = store.branch(session.id)
    assert [(m.role, m.name) for m in branch] == [
        (Role.ASSISTANT, "Seraphina"),
        (Role.USER, "阿明"),
        (Role.ASSISTANT, "Seraphina"),
        (Role.SYSTEM, "System"),  # /sys: a narrator
        (Role.SYSTEM, "Note"),  # /comment: is_system
        (Role.USER, "阿明"),
        (Role.ASSISTANT, "Seraphina"),
    ]
    greeting, user, reply = branch[:3]
    assert [s.content[:10] for s in store.siblings(greeting)] == ["*Seraphina", "*A soft gl"]
    assert greeting.content.startswith("*A soft glow")  # swipe_id 1 is the current version
    assert [s.content for s in store.siblings(reply)][2] == (
        "*她的眼中闪过一丝担忧。* 你昏迷了两天。先喝点汤吧，慢慢说。"
    )
    assert store.versions(branch)[reply.id] == (2, 3) and reply.parent_id == user.id
    assert user.created_at == local(2024, 9, 27, 14, 6)  # send_date, local time as written
    other = store.siblings(reply)[2]  # a swipe's own date is its swipe_info's
    assert other.created_at == local(2024, 9, 27, 14, 8)
    assert "[bold]ok[/bold]" in branch[5].content and "<b>moon</b>" in branch[5].content
    assert session.settings["user"] == {"name": "阿明", "description": ""}
    assert session.created_at == local(2024, 9, 27, 14, 5, 1)  # create_date


def test_sillytavern_round_trip_is_byte_identical_and_keeps_unknown_keys(store, tmp_path):
    session, _ = import_chat(store, ST_FILE)
    text, notes = export_session(store, session.id, "st")
    assert text == ST_FILE.read_text(encoding="utf-8") and notes == []
    lines = [json.loads(line) for line in text.split("\n")]
    assert lines[0]["chat_metadata"]["my_memory_extension"]["version"] == 2
    assert lines[3]["extra"]["reasoning"] == "用户受伤了，先安抚他。"
    assert lines[7]["my_extension_flag"] == {"pinned": True}
    again = round_trip(store, session.id, "st", tmp_path)
    assert tree(store, again) == tree(store, session.id)


def test_sillytavern_export_follows_our_branch_and_new_versions(store, tmp_path):
    session, _ = import_chat(store, ST_FILE)
    reply = store.branch(session.id)[2]
    first = store.siblings(reply)[0]
    store.update_session(session.id, leaf_id=first.id)  # switch to swipe 0 (a leaf)
    newest = store.add_message(session.id, Role.ASSISTANT, "新的回答。", parent_id=reply.parent_id)
    lines = [json.loads(x) for x in export_session(store, session.id, "st")[0].split("\n")]
    assert len(lines) == 4  # header, greeting, user, the new version
    last = lines[3]
    assert last["swipe_id"] == 3 and last["mes"] == "新的回答。" and len(last["swipes"]) == 4
    assert last["swipe_info"][:3] == json.loads(ST_FILE.read_text().split("\n")[3])["swipe_info"]
    assert set(last["swipe_info"][3]) == {"send_date", "gen_started", "gen_finished", "extra"}
    assert last["title"] == "" and last["gen_started"].endswith("Z")  # the line's keys, with
    assert last["send_date"] == st_send_date(newest.created_at)  # the new version's own date
    assert last["extra"] == {}  # and extra (no model: this one was added by hand)
    again = round_trip(store, session.id, "st", tmp_path)
    assert [s.content for s in store.siblings(store.branch(again)[-1])][3] == newest.content


def test_a_session_of_ours_exports_as_sillytavern_lines(store):
    session = store.create_session("三顾茅庐", settings={"user": {"name": "刘备"}})
    store.add_message(session.id, Role.USER, "先生在吗？")
    store.add_message(
        session.id,
        Role.ASSISTANT,
        "亮在此。",
        parent_id=LEAF,
        name="诸葛亮",
        meta={"model": "m.gguf"},
    )
    header, user, reply = (
        json.loads(x) for x in export_session(store, session.id, "st")[0].split("\n")
    )
    assert header["user_name"] == "刘备" and header["character_name"] == "诸葛亮"
    assert set(header) == {"user_name", "character_name", "create_date", "chat_metadata"}
    assert user == {
        "name": "刘备",
        "is_user": True,
        "is_system": False,
        "send_date": user["send_date"],
        "mes": "先生在吗？",
        "extra": {"isSmallSys": False},
    }
    assert parse_time(user["send_date"]) is not None
    assert reply["swipes"] == ["亮在此。"] and reply["swipe_id"] == 0
    assert reply["extra"] == {"api": "cosplay", "model": "m.gguf"}


def test_sillytavern_dates_in_every_form_its_reader_knows():
    assert parse_time("June 19, 2023 2:20pm") == local(2023, 6, 19, 14, 20)
    assert parse_time("June 19, 2023 12:05am") == local(2023, 6, 19, 0, 5)
    assert parse_time("2024-7-12@01h31m37s") == local(2024, 7, 12, 1, 31, 37)
    assert parse_time("2024-6-5 @14h 56m 50s 682ms") == local(2024, 6, 5, 14, 56, 50)
    assert parse_time("2024-09-27T06:07:02.114Z") == pytest.approx(1727417222.114)
    assert parse_time(1727417345123) == pytest.approx(1727417345.123)
    assert parse_time("Sep 27, 2024 14:05") == local(2024, 9, 27, 14, 5)
    assert parse_time("") is None and parse_time("yesterday") is None and parse_time(True) is None


# --- text-generation-webui -----------------------------------------------------------------------


def test_tgw_chat_imports_greeting_versions_and_raw_text(store):
    session, chat = import_chat(store, TGW_FILE)
    assert chat.kind == "tgw"
    branch = store.branch(session.id)
    assert [m.role for m in branch] == [
        Role.ASSISTANT,  # the greeting row: no user message
        Role.USER,
        Role.ASSISTANT,
        Role.USER,
        Role.ASSISTANT,
        Role.ASSISTANT,  # a "dummy reply" row ['', text]
        Role.USER,
        Role.ASSISTANT,
    ]
    greeting = branch[0]
    assert greeting.parent_id is None and greeting.meta[TGW_KEY]["greeting"] is True
    versions = store.versions(branch)
    assert versions[branch[2].id] == (2, 3) and versions[branch[3].id] == (2, 2)
    assert "{{user}}" in branch[2].content  # internal (raw), not visible (阿明, escaped)
    assert branch[3].content == "那曹操呢？他的大军已到新野 <now>。"  # unescaped
    assert store.siblings(branch[3])[0].content == "那曹操呢？"
    assert branch[2].created_at == local(2024, 9, 27, 14, 7)


def test_tgw_round_trip_is_byte_identical(store, tmp_path):
    session, _ = import_chat(store, TGW_FILE)
    text, notes = export_session(store, session.id, "tgw")
    assert text == TGW_FILE.read_text(encoding="utf-8") and notes == []
    again = round_trip(store, session.id, "tgw", tmp_path)
    assert tree(store, again) == tree(store, session.id)


def test_tgw_export_escapes_new_text_and_adds_versions(store):
    session, _ = import_chat(store, TGW_FILE)
    reply = store.branch(session.id)[-1]
    store.add_message(
        session.id, Role.ASSISTANT, 'A "new" <reply> & more', parent_id=reply.parent_id
    )
    history = json.loads(export_session(store, session.id, "tgw")[0])
    assert history["internal"][-1][1] == 'A "new" <reply> & more'
    assert history["visible"][-1][1] == "A &quot;new&quot; &lt;reply&gt; &amp; more"
    entry = history["metadata"]["assistant_4"]
    assert entry["current_version_index"] == 1 and len(entry["versions"]) == 2
    assert entry["versions"][0]["content"] == reply.content
    assert entry["model_name"] == "Qwen2.5-7B-Instruct-Q4_K_M"


def test_tgw_legacy_form_imports_and_round_trips(store, tmp_path):
    session, chat = import_chat(store, TGW_LEGACY)
    assert chat.kind == "tgw-legacy"
    branch = store.branch(session.id)
    assert [m.role for m in branch] == [Role.ASSISTANT] + [Role.USER, Role.ASSISTANT] * 2
    assert branch[0].content == "你好，我是貂蝉。今晚月色真美。" and branch[0].parent_id is None
    assert branch[2].content == "只因心中有事，{{user}}可愿听我一说？"  # `data`, not data_visible
    history = json.loads(export_session(store, session.id, "tgw")[0])
    legacy = json.loads(TGW_LEGACY.read_text(encoding="utf-8"))
    assert history["internal"] == legacy["data"]
    assert history["visible"][1][1] == "只因心中有事，You可愿听我一说？"  # its visible text kept
    again = round_trip(store, session.id, "tgw", tmp_path)  # now in the current form
    assert talk(store, again) == talk(store, session.id)


def test_tgw_rows_above_an_early_greeting_are_example_dialogue(store, tmp_path):
    """TGW's first versions put the card's example dialogue above the greeting, unseen."""
    path = tmp_path / "old.json"
    data = [["Hi", "Hello"], ["<|BEGIN-VISIBLE-CHAT|>", "欢迎。"], ["你好", "你好呀"]]
    path.write_text(
        json.dumps({"data": data, "data_visible": [["", "欢迎。"], ["你好", "你好呀"]]})
    )
    session, _ = import_chat(store, path)
    assert [m.content for m in store.branch(session.id)] == ["欢迎。", "你好", "你好呀"]
    assert session.settings[TGW_KEY]["hidden_rows"] == [["Hi", "Hello"]]


# --- our own JSON, md, txt -----------------------------------------------------------------------


def branched(store: Store) -> int:
    session = store.create_session("分支", persona="诸葛亮", settings={"params": {"seed": 4}})
    sid = session.id
    hi = store.add_message(sid, Role.USER, "先生安好？")
    store.add_message(sid, Role.ASSISTANT, "甚好。", parent_id=hi.id, name="诸葛亮")
    second = store.add_message(
        sid, Role.ASSISTANT, "尚可。", parent_id=hi.id, name="诸葛亮", meta={"seed": 7}
    )
    deeper = store.add_message(sid, Role.USER, "愿闻其详。", parent_id=second.id)
    store.add_message(
        sid, Role.ASSISTANT, "天下大势……", parent_id=deeper.id, status=Status.CANCELLED
    )
    edited = store.add_message(sid, Role.USER, "先生安好？(edited)")
    store.add_message(sid, Role.ASSISTANT, "好。", parent_id=edited.id, status=Status.ERROR)
    store.update_session(sid, leaf_id=deeper.id)  # the current branch: the middle one
    return sid


def test_our_json_round_trip_keeps_the_whole_tree(store, tmp_path):
    sid = branched(store)
    text, _ = export_session(store, sid, "json")
    record = json.loads(text)
    assert record["format"] == "cosplay-session" and len(record["messages"]) == 7
    assert set(record["messages"][0]) == {
        "id", "parent_id", "role", "name", "status", "content", "meta", "created_at"
    }  # fmt: skip
    again = round_trip(store, sid, "json", tmp_path)
    assert again != sid
    assert tree(store, again) == tree(store, sid)
    before, after = store.get_session(sid), store.get_session(again)
    assert (after.title, after.persona, after.settings) == (
        before.title,
        before.persona,
        before.settings,
    )
    assert after.length == before.length == 3


def test_md_and_txt_are_readable_transcripts_with_chinese_intact(store):
    sid = branched(store)
    md = export_session(store, sid, "md")[0]
    txt = export_session(store, sid, "txt")[0]
    for text in (md, txt):
        assert "先生安好？" in text and "尚可。" in text and "愿闻其详。" in text
        assert "甚好。" not in text  # another version: not on the current branch
        assert "诸葛亮" in text and "You" in text
    assert md.startswith("# 分支") and "version 2/2" in md
    assert "] 诸葛亮 (version 2/2):\n尚可。" in txt


def test_cli_export_formats_and_import(capsys, cosplay_home, tmp_path):
    assert main(["sessions", "import", str(ST_FILE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Imported st_chat.jsonl (SillyTavern chat) as session 1: 10 messages")
    assert len(out.splitlines()) == 1
    target = tmp_path / "out.jsonl"
    assert main(["sessions", "export", "1", "--format", "st", "-o", str(target)]) == 0
    assert target.read_bytes() == ST_FILE.read_bytes()
    assert main(["sessions", "import", str(TGW_FILE), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record == {
        "id": 2,
        "title": "先生，荆州该如何取？",
        "format": "tgw",
        "persona": "",
        "messages": 11,
        "branch_length": 8,
    }
    for fmt in ("md", "txt", "json", "tgw"):
        assert main(["sessions", "export", "2", "--format", fmt]) == 0
        assert "荆州" in capsys.readouterr().out


def test_an_imported_chat_joins_the_persona_it_names(capsys, cosplay_home):
    assert main(["personas", "import", str(DATA / "Seraphina.png")]) == 0
    assert main(["sessions", "import", str(ST_FILE), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{\n") :])["persona"] == "Seraphina"


def test_a_title_from_a_file_cannot_drive_the_terminal(capsys, cosplay_home, tmp_path):
    path = tmp_path / "\x1b[31mred\x07.jsonl"
    path.write_bytes(ST_FILE.read_bytes())
    assert main(["sessions", "import", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "?[31mred?" in out


# --- defensive import ----------------------------------------------------------------------------

ST_HEAD = '{"user_name":"You","character_name":"Bot","create_date":"2024-09-27@14h05m01s","chat_metadata":{}}\n'
BAD_INPUTS = [
    ("empty", b"  \n", "it is empty"),
    ("latin1", "café".encode("latin-1"), "it is not UTF-8 text"),
    ("prose", "你好，这不是聊天记录。".encode(), "it is not a chat file (expected a SillyTavern"),
    ("cut", b'{"internal": [["hi", "hello"]', "it is not valid JSON (Expecting"),
    ("list", b"[1, 2, 3]", "it is JSON but not a chat"),
    ("other", b'{"messages_v9": []}', "it is JSON but not a chat"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "its JSON nests too deeply"),
    ("st-line", (ST_HEAD + '{"mes":"a","is_user":true}\n{"mes": "b",').encode(), "line 3 is not valid JSON"),
    ("st-mes", (ST_HEAD + '{"name":"Bot","mes":5}').encode(), "line 2 has a number as its 'mes', not text"),
    ("st-nomes", (ST_HEAD + '{"name":"Bot"}').encode(), "line 2 has no 'mes' text"),
    ("st-list", (ST_HEAD + '["a"]').encode(), "line 2 is a list, not a message"),
    ("st-user", (ST_HEAD + '{"mes":"a","is_user":"yes"}').encode(), "line 2's is_user is text, not true/false"),
    ("st-swipes", (ST_HEAD + '{"mes":"a","swipes":"a"}').encode(), "line 2's swipes is text, not a list"),
    ("st-swipe", (ST_HEAD + '{"mes":"a","swipes":["a",7]}').encode(), "line 2's swipes hold a number"),
    ("st-id", (ST_HEAD + '{"mes":"a","swipes":["a","b"],"swipe_id":2}').encode(), "swipe_id 2 is outside its 2 swipes"),
    ("st-head", b'{"user_name":["x"],"chat_metadata":{}}', "the header's user_name is a list, not text"),
    ("tgw-rows", b'{"internal": "hi", "visible": []}', "its 'internal' is text, not a list of [user, assistant] rows"),
    ("tgw-row", b'{"internal": [["a", "b"], ["c"]], "visible": []}', "'internal' row 1 is not a [user, assistant] pair"),
    ("tgw-meta", b'{"internal": [["a","b"]], "visible": [], "metadata": []}', "its 'metadata' is a list, not an object"),
    ("tgw-entry", b'{"internal": [["a","b"]], "visible": [], "metadata": {"assistant_0": 3}}', "metadata 'assistant_0' is a number"),
    ("tgw-version", b'{"internal": [["a","b"]], "visible": [], "metadata": {"assistant_0": {"versions": [{"content": 1}]}}}', "metadata 'assistant_0' version 0 has no text content"),
    ("tgw-index", b'{"internal": [["a","b"]], "visible": [], "metadata": {"assistant_0": {"versions": [{"content": "b"}], "current_version_index": 4}}}', "current_version_index 4 is outside"),
    ("legacy-rows", b'{"data": {}, "data_visible": []}', "its 'data' is an object, not a list"),
    ("ours-role", b'{"format": "cosplay-session", "title": "t", "messages": [{"id": 1, "role": "wizard", "content": "x"}]}', "message 1 has role 'wizard'"),
    ("ours-parent", b'{"format": "cosplay-session", "title": "t", "messages": [{"id": 1, "parent_id": 99, "role": "user", "content": "x"}]}', "message 1's parent 99 is not in the file"),
    ("ours-twice", b'{"format": "cosplay-session", "messages": [{"id": 1, "role": "user", "content": "x"}, {"id": 1, "role": "user", "content": "y"}]}', "message id 1 appears twice"),
    ("ours-content", b'{"format": "cosplay-session", "messages": [{"id": 1, "role": "user", "content": ["x"]}]}', "message 1's content is a list, not text"),
    ("ours-leaf", b'{"format": "cosplay-session", "messages": [], "leaf_id": 5}', "its leaf_id 5 is not one of its messages"),
    ("ours-messages", b'{"format": "cosplay-session", "messages": {}}', "its 'messages' is an object, not a list"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_files_give_one_sentence_naming_the_file(store, tmp_path, name, data, expected):
    path = tmp_path / f"{name}.json"
    path.write_bytes(data)
    with pytest.raises(ChatImportError) as caught:
        import_chat(store, path)
    message = str(caught.value)
    assert message.startswith(f"Cannot import {path}: ") and message.endswith("."), message
    assert expected in message and "\n" not in message
    assert store.list_sessions() == []


@pytest.mark.parametrize(
    ("name", "data", "expected"), BAD_INPUTS[::4], ids=[b[0] for b in BAD_INPUTS[::4]]
)
def test_cli_import_of_a_bad_file_exits_2_with_one_line(
    capsys, cosplay_home, tmp_path, name, data, expected
):
    path = tmp_path / f"{name}.json"
    path.write_bytes(data)
    assert main(["sessions", "import", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("cosplay: Cannot import ") and expected in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_folder_and_huge_files_are_refused_before_reading(store, tmp_path):
    with pytest.raises(ChatImportError, match="there is no such file"):
        import_chat(store, tmp_path / "nowhere.jsonl")
    with pytest.raises(ChatImportError, match="it is a folder, not a chat file"):
        import_chat(store, tmp_path)
    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as f:  # sparse: no disk used, and nothing is read
        f.truncate(MAX_IMPORT_BYTES + 1)
    with pytest.raises(ChatImportError, match="more than the 100 MiB a chat import reads"):
        import_chat(store, huge)


def test_import_is_one_transaction(store, monkeypatch):
    """A failure while writing (here: the 6th message) leaves no session and no message."""
    real = sessions.store.json

    class Failing:
        calls = 0

        @staticmethod
        def dumps(*args, **kwargs):
            Failing.calls += 1
            if Failing.calls == 7:  # the session's settings, then 6 messages
                raise OSError("disk full")
            return real.dumps(*args, **kwargs)

        loads = staticmethod(real.loads)

    monkeypatch.setattr(sessions.store, "json", Failing)
    with pytest.raises(OSError, match="disk full"):
        import_chat(store, ST_FILE)
    monkeypatch.setattr(sessions.store, "json", real)
    assert store.list_sessions() == []
    assert store._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    with pytest.raises(ValueError):  # a bad message at the end: also nothing written
        store.insert_tree(
            title="t", messages=[{"role": "user", "content": "a"}, {"role": "x", "content": "b"}]
        )
    assert store.list_sessions() == []


# --- delete --vacuum ------------------------------------------------------------------------------


def test_vacuum_leaves_no_deleted_text_in_the_files(tmp_path):
    secret = "只有这里才有的秘密 XYZZY-4711"
    store = Store(tmp_path / "cosplay.db")
    store._db.execute("PRAGMA secure_delete = OFF")  # some SQLite builds overwrite on delete
    kept = store.create_session("kept").id
    store.add_message(kept, Role.USER, "留下的")
    gone = store.create_session("gone").id
    store.add_message(gone, Role.USER, secret)
    store.delete_session(gone)
    assert any(secret.encode() in f.read_bytes() for f in db_files(tmp_path))  # still there
    store.vacuum()
    assert not any(secret.encode() in f.read_bytes() for f in db_files(tmp_path))
    assert [m.content for m in store.branch(kept)] == ["留下的"]
    store.close()


def test_cli_delete_vacuum(capsys, cosplay_home, tmp_path):
    secret = "只有这里才有的秘密 XYZZY-4711"
    record = json.loads(export_session_text(cosplay_home, None))
    record["messages"] = [{"id": 1, "role": "user", "content": secret}]
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    assert main(["sessions", "import", str(path)]) == 0
    assert main(["sessions", "delete", "2", "--vacuum"]) == 0
    assert capsys.readouterr().out.endswith("Deleted session 2 and vacuumed the database.\n")
    assert not any(secret.encode() in f.read_bytes() for f in db_files(cosplay_home))


def export_session_text(home: Path, session_id: int | None) -> str:
    """A session of `home`'s database (None: a new empty one) as our JSON."""
    home.mkdir(parents=True, exist_ok=True)
    store = Store(home / "cosplay.db")
    try:
        if session_id is None:
            session_id = store.create_session("空").id
        return export_session(store, session_id, "json")[0]
    finally:
        store.close()


def db_files(home: Path) -> list[Path]:
    return [p for p in home.iterdir() if p.name.startswith("cosplay.db") and p.is_file()]


def test_headerless_sillytavern_group_lines_import(store, tmp_path):
    path = tmp_path / "group.jsonl"
    lines = [
        {"name": "孔明", "is_user": False, "mes": "诸位请坐。", "send_date": 1727417345123},
        {"name": "刘备", "is_user": True, "mes": "先生请讲。"},
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    session, _ = import_chat(store, path)
    branch = store.branch(session.id)
    assert [(m.role, m.name) for m in branch] == [(Role.ASSISTANT, "孔明"), (Role.USER, "刘备")]
    assert branch[0].meta[ST_KEY]["line"]["name"] == "孔明"
    assert os.fspath(path).endswith(".jsonl")


def test_exports_say_what_a_format_cannot_hold(store):
    session, _ = import_chat(store, ST_FILE)  # has a narrator and a comment
    reply, leaf = store.branch(session.id)[2], session.leaf_id
    store.add_message(session.id, Role.USER, "另一条路", parent_id=store.siblings(reply)[0].id)
    store.update_session(session.id, leaf_id=leaf)  # back on the branch with the narrator
    history, notes = export_session(store, session.id, "tgw")
    assert "窗外传来" not in history
    assert any("2 system/narrator message(s) were left out" in note for note in notes)
    assert any("1 message(s) below earlier versions" in note for note in notes)


def test_the_earlier_branch_only_json_export_imports(store, tmp_path):
    """`sessions show --json` / the old `export --format json`: id, title, the branch."""
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps(
            {
                "id": 9,
                "title": "旧导出",
                "persona": "",
                "created_at": 1727417100.0,
                "updated_at": 1727417200.0,
                "leaf_id": 12,
                "messages": [
                    {"id": 11, "parent_id": None, "role": "user", "name": "", "content": "在吗",
                     "status": "complete", "created_at": 1727417100.0, "meta": {}},
                    {"id": 12, "parent_id": 11, "role": "assistant", "name": "", "content": "在。",
                     "status": "complete", "created_at": 1727417110.0, "meta": {"seed": 1}},
                ],
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )  # fmt: skip
    session, chat = import_chat(store, path)
    assert chat.kind == "json" and session.title == "旧导出"
    assert [m.content for m in store.branch(session.id)] == ["在吗", "在。"]


def test_sillytavern_hidden_lines_stay_in_the_chat_but_out_of_the_prompt(store, tmp_path):
    """SillyTavern builds its prompt from the lines that are not is_system (hidden messages,
    comments); an imported chat keeps them on screen and out of the prompt, and exports them
    back as they were."""
    from engines.base import GenerationParams
    from engines.fake import FakeEngine
    from sessions.prompt import plan_prompt

    lines = [
        {"user_name": "阿明", "character_name": "Seraphina", "create_date": "2024-9-27@14h05m00s"},
        {"name": "阿明", "is_user": True, "is_system": False, "mes": "你好", "send_date": ""},
        {
            "name": "阿明",
            "is_user": True,
            "is_system": True,
            "mes": "（藏起来的一句）",
            "send_date": "",
        },
        {
            "name": "Seraphina",
            "is_user": False,
            "is_system": False,
            "mes": "欢迎。",
            "send_date": "",
        },
    ]
    path = tmp_path / "hidden.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    session, _ = import_chat(store, path)
    branch = store.branch(session.id)
    assert [m.content for m in branch] == ["你好", "（藏起来的一句）", "欢迎。"]
    plan = plan_prompt(store.get_session(session.id), branch, FakeEngine([]), GenerationParams())
    contents = [m["content"] for m in plan.messages]
    assert "你好" in contents and "（藏起来的一句）" not in contents
    text, _ = export_session(store, session.id, "st")
    assert json.loads(text.splitlines()[2])["is_system"] is True


# --- the Author's Note in SillyTavern's chat_metadata ---------------------------------------------

NOTE_HEADER = {
    "user_name": "阿明",
    "character_name": "Bot",
    "create_date": "2024-09-27@14h05m01s",
    "chat_metadata": {
        "note_prompt": "[b]天色已晚[/b]，{{char}}该点灯了。",
        "note_interval": 3,
        "note_position": 2,
        "note_depth": 2,
        "note_role": 1,
        "tainted": True,
    },
}
NOTE_LINE = {"name": "阿明", "is_user": True, "is_system": False, "mes": "你好", "extra": {}}


def st_file(tmp_path: Path, header: dict) -> Path:
    path = tmp_path / "note.jsonl"
    lines = [header, NOTE_LINE]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    return path


def test_the_fixture_note_imports_at_sillytavern_defaults(store):
    session, _ = import_chat(store, ST_FILE)
    assert session.settings["author_note"] == {
        "text": "",
        "interval": 1,
        "depth": 4,
        "position": "in_chat",
        "role": "system",
    }


def test_an_author_note_imports_edits_and_exports_back_into_chat_metadata(store, tmp_path):
    session, _ = import_chat(store, st_file(tmp_path, NOTE_HEADER))
    assert session.settings["author_note"] == {
        "text": "[b]天色已晚[/b]，{{char}}该点灯了。",
        "interval": 3,
        "depth": 2,
        "position": "before_prompt",
        "role": "user",
    }
    text, _ = export_session(store, session.id, "st")
    assert json.loads(text.split("\n")[0]) == NOTE_HEADER  # unchanged: written back as it was
    edited = {
        "text": "雨停了。",
        "interval": 0,
        "depth": 7,
        "position": "in_prompt",
        "role": "assistant",
    }
    store.update_session(session.id, settings={**session.settings, "author_note": edited})
    text, _ = export_session(store, session.id, "st")
    metadata = json.loads(text.split("\n")[0])["chat_metadata"]
    assert metadata == {
        "note_prompt": "雨停了。",
        "note_interval": 0,
        "note_position": 0,
        "note_depth": 7,
        "note_role": 2,
        "tainted": True,  # SillyTavern's other keys stay
    }
    again = store.get_session(round_trip(store, session.id, "st", tmp_path))
    assert again.settings["author_note"] == edited


def test_a_damaged_note_in_a_file_imports_as_defaults_and_a_new_chat_exports_its_own(
    store, tmp_path
):
    header = {**NOTE_HEADER, "chat_metadata": {"note_prompt": ["x"], "note_depth": -1}}
    session, _ = import_chat(store, st_file(tmp_path, header))
    assert session.settings["author_note"]["text"] == ""
    assert session.settings["author_note"]["depth"] == 4
    plain = store.create_session("mine")
    store.add_message(plain.id, Role.USER, "hi", parent_id=LEAF)
    text, _ = export_session(store, plain.id, "st")
    assert json.loads(text.split("\n")[0])["chat_metadata"] == {}  # no note, none written
    note = {"text": "Stay in character.", "interval": 1, "depth": 4}
    store.update_session(plain.id, settings={"author_note": note})
    text, _ = export_session(store, plain.id, "st")
    metadata = json.loads(text.split("\n")[0])["chat_metadata"]
    assert metadata["note_prompt"] == "Stay in character." and metadata["note_position"] == 1
