"""Read text files whose encoding is unknown.

A byte-order mark decides first (UTF-8, UTF-16, UTF-32); then valid UTF-8 is UTF-8;
anything else is detected by charset-normalizer: GB18030/GBK, Big5, Shift-JIS,
EUC-JP, Windows code pages… When the detector finds several equally clean
readings (short CJK text often reads as GB18030, Big5 and Korean alike), the
Chinese and Japanese encodings win, GB18030 first. Bytes that no encoding reads
as text (a binary file, an archive, an image) are refused with one sentence.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from engines.i18n import _
from engines.train import DatasetError

_BOMS = [
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),  # before UTF-16's: it starts with the same two bytes
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
]
# Among equally clean readings, the first of these wins (the detector's names).
_PREFERRED = (
    "gb18030",
    "big5",
    "cp950",
    "big5hkscs",
    "cp949",
    "euc_kr",
    "utf_16_le",
    "utf_16_be",
    "utf_32_le",
    "utf_32_be",
    "cp1252",
)
_JAPANESE = ("cp932", "shift_jis", "shift_jis_2004", "shift_jisx0213", "euc_jp", "euc_jis_2004")
_KANA = re.compile("[\u3040-\u30ff]")  # hiragana and full-width katakana
_CJK = ("gb18030", "big5", "big5hkscs", "cp950", "gbk", "gb2312", "hz")
_CJK_SURE = 0.9  # the common-character share a Japanese or Korean reading needs
_CHINESE_LIKELY = 0.5  # the share a Chinese reading needs (traditional text in GBK scores ~0.6)
_PUNCTUATION = re.compile("[\u2010-\u206f\u3000-\u303f\uff01-\uff5e\u00a0-\u00bf]")
_SPACED = re.compile("[\uac00-\ud7a3][.,!?]? [\uac00-\ud7a3]")  # Korean spaces its words
_KOREAN = ("cp949", "euc_kr", "johab", "iso2022_kr")
_WIDE = re.compile("[^\x00-\x7f]")
_HANGUL = re.compile("[\uac00-\ud7a3]")
_HANJA = re.compile("[\u4e00-\u9fff]")
_HANJA_SHARE = 0.1  # modern Korean has almost no Chinese characters; Chinese read as Korean ~half
_KANA_SHARE = 0.1  # of the non-ASCII characters: Japanese prose has far more, other readings ~0
_TIE = 0.01  # chaos (the detector's measure of mess) within this of the best is a tie
_CONTROLS = re.compile("[\x00-\x08\x0e-\x19\x1c-\x1f]")  # not tab, line ends, form feed, EOF, ESC
_CONTROL_LIMIT = 0.01  # a larger share of control characters means binary, not text
# Real text has almost none (a rare character an e-book maps to its font); a wrong reading of
# Big5 as GB18030, or a font-specific encoding, has many.
_UNREADABLE_LIMIT = 0.2


class NotText(ValueError):
    """The bytes are not text in any encoding we can tell."""


def detect_encoding(raw: bytes) -> str:
    """The encoding `raw` decodes with, or NotText (a ValueError) for binary data."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                raise NotText(
                    _(
                        "it starts with a {encoding} byte-order mark but is not {encoding}",
                        encoding=encoding,
                    )
                ) from None
            return encoding
    if b"\x00" not in raw:  # NUL bytes are valid UTF-8, but only UTF-16/32 text holds them
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return "utf-8"
    return _detected(raw)


def _detected(raw: bytes) -> str:
    """A CJK reading where one is clearly right (see `_cjk`), else charset-normalizer's."""
    encoding = _cjk(raw) if b"\x00" not in raw else None
    if encoding:
        return encoding
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(raw) if _plausible(m.encoding, raw)]
    if not matches:
        raise NotText(_("no text encoding reads it"))
    best = min(match.chaos for match in matches)
    tied = [match for match in matches if match.chaos <= best + _TIE]
    rank = {encoding: index for index, encoding in enumerate(_PREFERRED)}
    tied.sort(key=lambda match: (-round(match.coherence, 1), rank.get(match.encoding, len(rank))))
    return tied[0].encoding


def _plausible(encoding: str, raw: bytes) -> bool:
    """Readings charset-normalizer offers for CJK bytes that `_cjk` already judged wrong."""
    if encoding.startswith(("utf_16", "utf_32")):
        return b"\x00" in raw  # any ASCII or line end in UTF-16/32 has NUL bytes
    return encoding not in (*_JAPANESE, *_KOREAN)


