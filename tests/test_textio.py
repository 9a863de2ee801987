"""Text files in any encoding: BOMs, UTF-8, GB18030, Big5, Shift-JIS, EUC-JP, UTF-16; binary
data is refused with one sentence, never read as mojibake."""

from __future__ import annotations

import io
import json
import random
import zipfile
import zlib

import pytest

from engines.train import DatasetError
from engines.train.data import load_dataset
from engines.train.extract import extract_file
from engines.train.textio import NotText, decode_text, read_text

SIMPLIFIED = (
    "　　却说曹操引兵至长坂坡，忽见一将挺枪跃马而来。曹操问左右曰：“此何人也？”\n"
    "　　曹洪曰：“此乃常山赵子龙也。”\n"
)
TRADITIONAL = (
    "　　玄德問孔明曰：「軍師何以教我？」孔明笑曰：「亮夜觀天象，見東南風起，此天助也。」\n"
    "　　魯肅曰：「諸葛亮真神人也！」\n"
)
JAPANESE = (
    "　吾輩は猫である。名前はまだ無い。\n"
    "　どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所でニャーニャー泣いていた"
    "事だけは記憶している。「お前は誰だ」と彼は言った。\n"
)
KOREAN = "나는 고양이로소이다. 이름은 아직 없다. 어디서 태어났는지 도무지 짐작이 가지 않는다.\n"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (SIMPLIFIED, "gb18030"),
        (SIMPLIFIED, "gbk"),
        (SIMPLIFIED[:12], "gb18030"),
        (TRADITIONAL, "big5"),
        (TRADITIONAL, "gb18030"),  # traditional characters in a GB file stay GB
        (TRADITIONAL[:10], "big5"),
        (JAPANESE, "shift_jis"),
        (JAPANESE, "cp932"),
        (JAPANESE[:10], "shift_jis"),
        (JAPANESE, "euc_jp"),
        (KOREAN, "cp949"),
        (SIMPLIFIED, "utf-16"),  # with a BOM
        (JAPANESE, "utf-16-be"),  # without one
        (JAPANESE, "utf-32"),
        (TRADITIONAL, "utf-8-sig"),
        (TRADITIONAL, "utf-8"),
        ("Café – “quoted” naïve\n", "cp1252"),
    ],
)
def test_text_in_each_encoding_reads_back_exactly(tmp_path, text, encoding):
    path = tmp_path / "novel.txt"
    path.write_bytes(text.encode(encoding))
    assert read_text(path) == text


def test_crlf_line_ends_become_newlines():
    assert decode_text("甲\r\n乙\r丙\n".encode("big5")) == "甲\n乙\n丙\n"


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("novel.txt", SIMPLIFIED * 20)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "raw",
    [
        random.Random(7).randbytes(5000),
        b"\0" * 4096,
        zlib.compress(SIMPLIFIED.encode() * 30),
        _zip(),
        b"\x89PNG\r\n\x1a\n" + random.Random(8).randbytes(3000),
        b"\xff\xfe\x00\xd8",  # a UTF-16 BOM, then a lone surrogate
    ],
    ids=["random", "zeros", "zlib", "zip", "png", "bom-then-garbage"],
)
def test_binary_data_is_refused_with_one_sentence(tmp_path, raw):
    path = tmp_path / "data.jsonl"
    path.write_bytes(raw)
    with pytest.raises(NotText):
        decode_text(raw)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    message = str(error.value)
    assert str(path) in message and "not a text file" in message and "\n" not in message


def test_a_big5_dataset_and_a_shift_jis_novel_load_without_mojibake(tmp_path):
    record = {"context": "玄德問孔明曰：", "chat": "「軍師何以教我？」"}
    path = tmp_path / "big5.jsonl"
    path.write_bytes((json.dumps(record, ensure_ascii=False) + "\n").encode("big5") * 3)
    data = load_dataset(path)
    # `A問B曰` is A's, as `A问B曰` is (traditional verbs are read as simplified ones)
    assert data.format == "cosplay" and data.speakers == {"玄德": 3}
    novel = tmp_path / "neko.txt"
    novel.write_bytes(JAPANESE.encode("shift_jis"))
    assert load_dataset(novel).samples[0].text == JAPANESE


def test_extract_reads_a_big5_novel(tmp_path):
    novel = tmp_path / "novel.txt"
    novel.write_bytes(TRADITIONAL.encode("big5"))
    out = tmp_path / "kongming.jsonl"
    report = extract_file(novel, out, speaker="孔明")
    assert report.written == 1 and report.speaker == "諸葛亮"
    record = json.loads(out.read_text(encoding="utf-8"))
    assert "東南風" in record["chat"] and record["speaker"] == "諸葛亮"
    # every line attributed, each person once, in the text's script
    report = extract_file(novel, out)
    assert report.encoding == "big5"
    assert report.counts == {"劉備": 1, "諸葛亮": 1, "魯肅": 1}


def test_the_encoding_read_is_reported(tmp_path):
    from engines.train.textio import read_text_and_encoding

    for text, encoding, named in [
        (TRADITIONAL * 3, "big5", "big5"),
        (SIMPLIFIED, "gb18030", "gb18030"),
        (SIMPLIFIED, "utf-8", "utf-8"),
    ]:
        path = tmp_path / f"{encoding}.txt"
        path.write_bytes(text.encode(encoding))
        assert read_text_and_encoding(path) == (text, named)


@pytest.mark.parametrize(
    "raw",
    [
        ("\ue000\ue001\ue123" * 100 + "孔明曰：“善。”").encode("utf-8"),  # a font's private code
        ("\U000e0fff\U000effff" * 80 + "孔明").encode("utf-8"),  # unassigned and private planes
        b"".join(bytes([0xFE, 0xA1 + i % 90]) for i in range(400)),  # GB18030's user area
    ],
    ids=["private-use-utf8", "unassigned-utf8", "gb18030-user-area"],
)
def test_mostly_private_use_text_is_refused_in_one_sentence(tmp_path, raw):
    path = tmp_path / "novel.txt"
    path.write_bytes(raw)
    with pytest.raises(DatasetError) as error:
        read_text(path)
    message = str(error.value)
    assert str(path) in message and "not a text file" in message and "\n" not in message


def test_a_few_private_use_characters_in_real_text_are_kept():
    text = SIMPLIFIED * 5 + "\ue000"  # an e-book's one rare character mapped to its font
    assert decode_text(text.encode("utf-8")) == text
