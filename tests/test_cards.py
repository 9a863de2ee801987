"""Character cards: every version, both PNG chunks, lossless round-trips, typed errors."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions.cards import (
    MAX_FIELD_CHARS,
    CardError,
    CharacterCard,
    CosplayExtension,
    card_from_dict,
    card_png,
    load_card,
    parse_card,
    plain_png,
    png_chunks,
)

DATA = Path(__file__).parent / "data"
SERAPHINA = DATA / "Seraphina.png"


def text_chunks(raw: bytes) -> dict[str, dict]:
    """keyword -> decoded JSON of each tEXt card chunk, checking every chunk's CRC as
    SillyTavern's png-chunks-extract does."""
    found, pos = {}, 8
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        kind, body = raw[pos + 4 : pos + 8], raw[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", raw[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC on {kind!r}"
        if kind == b"tEXt":
            keyword, _, text = body.partition(b"\0")
            found[keyword.decode()] = json.loads(base64.b64decode(text))
        pos += 12 + length
    return found


def make_png(**chunks: bytes) -> bytes:
    """A plain PNG with raw tEXt chunks (keyword -> already-encoded text)."""
    base = png_chunks(plain_png("x", 4))
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in base[:-1]:
        out += (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )
    for keyword, text in chunks.items():
        body = keyword.encode() + b"\0" + text
        out += (
            struct.pack(">I", len(body))
            + b"tEXt"
            + body
            + struct.pack(">I", zlib.crc32(b"tEXt" + body))
        )
    return out + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def b64(obj) -> bytes:
    return base64.b64encode(json.dumps(obj, ensure_ascii=False).encode())


V1 = {
    "name": "武松",
    "description": "打虎英雄",
    "personality": "刚烈",
    "scenario": "景阳冈",
    "first_mes": "店家，筛酒来！",
    "mes_example": "<START>\n{{user}}: 你好\n{{char}}: 吃酒！",
    "avatar": "none",
    "chat": "old chat id",
}
V2 = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "诸葛亮",
        "description": "卧龙",
        "personality": "",
        "scenario": "",
        "first_mes": "亮有礼了。",
        "mes_example": "",
        "creator_notes": "notes",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": ["先生请坐。"],
        "tags": ["三国"],
        "creator": "me",
        "character_version": "2",
        "extensions": {
            "cosplay": {"adapter": "adapters/zhuge", "template": "cosplay"},
            "depth_prompt": {"depth": 4},
        },
    },
}
V3 = {
    "spec": "chara_card_v3",
    "spec_version": "3.0",
    "data": {
        **V2["data"],
        "name": "曹操",
        "nickname": "孟德",
        "group_only_greetings": ["孤来也"],
        "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
    },
}


# --- the real-world card ------------------------------------------------------------


def test_seraphina_imports_with_every_field_intact():
    raw = SERAPHINA.read_bytes()
    original = text_chunks(raw)["chara"]
    card = load_card(SERAPHINA)
    assert card.to_dict() == original  # every field, top-level leftovers and lorebook included
    data = card.data
    assert data.name == "Seraphina" and data.creator == "OtisAlejandro"
    assert data.creator_notes.startswith("ST Default Bot contest winner")
    assert data.extensions == {"talkativeness": "0.5", "fav": False, "world": "Eldoria"}
    book = data.character_book
    assert book is not None and book.name == "Eldoria" and len(book.entries) == 4
    assert book.entries[1].keys[:2] == ["shadowfang", "beast"]
    assert book.entries[0].extensions == {
        "position": 0,
        "probability": None,
        "useProbability": False,
    }