def _cjk(raw: bytes) -> str | None:
    """The Chinese, Japanese or Korean encoding `raw` reads as sensible text in, or None.

    charset-normalizer is unreliable here: short Chinese reads as half-width katakana or
    Korean as "cleanly" as it reads right. So each strict reading is scored by the share of
    its non-ASCII characters that are common in that language (GB2312 characters for GB18030,
    Big5 level 1 for Big5, kana and JIS level 1 for Japanese, KS X 1001 Hangul for Korean)
    or punctuation; Japanese needs kana, Korean word spacing. Ties go to GB18030."""
    readings = {}
    for encoding in ("cp932", "euc_jp", "gb18030", "big5", "cp949"):
        try:
            readings[encoding] = raw[:400_000].decode(encoding)
        except UnicodeDecodeError as exc:
            if exc.start < 400_000 - 4:  # not merely a character cut by the sample's end
                continue
            readings[encoding] = raw[: exc.start].decode(encoding)
    scores = {encoding: _common_share(text, encoding) for encoding, text in readings.items()}
    japanese = [
        encoding
        for encoding in ("cp932", "euc_jp")
        if encoding in readings and _share(_KANA, readings[encoding]) >= _KANA_SHARE
    ]
    if japanese:
        best = max(japanese, key=lambda encoding: scores[encoding])
        if scores[best] >= _CJK_SURE:
            return best
    if (
        scores.get("cp949", 0) >= _CJK_SURE
        and _share(_HANGUL, readings["cp949"]) >= 0.5
        and _SPACED.search(readings["cp949"])
    ):
        return "cp949"
    chinese = [encoding for encoding in ("gb18030", "big5") if encoding in readings]
    if chinese:
        best = max(chinese, key=lambda encoding: scores[encoding])  # a tie keeps GB18030
        if scores[best] >= _CHINESE_LIKELY:
            return best
    return None


def _share(pattern: re.Pattern, text: str) -> float:
    wide = len(_WIDE.findall(text))
    return len(pattern.findall(text)) / wide if wide else 0.0


def _common_share(text: str, encoding: str) -> float:
    """The share of the non-ASCII characters of `text` that are common in `encoding`'s
    language, or punctuation; 0 when there are none."""
    wide, common = 0, 0.0
    for char in set(text) if len(text) > 50_000 else text:
        if char < "\x80":
            continue
        wide += 1
        if _PUNCTUATION.match(char):
            common += 1
        elif encoding in ("cp932", "euc_jp"):
            common += bool(_KANA.match(char)) or _in_range(char, "euc_jp", b"\xb0\xa1", b"\xcf\xd3")
        elif encoding == "gb18030":
            # GB2312 holds the common characters; the rest of GBK (traditional ones, rare
            # ones) counts half, which Big5 read as GB18030 is full of
            common += (
                1.0
                if _in_range(char, "gb2312", b"\xa1\xa1", b"\xf7\xfe")
                else (0.5 * _in_range(char, "gbk", b"\x81\x40", b"\xfe\xfe"))
            )
        elif encoding == "big5":
            common += _in_range(char, "big5", b"\xa4\x40", b"\xc6\x7e")
        elif encoding == "cp949":
            common += bool(_HANGUL.match(char)) and _in_range(
                char, "euc_kr", b"\xb0\xa1", b"\xc8\xfe"
            )
    return common / wide if wide else 0.0


def _in_range(char: str, encoding: str, low: bytes, high: bytes) -> bool:
    try:
        code = char.encode(encoding)
    except UnicodeEncodeError:
        return False
    return len(code) == 2 and low <= code <= high


def decode_text(raw: bytes) -> str:
    """`raw` as text with "\\n" line ends; NotText when it is binary or no encoding fits."""
    return decode_text_and_encoding(raw)[0]


def decode_text_and_encoding(raw: bytes) -> tuple[str, str]:
    """`raw` as text with "\\n" line ends, and the encoding it was read in (`big5`…)."""
    encoding = detect_encoding(raw)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:  # the detector judged from a sample of the file
        raise NotText(
            _("byte {position} is not {encoding}", position=exc.start, encoding=encoding)
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    controls = sum(1 for _ in _CONTROLS.finditer(text))
    if "\x00" in text or controls > len(text) * _CONTROL_LIMIT:
        raise NotText(
            _(
                "it reads as {encoding} but holds control characters, so it is binary",
                encoding=encoding,
            )
        )
    share = unreadable_share(text)
    if share > _UNREADABLE_LIMIT:
        raise NotText(
            _(
                "read as {encoding}, {share} of its characters are private-use or unassigned "
                "code points, so it is mojibake or in an encoding we cannot tell",
                encoding=encoding,
                share=f"{share:.0%}",
            )
        )
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding


def unreadable_share(text: str) -> float:
    """The share of the non-ASCII characters of `text` (a sample of it) that are private-use
    or unassigned code points: what a wrong decoding or a font-specific encoding leaves."""
    sample = text[:200_000]
    wide = [char for char in sample if char >= "\x80" and not char.isspace()]
    if not wide:
        return 0.0
    unreadable = sum(1 for char in wide if unicodedata.category(char) in ("Co", "Cn"))
    return unreadable / len(wide)


def read_text(path: str | Path) -> str:
    return read_text_and_encoding(path)[0]


def read_text_and_encoding(path: str | Path) -> tuple[str, str]:
    """The file's text, and the encoding it was read in; DatasetError (one sentence naming
    the file) when it cannot be read or is not text."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(
            _("Cannot read {path} ({problem}); check the path.", path=path, problem=exc.strerror)
        ) from None
    try:
        return decode_text_and_encoding(raw)
    except NotText as exc:
        raise DatasetError(
            _(
                "{path} is not a text file ({problem}); give a UTF-8 text file, or convert it "
                "to UTF-8.",
                path=path,
                problem=exc,
            )
        ) from None
