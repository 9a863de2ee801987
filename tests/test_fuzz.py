"""Fuzzing the readers of untrusted input: character cards, dataset files, chat templates.

Each either returns its result or raises the project's one-sentence error (a CosplayError
subclass); any other exception, a hang or a traceback is a bug. Every property is bounded
to a few seconds (a fixed number of examples, no per-example deadline).
"""

from __future__ import annotations

import base64
import json
import time
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines.base import TemplateError
from engines.template_sandbox import MAX_SECONDS
from engines.templates import ChatTemplate, model_template
from engines.train import DatasetError
from engines.train.data import load_dataset
from sessions.cards import CardError, CharacterCard, card_png, parse_card, png_chunks

FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Any code point, lone surrogates included: json.dumps escapes them as \udxxx.
any_text = st.text(st.characters(codec=None, categories=None), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included
    | any_text
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=16,
)
card_keys = st.sampled_from(
    [
        "name",
        "spec",
        "data",
        "description",
        "extensions",
        "cosplay",
        "sampling",
        "character_book",
        "entries",
        "keys",
        "temperature",
        "tags",
        "alternate_greetings",
        "spec_version",
    ]
)
card_like = st.recursive(
    scalars | st.sampled_from(["chara_card_v2", "chara_card_v3", "x"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(card_keys | any_text, children, max_size=5)
    ),
    max_leaves=20,
)

VALID = CharacterCard.new("诸葛亮", description="卧龙", tags=["三国"])
VALID_JSON = VALID.to_json().encode()
VALID_PNG = card_png(VALID)


def _check_card(raw: bytes) -> None:
    try:
        card = parse_card(raw, source="fuzz.json")
    except CardError as exc:
        assert "\n" not in str(exc)
        return
    # What is accepted can be written back and read again.
    assert parse_card(card.to_json().encode("utf-8")).to_dict() == card.to_dict()
    assert parse_card(card_png(card)).to_dict() == card.to_dict()


@FAST
@given(card_like)
def test_card_importer_on_json_like_objects(obj):
    _check_card(json.dumps(obj).encode())
    _check_card(json.dumps({"spec": "chara_card_v2", "data": obj}).encode())


@FAST
@given(values, st.sampled_from(["name", "description", "extensions", "tags"]))
def test_card_importer_with_a_hostile_value_in_a_real_field(value, field):
    card = VALID.to_dict()
    card["data"][field] = value
    _check_card(json.dumps(card).encode())


@FAST
@given(st.binary(max_size=300))
def test_card_importer_on_raw_bytes(raw):
    _check_card(raw)
    _check_card(b"\x89PNG\r\n\x1a\n" + raw)


@FAST
@given(st.data())
def test_card_importer_on_mutated_real_cards(data):
    source = data.draw(st.sampled_from([VALID_JSON, VALID_PNG]))
    raw = bytearray(source)
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[at] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del raw[at:]
        elif kind == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif raw:
            del raw[at : at + data.draw(st.integers(1, 16))]
    _check_card(bytes(raw))


@FAST
@given(st.binary(max_size=200), st.sampled_from(["chara", "ccv3"]), st.booleans())
def test_card_importer_on_hostile_png_text_chunks(payload, keyword, compress):
    def chunk(kind: bytes, body: bytes) -> bytes:
        length = len(body).to_bytes(4, "big")
        return length + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    image = b"".join(chunk(k, b) for k, b in png_chunks(VALID_PNG) if k in (b"IHDR", b"IDAT"))
    for body in (payload, base64.b64encode(payload)):
        if compress:
            text = chunk(b"zTXt", keyword.encode() + b"\0\0" + zlib.compress(body))
        else:
            text = chunk(b"tEXt", keyword.encode() + b"\0" + body)
        _check_card(b"\x89PNG\r\n\x1a\n" + image + text + chunk(b"IEND", b""))


# --- dataset readers -----------------------------------------------------------------------

json_fragment = st.sampled_from(
    [
        '{"',
        '"}',
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        '"context"',
        '"chat"',
        '"messages"',
        '"role"',
        '"content"',
        '"assistant"',
        '"user"',
        '"instruction"',
        '"output"',
        '"text"',
        '"曹洪曰："',
        '"conversations"',
        '"from"',
        '"value"',
        '"gpt"',
        "null",
        "1e999",
        "NaN",
        "9" * 5000,
        "-0",
        '"\\ud800"',
        "\\",
        "\u2028",
        "\r",
        "\t",
        " ",
        '"data"',
        "true",
    ]
)
line = st.lists(json_fragment, max_size=12).map("".join) | st.builds(json.dumps, values)


def _check_dataset(path, **kwargs) -> None:
    try:
        loaded = load_dataset(path, **kwargs)
    except DatasetError as exc:
        assert "\n" not in str(exc)
        return
    assert loaded.samples
    for sample in loaded.samples:
        assert sample.text or sample.messages


@FAST
@given(st.lists(line, max_size=8), st.sampled_from([".jsonl", ".json", ".txt"]), st.booleans())
def test_dataset_reader_on_arbitrary_lines(tmp_path_factory, lines, suffix, skip_bad):
    path = tmp_path_factory.mktemp("data") / f"fuzz{suffix}"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    _check_dataset(path, skip_bad=skip_bad)


@FAST
@given(
    st.lists(values, max_size=6),
    st.sampled_from(["auto", "cosplay", "alpaca", "sharegpt", "messages", "vicuna", "text"]),
)
def test_dataset_reader_on_arbitrary_records(tmp_path_factory, records, fmt):
    folder = tmp_path_factory.mktemp("data")
    jsonl = folder / "fuzz.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    _check_dataset(jsonl, fmt=fmt, skip_bad=True)
    array = folder / "fuzz.json"
    array.write_text(json.dumps(records), encoding="utf-8")
    _check_dataset(array, fmt=fmt)


@FAST
@given(st.binary(max_size=400), st.sampled_from([".jsonl", ".txt"]))
def test_dataset_reader_on_raw_bytes(tmp_path_factory, raw, suffix):
    path = tmp_path_factory.mktemp("data") / f"fuzz{suffix}"
    path.write_bytes(raw)
    _check_dataset(path)


# --- chat templates ----------------------------------------------------------------------

template_piece = st.sampled_from(
    [
        "{{ ",
        " }}",
        "{% ",
        " %}",
        "{%- ",
        " -%}",
        "for m in messages",
        "endfor",
        "if ",
        "endif",
        "else",
        "m.content",
        "m['role']",
        "m.name",
        "messages",
        "messages[0]",
        "loop.index",
        "loop.last",
        "bos_token",
        "eos_token",
        "add_generation_prompt",
        "char_name",
        "|tojson",
        "|length",
        "|upper",
        "|join(',')",
        "|trim",
        " * ",
        " ** ",
        " + ",
        " ~ ",
        " / ",
        "0",
        "1",
        "99999999",
        "'x'",
        "'<|im_start|>'",
        "range(",
        ")",
        "(",
        "[",
        "]",
        ",",
        "raise_exception('no')",
        "set x = ",
        "x",
        "macro f() %}{{ f() }}{% endmacro",
        "f()",
        "namespace(",
        "strftime_now('%Y')",
        "messages|selectattr('role')",
        "{# c #}",
        "\n",
        "text",
        "break",
        "continue",
        "'a' * 99999",
        "lipsum(",
        "cycler(",
        "joiner(",
        "dict(",
        "none",
        "true",
        "is defined",
        "not ",
    ]
)
template_source = st.lists(template_piece, min_size=1, max_size=14).map("".join)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", ""]), "content": any_text},
    optional={"name": any_text},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template_source, st.lists(message, max_size=4), st.booleans())
def test_template_renderer_returns_text_or_a_template_error_in_time(source, messages, prompt):
    started = time.monotonic()
    try:
        template = model_template(source)
        text = template.render(messages, add_generation_prompt=prompt)
    except TemplateError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(text, str) and text.strip()
    assert time.monotonic() - started < MAX_SECONDS + 1.5


@FAST
@given(st.lists(message, max_size=4))
def test_named_templates_render_any_messages(messages):
    from engines.templates import NAMED_TEMPLATES, get_template

    for name in NAMED_TEMPLATES:
        try:
            text = get_template(name).render(messages)
        except TemplateError as exc:
            assert "\n" not in str(exc)
        else:
            assert isinstance(text, str)


def test_chat_template_is_importable_for_the_fuzzers():
    assert ChatTemplate("x", "{{ 1 }}").render([]) == "1"