def test_seraphina_png_round_trip_keeps_the_picture_and_writes_both_chunks():
    raw = SERAPHINA.read_bytes()
    card = load_card(SERAPHINA)
    exported = card_png(card, raw)
    chunks = text_chunks(exported)  # CRCs checked
    assert set(chunks) == {"chara", "ccv3"}
    assert (
        chunks["chara"]["spec"] == "chara_card_v2"
        and chunks["chara"]["data"]["name"] == "Seraphina"
    )
    assert chunks["ccv3"]["spec"] == "chara_card_v3" and chunks["ccv3"]["spec_version"] == "3.0"
    assert chunks["chara"] == text_chunks(raw)["chara"]
    image = [body for kind, body in png_chunks(raw) if kind in (b"IHDR", b"IDAT")]
    assert [body for kind, body in png_chunks(exported) if kind in (b"IHDR", b"IDAT")] == image
    assert parse_card(exported).to_dict() == card.to_dict()
    # Exporting twice does not pile up chunks.
    assert len([k for k, _ in png_chunks(card_png(card, exported)) if k == b"tEXt"]) == 2


# --- every version ------------------------------------------------------------------


def test_v1_json_becomes_v2(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(V1, ensure_ascii=False), encoding="utf-8")
    card = load_card(path)
    assert card.spec == "chara_card_v2"
    assert card.data.name == "武松" and card.data.scenario == "景阳冈"
    assert card.data.mes_example.startswith("<START>")
    assert card.to_dict()["avatar"] == "none"  # V1 leftovers are kept


def test_v2_json_round_trip(tmp_path):
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(V2, ensure_ascii=False), encoding="utf-8")
    card = load_card(path)
    assert card.cosplay.adapter == "adapters/zhuge"
    assert card.cosplay.template == "cosplay"
    out = card.to_dict()
    assert out["data"] == V2["data"]
    assert card_from_dict(json.loads(card.to_json())).to_dict() == out


def test_v3_json_keeps_v3_fields(tmp_path):
    card = card_from_dict(V3)
    assert card.data.name == "曹操"
    assert card.data.model_extra["nickname"] == "孟德"
    assert card.to_v3_dict()["data"]["group_only_greetings"] == ["孤来也"]
    assert card_from_dict(card.to_v3_dict()).to_dict() == card.to_dict()


def test_png_with_only_chara_or_only_ccv3():
    assert parse_card(make_png(chara=b64(V1))).data.name == "武松"
    assert parse_card(make_png(ccv3=b64(V3))).data.name == "曹操"


def test_ccv3_is_read_before_chara_and_a_broken_ccv3_falls_back():
    assert parse_card(make_png(chara=b64(V2), ccv3=b64(V3))).data.name == "曹操"
    assert parse_card(make_png(chara=b64(V2), ccv3=b"!!!")).data.name == "诸葛亮"


def test_generated_png_when_there_is_no_picture():
    card = card_from_dict(V2)
    raw = card_png(card)
    assert raw.startswith(b"\x89PNG") and set(text_chunks(raw)) == {"chara", "ccv3"}
    assert parse_card(raw).to_dict() == card.to_dict()


def test_cosplay_extension_edit_keeps_other_extensions():
    card = card_from_dict(V2)
    edited = card.with_cosplay(
        CosplayExtension(adapter="", template="chatml", sampling={"temperature": 0.3})
    )
    assert edited.data.extensions["depth_prompt"] == {"depth": 4}
    assert edited.data.extensions["cosplay"] == {
        "template": "chatml",
        "sampling": {"temperature": 0.3},
    }
    assert (
        card.data.extensions["cosplay"]["adapter"] == "adapters/zhuge"
    )  # the original is untouched


