"""Dialogue extraction from classical text: both quote orders, aliases, narration, encodings, CLI."""

from __future__ import annotations

import json

import pytest

from engines.train import DatasetError
from engines.train.data import load_dataset
from engines.train.extract import clean_speaker, extract_dialogue, extract_file
from tui.cli import main

NOVEL = """\
　　却说曹仁回城中，与众商议。曹洪曰：“目今失了彝陵，势已危急，何不拔寨早回？”
　　玄德闻言，问孔明曰：“军师何以教我？”孔明笑曰：“亮夜观天象，见东南风起，此天助也。”
　　玄德大喜，又问曰：“何时可以破曹？”
　　“三日之内，必有东风。”卧龙道。众将皆惊。
　　鲁肃说：“诸葛亮真神人也！”
　　林黛玉冷笑道：“我为的是我的心。”
　　“好妹妹，你且别恼。”宝玉笑道，“是我说错了。”
"""


def test_both_quote_orders_and_aliases():
    found = extract_dialogue(NOVEL, speaker="诸葛亮", aliases=["孔明", "卧龙"])
    by_speech = {u.speech: u for u in found}
    assert by_speech["目今失了彝陵，势已危急，何不拔寨早回？"].speaker == "曹洪"
    assert by_speech["亮夜观天象，见东南风起，此天助也。"].speaker == "诸葛亮"  # alias 孔明
    assert (
        by_speech["三日之内，必有东风。"].speaker == "诸葛亮"
    )  # speaker after the quote, alias 卧龙
    assert by_speech["诸葛亮真神人也！"].speaker == "鲁肃"  # 说：
    assert by_speech["我为的是我的心。"].speaker == "林黛玉"  # 冷笑道：
    assert by_speech["好妹妹，你且别恼。"].speaker == "宝玉"  # after the quote, 笑道，
    # `问孔明曰` is someone asking 孔明: not attributed to him; `又问曰` names nobody.
    assert "军师何以教我？" not in by_speech
    assert "何时可以破曹？" not in by_speech


def test_records_carry_preceding_narration_and_a_speaker_prefix():
    found = {
        u.speech: u for u in extract_dialogue(NOVEL, speaker="诸葛亮", aliases=["孔明", "卧龙"])
    }
    first = found["目今失了彝陵，势已危急，何不拔寨早回？"].record()
    assert first == {
        "context": "却说曹仁回城中，与众商议。曹洪曰：",
        "chat": "“目今失了彝陵，势已危急，何不拔寨早回？”",
        "speaker": "曹洪",
    }
    later = found["三日之内，必有东风。"].record()
    assert later["context"].endswith("何时可以破曹？”诸葛亮道：")  # canonical name, original verb
    assert later["chat"] == "“三日之内，必有东风。”"
    short = extract_dialogue(NOVEL, context_chars=12)
    assert all(len(u.narration) <= 12 for u in short)


@pytest.mark.parametrize(
    ("clause", "name"),
    [
        ("曹洪", "曹洪"),
        ("宝玉笑", "宝玉"),
        ("林黛玉冷笑", "林黛玉"),
        ("孔明对玄德", "孔明"),
        ("问孔明", None),
        ("他", None),
        ("却说那一日天色已晚众人", None),
    ],
)
def test_clean_speaker(clause, name):
    assert clean_speaker(clause) == name


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030", "gbk", "utf-8-sig"])
def test_extract_file_in_any_encoding_writes_cosplay_records(tmp_path, encoding):
    novel = tmp_path / "novel.txt"
    novel.write_bytes(NOVEL.encode(encoding))
    out = tmp_path / "out" / "kongming.jsonl"
    report = extract_file(novel, out, speaker="诸葛亮", aliases=["孔明", "卧龙"])
    assert report.written == 2 and report.counts["诸葛亮"] == 2 and report.counts["曹洪"] == 1
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["speaker"] for r in records] == ["诸葛亮", "诸葛亮"]
    data = load_dataset(out)  # the output is a valid cosplay dataset
    assert data.format == "cosplay" and data.speakers == {"诸葛亮": 2}


def test_unknown_speaker_is_a_clear_error(tmp_path):
    novel = tmp_path / "novel.txt"
    novel.write_text(NOVEL, encoding="utf-8")
    with pytest.raises(DatasetError, match="No quoted speech by 关羽.*speakers found: "):
        extract_file(novel, tmp_path / "o.jsonl", speaker="关羽")


def test_cli_data_extract(tmp_path, capsys):
    novel = tmp_path / "novel.txt"
    novel.write_bytes(NOVEL.encode("gb18030"))
    out = tmp_path / "d.jsonl"
    code = main(
        [
            "data",
            "extract",
            str(novel),
            "--out",
            str(out),
            "--speaker",
            "诸葛亮",
            "--alias",
            "孔明,卧龙",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Wrote 2 records" in printed and "诸葛亮\t2 *" in printed and "曹洪\t1" in printed
    assert main(["data", "extract", str(tmp_path / "missing.txt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_extract_refuses_to_overwrite_the_novel_and_writes_atomically(tmp_path):
    from engines.train import DatasetError
    from engines.train.extract import extract_file

    novel = tmp_path / "novel.txt"
    novel.write_text("孔明曰：“亮已知之。”\n", encoding="utf-8")
    before = novel.read_bytes()
    with pytest.raises(DatasetError, match="is the novel itself"):
        extract_file(novel, novel)
    assert novel.read_bytes() == before
    out = tmp_path / "out.jsonl"
    extract_file(novel, out)
    assert out.read_text(encoding="utf-8").strip() and not list(tmp_path.glob(".*partial"))
