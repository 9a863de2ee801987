"""Dataset readers: format detection, parsing of every format, bad records, encodings, chunking."""

from __future__ import annotations

import json

import pytest

from engines.train import DatasetError
from engines.train.data import chunk_ids, load_dataset
from engines.train.formats import detect_format, parse_speaker


def write_jsonl(path, records, *, encoding="utf-8"):
    path.write_text(
        "".join(
            r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) + "\n" for r in records
        ),
        encoding=encoding,
    )
    return path


COSPLAY = {"context": "曹仁回城中，与众商议。曹洪曰：", "chat": "“目今失了彝陵，势已危急。”"}
ALPACA = {
    "instruction": "把这句话翻译成英文",
    "input": "你好",
    "output": "Hello",
    "system": "你是翻译",
    "history": [["在吗", "在"]],
}
SHAREGPT = {
    "conversations": [
        {"from": "system", "value": "You are Kongming."},
        {"from": "human", "value": "Who are you?"},
        {"from": "gpt", "value": "I am Zhuge Liang."},
    ]
}
MESSAGES = {
    "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "name": "孔明"},
    ]
}
VICUNA = {"instruction": "闲聊", "input": ["你好", "吃了吗"], "output": ["你好！", "吃了。"]}


@pytest.mark.parametrize(
    ("record", "fmt"),
    [
        (COSPLAY, "cosplay"),
        (ALPACA, "alpaca"),
        (SHAREGPT, "sharegpt"),
        (MESSAGES, "messages"),
        (VICUNA, "vicuna"),
        ({"text": "a document"}, "text"),
        ({"foo": 1}, None),
        ([1, 2], None),
    ],
)
def test_detect_format(record, fmt):
    assert detect_format(record) == fmt


def test_cosplay_records_become_narration_and_speaker(tmp_path):
    data = load_dataset(
        write_jsonl(tmp_path / "d.jsonl", [COSPLAY, {"context": "孔明笑道：", "chat": "亮自有计"}])
    )
    assert data.format == "cosplay"
    first, second = data.samples
    assert first.speaker == "曹洪"
    assert first.messages == [
        {"role": "system", "content": "曹仁回城中，与众商议。"},
        {"role": "assistant", "name": "曹洪", "content": "“目今失了彝陵，势已危急。”"},
    ]
    assert second.speaker == "孔明"  # `笑道` is the verb, not part of the name
    assert second.messages == [{"role": "assistant", "name": "孔明", "content": "亮自有计"}]
    assert data.speakers == {"曹洪": 1, "孔明": 1}


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ("曹洪曰：", ("", "曹洪")),
        ("玄德闻言。孔明说:", ("玄德闻言。", "孔明")),
        ("林黛玉冷笑道：", ("", "林黛玉")),
        ("只是一段叙述。", None),
    ],
)
def test_parse_speaker(context, expected):
    assert parse_speaker(context) == expected


def test_alpaca_with_system_history_and_input(tmp_path):
    sample = load_dataset(write_jsonl(tmp_path / "a.jsonl", [ALPACA])).samples[0]
    assert sample.messages == [
        {"role": "system", "content": "你是翻译"},
        {"role": "user", "content": "在吗"},
        {"role": "assistant", "content": "在"},
        {"role": "user", "content": "把这句话翻译成英文\n你好"},
        {"role": "assistant", "content": "Hello"},
    ]


def test_sharegpt_messages_and_vicuna(tmp_path):
    share = load_dataset(write_jsonl(tmp_path / "s.jsonl", [SHAREGPT])).samples[0]
    assert [m["role"] for m in share.messages] == ["system", "user", "assistant"]
    msgs = load_dataset(write_jsonl(tmp_path / "m.jsonl", [MESSAGES])).samples[0]
    assert msgs.messages[1] == {"role": "assistant", "content": "Hello", "name": "孔明"}
    vic = load_dataset(write_jsonl(tmp_path / "v.jsonl", [VICUNA]))
    assert vic.format == "vicuna"
    assert vic.samples[0].messages == [
        {"role": "system", "content": "闲聊"},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！"},
        {"role": "user", "content": "吃了吗"},
        {"role": "assistant", "content": "吃了。"},
    ]


