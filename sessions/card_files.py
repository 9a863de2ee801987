"""The bytes of a character card file: its JSON read defensively (UTF-8 or UTF-16 with a BOM,
no absurd numbers or nesting overflow), and PNG cards, which carry base64 JSON in tEXt chunks:
`ccv3` (V3) is read first, then `chara` (V1/V2); we write both, with correct CRCs, before
IEND. Every problem is a CardError naming the file. sessions/cards.py makes cards of them."""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
import zlib
from typing import Any

from engines.errors import CosplayError
from engines.i18n import _

MAX_CARD_BYTES = 16 * 2**20  # the JSON of one card
MAX_PNG_BYTES = 64 * 2**20
MAX_NUMBER_CHARS = 400  # a number's digits; far past any float or 64-bit integer
ZIP_SIGNATURE = b"PK\x03\x04"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CARD_KEYWORDS = ("ccv3", "chara")  # in the order we read them


class CardError(CosplayError):
    """A character card file is unreadable, malformed, or not a card."""


# --- JSON ----------------------------------------------------------------------


def _utf16_json(raw: bytes) -> str | None:
    """The text of UTF-16 JSON that starts with a byte-order mark, else None."""
    if not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    try:
        text = raw.decode("utf-16")
    except UnicodeDecodeError:
        return None
    return text if text.lstrip().startswith(("{", "[")) else None


class _BadNumber(Exception):
    """Raised by the JSON number hooks; turned into a CardError naming the file."""


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:  # Python refuses > 4300 digits with a bare ValueError
        raise _BadNumber(f"a number with {len(text)} digits")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"a number with {len(text)} digits")
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"the number {text[:20]}, too large for a float")
    return value


def _parse_constant(text: str) -> Any:
    raise _BadNumber(f"{text}, which is not valid JSON")


def json_object(raw: bytes, source: str, what: str) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = _utf16_json(raw)  # Windows editors save "Unicode" as UTF-16 with a BOM
        if text is None:
            raise CardError(
                _(
                    "{source}: {what} is not UTF-8 text (byte {byte}).",
                    source=source,
                    what=what,
                    byte=exc.start,
                )
            ) from exc
    if not text.strip():
        raise CardError(_("{source}: {what} is empty; it is not a card.", source=source, what=what))
    try:
        return json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        raise CardError(
            _(
                "{source}: {what} is malformed JSON ({problem} at line {line}, column {column}).",
                source=source,
                what=what,
                problem=exc.msg,
                line=exc.lineno,
                column=exc.colno,
            )
        ) from exc
    except _BadNumber as exc:
        raise CardError(
            _(
                "{source}: {what} holds {value}; this is not a card.",
                source=source,
                what=what,
                value=exc,
            )
        ) from exc
    except RecursionError as exc:
        raise CardError(
            _("{source}: {what} is nested too deeply to be a card.", source=source, what=what)
        ) from exc
    except ValueError as exc:  # anything else json or int() refuses
        raise CardError(
            _(
                "{source}: {what} is not a readable JSON card ({problem}).",
                source=source,
                what=what,
                problem=exc,
            )
        ) from exc


# --- PNG -----------------------------------------------------------------------


def png_chunks(raw: bytes, source: str = "PNG") -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk, in order; CRCs are not checked (readers should be lenient)."""
    if not raw.startswith(PNG_SIGNATURE):
        raise CardError(_("{source} is not a PNG file.", source=source))
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos < len(raw):
        if pos + 8 > len(raw):
            raise CardError(
                _("{source}: the PNG is truncated (a chunk header is cut off).", source=source)
            )
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        kind = raw[pos + 4 : pos + 8]
        if pos + 12 + length > len(raw):
            raise CardError(
                _(
                    "{source}: the PNG is truncated (chunk {chunk} is cut off).",
                    source=source,
                    chunk=repr(kind.decode("latin-1")),
                )
            )
        chunks.append((kind, raw[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _text_chunk(kind: bytes, body: bytes) -> tuple[str, bytes] | None:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk whose keyword names a card; None for any
    other chunk (never inflated: a PNG can hide a decompression bomb under any keyword)."""
    keyword, sep, rest = body.partition(b"\0")
    if not sep or keyword.decode("latin-1").lower() not in CARD_KEYWORDS:
        return None
    try:
        if kind == b"tEXt":
            return keyword.decode("latin-1"), rest
        if kind == b"zTXt":
            return keyword.decode("latin-1"), _inflate(rest[1:])
        if kind == b"iTXt":
            compressed, rest = rest[0], rest[2:]
            _language, _nul, rest = rest.partition(b"\0")
            _translated, _nul, text = rest.partition(b"\0")
            return keyword.decode("latin-1"), _inflate(text) if compressed else text
    except (zlib.error, IndexError):
        return None
    return None