# --- malformed inputs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (make_png(chara=b"not*base64"), ["'chara'", "base64"]),
        (make_png(), ["no 'chara' or 'ccv3'"]),
        (make_png(chara=base64.b64encode(b"{broken")), ["'chara' chunk", "malformed JSON"]),
        (make_png(chara=b64({**V2, "spec": "chara_card_v9"})), ["'spec'", "chara_card_v9"]),
        (
            make_png(chara=b64({"spec": "chara_card_v2", "data": {"name": "x", "tags": 5}})),
            ["data.tags"],
        ),
        (b'{"spec": "chara_card_v2", "data": ', ["malformed JSON", "line 1"]),
        (
            json.dumps(
                {**V2, "data": {**V2["data"], "description": "x" * (MAX_FIELD_CHARS + 1)}}
            ).encode(),
            ["data.description", "characters"],
        ),
        (json.dumps({"spec": "chara_card_v2"}).encode(), ["'data'"]),
        (
            json.dumps({"spec": "chara_card_v2", "data": {"description": "no name"}}).encode(),
            ["data.name"],
        ),
        (
            json.dumps(
                {
                    "spec": "chara_card_v2",
                    "data": {
                        "name": "x",
                        "extensions": {"cosplay": {"sampling": {"temperature": 99}}},
                    },
                }
            ).encode(),
            ["data.extensions.cosplay.sampling.temperature"],
        ),
        (json.dumps([1, 2]).encode(), ["JSON object"]),
        (json.dumps({"hello": "world"}).encode(), ["'name'"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", ["truncated"]),
        (b"\xff\xfe\x00garbage", ["UTF-8"]),
    ],
    ids=[
        "bad-base64",
        "missing-chunk",
        "chunk-json",
        "wrong-spec",
        "wrong-type",
        "malformed-json",
        "huge-field",
        "no-data",
        "no-name",
        "bad-sampling",
        "not-object",
        "not-a-card",
        "truncated-png",
        "not-text",
    ],
)
def test_malformed_cards_raise_card_error_naming_file_and_field(tmp_path, raw, words):
    path = tmp_path / "bad.card"
    path.write_bytes(raw)
    with pytest.raises(CardError) as error:
        load_card(path)
    message = str(error.value)
    assert str(path) in message
    for word in words:
        assert word in message
    assert "\n" not in message


def test_missing_file_is_a_card_error(tmp_path):
    with pytest.raises(CardError, match="Cannot read"):
        load_card(tmp_path / "nope.png")


# --- property: lossless round-trip ------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
extensions = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda k: k != "cosplay"), json_values, max_size=5
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extensions=extensions,
    entry_extensions=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    name=st.text(min_size=1, max_size=20),
    greetings=st.lists(st.text(max_size=30), max_size=3),
)
def test_round_trip_is_lossless_over_random_extensions(
    extensions, entry_extensions, name, greetings
):
    extensions = {**extensions, "cosplay": {"adapter": "a/b", "future_field": [1, {"x": None}]}}
    source = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "top_level_extra": {"kept": True},
        "data": {
            **V2["data"],
            "name": name,
            "alternate_greetings": greetings,
            "extensions": extensions,
            "character_book": {
                "entries": [
                    {
                        "keys": ["k"],
                        "content": "c",
                        "extensions": entry_extensions,
                        "enabled": True,
                        "insertion_order": 1,
                        "custom": 7,
                    }
                ]
            },
        },
    }
    card = card_from_dict(source)
    once = card.to_dict()
    assert once["data"] == source["data"]
    assert once["top_level_extra"] == {"kept": True}
    assert card_from_dict(json.loads(card.to_json())).to_dict() == once
    assert parse_card(card_png(card)).to_dict() == once
    assert CharacterCard.model_validate(once).to_dict() == once


def test_a_png_decompression_bomb_is_never_inflated_past_the_card_limit(tmp_path):
    import time
    import zlib

    from sessions.card_files import PNG_SIGNATURE, _chunk
    from sessions.cards import CardError, load_card

    bomb = zlib.compress(b"A" * 400_000_000, 9)  # 400 MB of text in well under 1 MB
    png = PNG_SIGNATURE + _chunk(b"IHDR", b"\0" * 13)
    png += _chunk(b"zTXt", b"Comment\0\0" + bomb)  # not a card keyword: never inflated
    png += _chunk(b"zTXt", b"chara\0\0" + bomb)  # a card keyword: inflated only up to the limit
    png += _chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    started = time.monotonic()
    with pytest.raises(CardError, match="larger than"):
        load_card(path)
    assert time.monotonic() - started < 5