def test_json_array_reports_the_line_of_each_record(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(
        "[\n"
        + json.dumps(ALPACA, ensure_ascii=False)
        + ",\n"
        + json.dumps({"instruction": "x", "output": 3})
        + "\n]\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    message = str(err.value)
    assert str(path) in message and "line 3" in message and '"output" must be a string' in message
    assert "--skip-bad" in message
    data = load_dataset(path, skip_bad=True)
    assert len(data.samples) == 1 and [b.line for b in data.skipped] == [3]
    assert data.samples[0].line == 2


def test_json_object_with_data_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": [MESSAGES, MESSAGES]}), encoding="utf-8")
    assert len(load_dataset(path).samples) == 2


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ('{"context": "x曰：", "chat": \n', "not valid JSON"),
        ({"context": "曹洪曰：", "chat": 3}, '"chat" must be a string'),
        ({"context": ["曹洪曰："], "chat": "“……”"}, '"context" must be a string'),
        ([1, 2], "not an object"),
    ],
)
def test_bad_cosplay_lines_name_file_line_and_problem(tmp_path, bad, problem):
    path = write_jsonl(tmp_path / "d.jsonl", [COSPLAY, bad, COSPLAY])
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert f"{path}, line 2: " in str(err.value) and problem in str(err.value)
    data = load_dataset(path, skip_bad=True)
    assert len(data.samples) == 2 and len(data.skipped) == 1 and data.skipped[0].line == 2


@pytest.mark.parametrize(
    ("fmt", "bad", "problem"),
    [
        ("sharegpt", {"conversations": [{"from": "alien", "value": "x"}]}, 'unknown "from"'),
        ("messages", {"messages": [{"role": "bot", "content": "x"}]}, "role 'bot'"),
        ("vicuna", {"input": ["a", "b"], "output": ["c"]}, "they must pair up"),
        ("alpaca", {"instruction": "x", "output": "y", "history": "nope"}, "history"),
    ],
)
def test_bad_records_of_other_formats(tmp_path, fmt, bad, problem):
    good = {"sharegpt": SHAREGPT, "messages": MESSAGES, "vicuna": VICUNA, "alpaca": ALPACA}[fmt]
    path = write_jsonl(tmp_path / "d.jsonl", [good, bad, {}])
    with pytest.raises(DatasetError, match=problem):
        load_dataset(path, fmt=fmt)
    data = load_dataset(path, skip_bad=True)
    assert data.format == fmt and len(data.samples) == 1 and len(data.skipped) == 2


def test_forced_format_and_undetectable_first_record(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"foo": 1}])
    with pytest.raises(DatasetError, match="pass --format"):
        load_dataset(path)
    with pytest.raises(DatasetError, match="Unknown data format"):
        load_dataset(path, fmt="csv")
    with pytest.raises(DatasetError, match='"instruction" must be a string'):
        load_dataset(write_jsonl(tmp_path / "e.jsonl", [COSPLAY]), fmt="alpaca")


def test_missing_empty_and_all_bad_files(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(DatasetError, match="is empty"):
        load_dataset(tmp_path / "empty.txt")
    path = write_jsonl(tmp_path / "bad.jsonl", ["{oops\n"])
    with pytest.raises(DatasetError, match=r"no usable records \(1 records skipped\)"):
        load_dataset(path, skip_bad=True)


def test_text_files_and_gb18030(tmp_path):
    novel = tmp_path / "novel.txt"
    novel.write_bytes("滚滚长江东逝水，浪花淘尽英雄。".encode("gb18030"))
    data = load_dataset(novel)
    assert data.format == "text" and data.samples[0].text.startswith("滚滚长江")
    path = write_jsonl(tmp_path / "gbk.jsonl", [COSPLAY], encoding="gbk")
    assert load_dataset(path).samples[0].speaker == "曹洪"
    (tmp_path / "latin.jsonl").write_bytes(b"\xff\xfe\x00garbage" + bytes(range(128, 140)))
    with pytest.raises(DatasetError):
        load_dataset(tmp_path / "latin.jsonl")


def test_chunk_ids_overlap():
    ids = list(range(10))
    assert chunk_ids(ids, 4, 1) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert chunk_ids(ids, 20, 5) == [ids]
    assert chunk_ids([], 4, 1) == []
    chunks = chunk_ids(list(range(11)), 4, 0)
    assert [c[0] for c in chunks] == [0, 4, 8] and chunks[-1] == [8, 9, 10]


def test_jsonl_with_unicode_line_separators_inside_strings_is_valid(tmp_path):
    path = tmp_path / "sep.jsonl"
    records = [{"instruction": f"a\u2028b\u2029c\u0085d {i}", "output": "ok"} for i in range(3)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    loaded = load_dataset(path)
    assert len(loaded.samples) == 3 and not loaded.skipped


def test_a_large_json_array_loads_in_linear_time_and_names_the_bad_line(tmp_path):
    import time

    path = tmp_path / "big.json"
    records = [{"instruction": f"question {i}", "output": "answer"} for i in range(20000)]
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]", encoding="utf-8")
    started = time.monotonic()
    assert len(load_dataset(path).samples) == 20000
    assert time.monotonic() - started < 5  # was 46 s: the line was counted from the start each time
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"instruction": "a", "output": "b"},\n{"instruction": oops}\n]')
    with pytest.raises(DatasetError, match="line 3"):
        load_dataset(broken)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"text": ' + "9" * 5000 + "}", "a number with 5000 digits"),
        ('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ],
    ids=["int-over-4300-digits", "nested-100000"],
)
def test_hostile_json_lines_are_bad_records_not_tracebacks(tmp_path, line, problem):
    path = write_jsonl(tmp_path / "d.jsonl", [line + "\n", {"text": "fine"}])
    with pytest.raises(DatasetError, match=f"line 1: .*{problem}"):
        load_dataset(path)
    loaded = load_dataset(path, skip_bad=True)
    assert [s.text for s in loaded.samples] == ["fine"] and loaded.skipped[0].line == 1
    array = tmp_path / "d.json"
    array.write_text("[\n" + line + "\n]", encoding="utf-8")
    with pytest.raises(DatasetError, match=problem):
        load_dataset(array)