def _inflate(data: bytes) -> bytes:
    """Inflate at most what a card may hold (base64 of MAX_CARD_BYTES), plus one byte to tell
    that there was more; _decode_chunk then refuses it as too large."""
    limit = MAX_CARD_BYTES * 4 // 3 + 8
    return zlib.decompressobj().decompress(data, limit + 1)


def payload_from_png(raw: bytes, source: str) -> Any:
    texts: dict[str, bytes] = {}
    for kind, body in png_chunks(raw, source):
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            found = _text_chunk(kind, body)
            if found and found[0].lower() in CARD_KEYWORDS:
                texts.setdefault(found[0].lower(), found[1])
    if not texts:
        raise CardError(
            _(
                "{source}: the PNG has no 'chara' or 'ccv3' text chunk; it is an image, not a "
                "character card.",
                source=source,
            )
        )
    errors = []
    for keyword in CARD_KEYWORDS:  # ccv3 first; a broken ccv3 falls back to chara
        if keyword in texts:
            try:
                return _decode_chunk(texts[keyword], source, keyword)
            except CardError as exc:
                errors.append(exc)
    raise errors[0]


def _decode_chunk(text: bytes, source: str, keyword: str) -> Any:
    compact = b"".join(text.split())
    if len(compact) > MAX_CARD_BYTES * 4 // 3 + 4:
        raise CardError(
            _(
                "{source}: the {keyword} chunk is larger than {size} MiB.",
                source=source,
                keyword=repr(keyword),
                size=MAX_CARD_BYTES // 2**20,
            )
        )
    try:
        decoded = base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CardError(
            _(
                "{source}: the {keyword} chunk is not valid base64 ({problem}).",
                source=source,
                keyword=repr(keyword),
                problem=exc,
            )
        ) from exc
    return json_object(decoded, source, _("the {keyword} chunk", keyword=repr(keyword)))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _text(keyword: str, obj: dict[str, Any]) -> bytes:
    payload = base64.b64encode(json.dumps(obj, ensure_ascii=False).encode("utf-8"))
    return _chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + payload)


def plain_png(seed: str, size: int = 256) -> bytes:
    """A plain square image tinted by `seed`, for a persona that has no picture."""
    digest = zlib.crc32(seed.encode("utf-8"))
    top = bytes(((digest >> shift) & 0x7F) + 0x40 for shift in (0, 8, 16))
    rows = []
    for y in range(size):
        shade = bytes(max(0, c - y * 48 // size) for c in top)
        rows.append(b"\0" + shade * size)
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _chunk(b"IEND", b"")
    )


def strip_card_chunks(image: bytes, source: str = "PNG") -> bytes:
    """The image without any card text chunks (what we keep as a persona's avatar)."""
    out = [PNG_SIGNATURE]
    for kind, body in png_chunks(image, source):
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            found = _text_chunk(kind, body)
            if found and found[0].lower() in CARD_KEYWORDS:
                continue
        out.append(_chunk(kind, body))
    return b"".join(out)


def png_with_card(image: bytes, v2: dict[str, Any], v3: dict[str, Any]) -> bytes:
    """`image` with its old card chunks taken out and the card added as `chara` (V2) and
    `ccv3` chunks."""
    chunks = png_chunks(strip_card_chunks(image))
    body = [_chunk(kind, data) for kind, data in chunks if kind != b"IEND"]
    body += [_text("chara", v2), _text("ccv3", v3), _chunk(b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(body)
