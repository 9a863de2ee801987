"""The GGUF header reader (engines/ggufinfo.py): what `gguf.GGUFReader` reads, in milliseconds,
and one sentence for any damaged file, however absurd its counts."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines.base import ModelLoadError
from engines.ggufinfo import BLOCKS, GGUFInfo, read_gguf_info, read_header
from tests.real_model import shipped_gguf
from tests.tiny_models import TinyConfig, build

DAMAGED = "is truncated or corrupt .*; download it again"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("tiny"), TinyConfig(), hf=False)["gguf"]


def reader_values(path: Path) -> dict[str, object]:
    """What GGUFReader reads for every scalar and string key of the header."""
    reader = gguf.GGUFReader(path)
    return {
        key: field.contents()
        for key, field in reader.fields.items()
        if not key.startswith("GGUF.") and field.types[0] != gguf.GGUFValueType.ARRAY
    }


def header_values(path: Path) -> dict[str, object]:
    return {
        key: value.decode("utf-8") if isinstance(value, bytes) else value
        for key, value in read_header(path).items()
    }


def reader_info(values: dict[str, object]) -> GGUFInfo:
    """read_gguf_info as it was computed from GGUFReader's values."""
    architecture = values.get("general.architecture") or ""
    return GGUFInfo(
        architecture=architecture,
        context_length=int(values.get(f"{architecture}.context_length") or 0),
        chat_template=values.get("tokenizer.chat_template"),
        file_type=values.get("general.type") or "model",
    )


def test_agrees_with_gguf_reader_on_the_real_model():
    path = shipped_gguf()
    values = reader_values(path)  # GGUFReader takes seconds on this file: read it once
    assert header_values(path) == values
    info = read_gguf_info(path)
    assert info == reader_info(values)
    assert info.architecture == "llama" and info.context_length == 8192 and info.chat_template


def test_agrees_with_gguf_reader_on_a_tiny_model(tiny):
    values = reader_values(tiny)
    assert header_values(tiny) == values
    assert read_gguf_info(tiny) == reader_info(values)


def test_a_big_endian_file_reads_the_same(tmp_path):
    path = tmp_path / "big.gguf"
    writer = gguf.GGUFWriter(str(path), "llama", endianess=gguf.GGUFEndian.BIG)
    writer.add_context_length(1234)
    writer.add_chat_template("{{ messages }}")
    writer.add_token_list(["a", "bc", "def"])
    writer.add_tensor("w", np.ones((2, 3), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert header_values(path) == reader_values(path)
    assert read_gguf_info(path) == GGUFInfo("llama", 1234, "{{ messages }}", "model")


def test_reading_the_real_model_takes_milliseconds():
    """The 49k-token vocabulary and merges are skipped, not parsed: ~10 ms here, where
    GGUFReader took ~2.3 s; the bound leaves a wide margin for a slow CI machine."""
    path = shipped_gguf()
    read_gguf_info(path)  # the file in the page cache
    took = min(_timed(read_gguf_info, path) for _ in range(3))
    assert took < 0.3


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def test_a_file_cut_anywhere_is_one_sentence(tiny, tmp_path):
    data = tiny.read_bytes()
    header_end = data.index(b"token_embd.weight") + 64  # inside the tensor infos
    cuts = [*range(4, 64), *range(64, header_end, 13), *range(header_end, len(data), 4099)]
    cut = tmp_path / "cut.gguf"
    for size in [*cuts, len(data) - 1]:
        cut.write_bytes(data[:size])
        with pytest.raises(ModelLoadError, match=DAMAGED):
            read_gguf_info(cut)
    for size in range(4):
        cut.write_bytes(data[:size])
        with pytest.raises(ModelLoadError, match="is not a GGUF file"):
            read_gguf_info(cut)


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    patched = bytearray(data)
    struct.pack_into("<" + fmt, patched, offset, value)
    return bytes(patched)


def _after_key(data: bytes, key: bytes) -> int:
    """The offset of the value type that follows a key in the header."""
    return data.index(key) + len(key)


@pytest.mark.parametrize(
    "damage",
    [
        "version",
        "tensor count",
        "key count",
        "key length",
        "value type",
        "array count",
        "string array count",
        "string length in an array",
        "template length",
        "dimensions",
        "tensor offset",
        "value type of the template",
    ],
)
def test_absurd_numbers_fail_fast_with_one_sentence(tiny, tmp_path, damage):
    data = tiny.read_bytes()
    tokens = _after_key(data, b"tokenizer.ggml.tokens")  # type 9, item type 8, count
    types = _after_key(data, b"tokenizer.ggml.token_type")
    template = _after_key(data, b"tokenizer.chat_template")  # type 8, length
    tensor = _after_key(data, b"token_embd.weight")  # n_dims, dims, type, offset
    huge = 2**63
    bad = {
        "version": (4, "I", 1),
        "tensor count": (8, "Q", huge),
        "key count": (16, "Q", huge),
        "key length": (24, "Q", huge),
        "value type": (template, "I", 99),
        "array count": (types + 8, "Q", huge),
        "string array count": (tokens + 8, "Q", huge),
        "string length in an array": (tokens + 16, "Q", huge),
        "template length": (template + 4, "Q", huge),
        "dimensions": (tensor, "I", 2**31),
        "tensor offset": (tensor + 4 + 16 + 4, "Q", huge),
        "value type of the template": (template, "I", 4),  # read as a uint32: garbage follows
    }[damage]
    path = tmp_path / "bad.gguf"
    path.write_bytes(_patched(data, *bad))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=DAMAGED):
        read_gguf_info(path)
    assert time.perf_counter() - start < 1.0


def test_nested_arrays_repeated_keys_and_odd_alignments_are_damage(tmp_path):
    def gguf_file(kvs: bytes, count: int) -> Path:
        path = tmp_path / "made.gguf"
        path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, count) + kvs)
        return path

    def key(name: bytes) -> bytes:
        return struct.pack("<Q", len(name)) + name

    nested = key(b"deep") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 10_000
    with pytest.raises(ModelLoadError, match=DAMAGED):
        read_gguf_info(gguf_file(nested + bytes(12), 1))
    twice = (key(b"general.architecture") + struct.pack("<I", 8) + key(b"llama")) * 2
    with pytest.raises(ModelLoadError, match=DAMAGED):
        read_gguf_info(gguf_file(twice, 2))
    for alignment in (0, 3, 48):
        aligned = key(b"general.alignment") + struct.pack("<II", 4, alignment)
        with pytest.raises(ModelLoadError, match=DAMAGED):
            read_gguf_info(gguf_file(aligned, 1))
    once = twice[: len(twice) // 2]
    assert read_gguf_info(gguf_file(once, 1)) == GGUFInfo("llama", 0, None, "model")


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_random_damage_gives_the_info_or_one_sentence(tiny, tmp_path, data):
    original = tiny.read_bytes()
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(4, 4000))
        damaged[position] = data.draw(st.integers(0, 255))
    path = tmp_path / "fuzzed.gguf"
    path.write_bytes(damaged)
    try:
        assert isinstance(read_gguf_info(path), GGUFInfo)
    except ModelLoadError as exc:
        assert "truncated or corrupt" in str(exc)


def test_the_block_sizes_are_ggufs():
    assert BLOCKS == {int(kind): sizes for kind, sizes in gguf.GGML_QUANT_SIZES.items()}


def test_out_of_memory_is_not_a_damaged_file(tiny, monkeypatch):
    import engines.ggufinfo

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(engines.ggufinfo.mmap, "mmap", no_memory)
    with pytest.raises(MemoryError):
        read_gguf_info(tiny)