def test_keys_with_line_breaks_stay_on_one_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"a\nb": 1}])
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert "\n" not in str(error.value) and "'a\\nb'" in str(error.value)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ("乾曰；", ("", "乾")),  # the semicolon typo real e-texts have
        ("众皆惊。孔明曰，", ("众皆惊。", "孔明")),
        ("玄德问曰：“", ("", "玄德")),  # the opening quote left in the context
        ("曹洪曰", None),  # no mark after the verb: too likely plain narration
    ],
)
def test_parse_speaker_reads_past_typos(context, expected):
    assert parse_speaker(context) == expected


def test_any_context_chat_pair_trains_and_problems_are_counted(tmp_path):
    records = [
        COSPLAY,
        {"context": "天行健。乾曰；", "chat": "“元亨利贞。”"},
        {"context": "只是一段叙述，没有说话的人。", "chat": "“……”"},
        {"context": "", "chat": "无端一句"},
        {"context": "曹洪曰：", "chat": "  "},
        {"context": "孔明曰：", "chat": "“亮自有计。”", "speaker": "诸葛亮"},
        {"context": "玄德问曰：“", "chat": "先生何往？”"},
    ]
    data = load_dataset(write_jsonl(tmp_path / "d.jsonl", records))
    assert [s.line for s in data.samples] == [1, 2, 3, 4, 6, 7]
    assert [(n.line, n.kind) for n in data.skipped] == [(5, "nothing to train")]
    kinds = [(n.line, n.kind) for n in data.warnings]
    assert kinds == [(2, "speaker prefix typo"), (3, "no speaker"), (4, "no speaker")]
    typo, plain, empty, named, quoted = data.samples[1:]
    assert typo.speaker == "乾" and typo.prompt is None
    assert typo.messages == [
        {"role": "system", "content": "天行健。"},
        {"role": "assistant", "name": "乾", "content": "“元亨利贞。”"},
    ]
    assert plain.speaker is None and plain.prompt == "只是一段叙述，没有说话的人。"
    assert empty.prompt == "" and empty.messages == [{"role": "assistant", "content": "无端一句"}]
    assert named.speaker == "诸葛亮"  # the record's own speaker field wins over the context
    assert quoted.messages[-1]["content"] == "“先生何往？”"
    assert data.problem_counts() == {
        "warnings": {"speaker prefix typo": 1, "no speaker": 2},
        "skipped": {"nothing to train": 1},
    }
    lines = data.problem_lines()
    assert lines[0] == "trained with warnings: 3 records (speaker prefix typo 1, no speaker 2)"
    assert any(line.startswith("  line 3: the context ends in") for line in lines)
    assert "skipped: 1 records (nothing to train 1)" in lines


def test_a_file_of_only_empty_replies_is_one_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"context": "曹洪曰：", "chat": ""}] * 2)
    with pytest.raises(DatasetError, match=r"no usable records \(2 records skipped\)"):
        load_dataset(path)


def test_a_conversation_without_a_reply_is_skipped_not_fatal(tmp_path):
    path = write_jsonl(
        tmp_path / "s.jsonl", [SHAREGPT, {"conversations": [{"from": "human", "value": "hi"}]}]
    )
    data = load_dataset(path)
    assert len(data.samples) == 1 and data.skipped[0].kind == "nothing to train"