# --- hostile cards: every one is one CardError sentence naming the file ------------------


def _nested(depth: int) -> bytes:
    return b'{"name": "x", "deep": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"name": "\\ud800"}', ["'name'", "lone surrogate", "\\ud800"]),
        (
            b'{"spec": "chara_card_v2", "data": {"name": "x", "description": "a\\udc00"}}',
            ["'data.description'", "lone surrogate"],
        ),
        (b'{"name": "x", "\\udbff": 1}', ["lone surrogate", "\\udbff"]),
        (make_png(chara=base64.b64encode(b'{"name": "\\ud800"}')), ["lone surrogate"]),
        (b'{"name": "x", "n": ' + b"9" * 4301 + b"}", ["4301 digits"]),
        (b'{"name": "x", "n": 1.' + b"5" * 5000 + b"}", ["digits"]),
        (b'{"name": "x", "n": 1e999999}', ["1e999999", "too large"]),
        (b'{"name": "x", "n": NaN}', ["NaN"]),
        (b'{"name": "x", "n": -Infinity}', ["-Infinity"]),
        (_nested(500), ["'deep.0.0", "nested more than"]),
        (_nested(990), ["nested"]),  # json itself may hit the recursion limit first
        (b'{"name": "x", "deep": ' + b'{"a": ' * 900 + b"1" + b"}" * 900 + b"}", ["nested"]),
        (_nested(200_000), ["nested too deeply"]),
        (b"", ["empty"]),
        (b"\xef\xbb\xbf  \n", ["empty"]),
        (b"null", ["JSON object", "NoneType"]),
        (b'"a string"', ["JSON object", "str"]),
        (b"PK\x03\x04" + b"\0" * 40, ["ZIP archive", ".charx"]),
        (make_png()[:-7], ["truncated"]),
    ],
    ids=[
        "surrogate-name",
        "surrogate-v2-field",
        "surrogate-key",
        "surrogate-in-png",
        "int-over-4300-digits",
        "float-5000-digits",
        "float-overflow",
        "nan",
        "infinity",
        "nested-500",
        "nested-990",
        "nested-dicts-900",
        "nested-200000",
        "empty",
        "bom-and-blanks",
        "null",
        "string",
        "charx-zip",
        "png-cut-in-iend",
    ],
)
def test_hostile_cards_are_one_sentence_naming_the_file(tmp_path, raw, words):
    path = tmp_path / "hostile.json"
    path.write_bytes(raw)
    with pytest.raises(CardError) as error:
        load_card(path)
    message = str(error.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message
    assert "\n" not in message and len(message) < 400


def test_a_python_dict_with_nan_or_a_surrogate_is_refused_too():
    with pytest.raises(CardError, match="nan"):
        card_from_dict({"name": "x", "weight": float("nan")}, "dict card")
    with pytest.raises(CardError, match="surrogate"):
        card_from_dict({"spec": "chara_card_v2", "data": {"name": "\udc80"}}, "dict card")


def test_a_utf16_card_with_a_byte_order_mark_is_read():
    card = parse_card(json.dumps(V2, ensure_ascii=False).encode("utf-16"), "u16.json")
    assert card.name == "诸葛亮"


def test_an_accepted_card_can_always_be_written_back_and_copied():
    """What the importer accepts, the persona store can save, export and duplicate."""
    deep: object = "leaf"
    for _ in range(90):  # deep, but within the limit
        deep = [deep]
    card = parse_card(json.dumps({"name": "x", "extensions_blob": deep}).encode(), "ok.json")
    card.model_copy(deep=True)
    assert parse_card(card_png(card)).to_dict() == card.to_dict()
    assert parse_card(card.to_json().encode()).to_dict() == card.to_dict()
