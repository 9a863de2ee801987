"""Read what we need from a GGUF header, validating the file on the way.

`read_gguf_info` walks the header itself (GGUF v2/v3: magic, version, tensor and key counts,
the key/value pairs, the tensor infos) over a memory map and skips arrays without decoding
them: a real model's 49k-token vocabulary is passed over in milliseconds, where the `gguf`
package's reader parses every string in Python (seconds). `open_gguf` keeps that reader for
what needs the tensors (engines/gguf_lora.py).
"""

from __future__ import annotations

import dataclasses
import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines import gguf_checked
from engines.errors import CosplayError, ModelLoadError
from engines.i18n import _

GGUF_MAGIC = b"GGUF"
# What reading a truncated or damaged file raises, with `gguf.GGUFReader` or our own walk
# (ValueError for a bad magic, version or type; IndexError or struct.error when the file ends
# early). Not MemoryError: that is no damage.
GGUF_READ_ERRORS = (ValueError, LookupError, OSError, struct.error, OverflowError)

# The GGUF spec's value types: scalars by their struct format, then a string and an array.
SCALARS = {
    **{0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?"},
    **{10: "Q", 11: "q", 12: "d"},
}
STRING, ARRAY = 8, 9
UINT32 = 4
MAX_ARRAY_NESTING = 8  # arrays of arrays of …: none in practice; a deep chain is damage
MAX_DIMS = 4  # GGML_MAX_DIMS
DEFAULT_ALIGNMENT = 32
# ggml tensor types: (elements per block, bytes per block), as gguf.constants.GGML_QUANT_SIZES
# (tests/test_gguf_header.py checks they agree). A type missing here is not size-checked.
BLOCKS = {
    **{0: (1, 4), 1: (1, 2), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8)},
    **{2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40)},
    **{10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210)},
    **{15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50)},
    **{20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136), 29: (256, 56)},
    **{30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18)},
}


@dataclass(frozen=True)
class GGUFInfo:
    """The few header fields of a GGUF file the app needs before llama.cpp loads it."""

    architecture: str
    context_length: int
    chat_template: str | None
    file_type: str  # "model" or "adapter"


def read_gguf_info(path: Path) -> GGUFInfo:
    if not path.exists():
        raise ModelLoadError(_("The model file {path} does not exist; check the path.", path=path))
    if not path.is_file():
        raise ModelLoadError(
            _("{path} is a directory, not a .gguf file; pass the file itself.", path=path)
        )
    checked = _recalled(path)
    if checked is not None:
        return checked
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            _(
                "{path} is not a GGUF file; the CPU engine needs a .gguf model "
                "(use --engine gpu for a Hugging Face model directory).",
                path=path,
            )
        )
    try:
        values = read_header(path)
        architecture = _text(values, "general.architecture") or ""
        context_length = values.get(f"{architecture}.context_length")
        info = GGUFInfo(
            architecture=architecture,
            context_length=context_length if type(context_length) is int else 0,
            chat_template=_text(values, "tokenizer.chat_template"),
            file_type=_text(values, "general.type") or "model",
        )
    except GGUF_READ_ERRORS as exc:
        raise ModelLoadError(
            _(
                "{path} is truncated or corrupt ({problem}); download it again.",
                path=path,
                problem=f"{type(exc).__name__}: {exc}",
            )
        ) from None
    gguf_checked.remember(path, dataclasses.asdict(info))  # not walked again while unchanged
    return info


def _recalled(path: Path) -> GGUFInfo | None:
    """The info of a file that passed the walk before and has not changed since."""
    info = gguf_checked.recall(path)
    if info is None or set(info) != set(GGUFInfo.__dataclass_fields__):
        return None
    types = (str, int, (str, type(None)), str)
    fields = (info[name] for name in GGUFInfo.__dataclass_fields__)
    if all(isinstance(value, kind) for value, kind in zip(fields, types, strict=True)):
        return GGUFInfo(**info)
    return None


def _text(values: dict[str, object], key: str) -> str | None:
    value = values.get(key)
    return value.decode("utf-8") if isinstance(value, bytes) else None


def read_header(path: Path) -> dict[str, object]:
    """The scalar and string values of a GGUF file's header by key (strings as bytes; arrays
    are skipped, not read), after checking the whole header and that every tensor's data lies
    inside the file. A damaged file raises ValueError, KeyError or struct.error."""
    return read_header_and_parameters(path)[0]


def read_header_and_parameters(path: Path) -> tuple[dict[str, object], int]:
    """`read_header`'s values and the number of weights in the tensors (the parameter count),
    from the tensor infos alone (engines/catalog.py)."""
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ValueError("the file does not start with GGUF")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            header = _Header(data)
            return header.read(), header.parameters


class _Header:
    """A walk through the header in the memory map `data`; every read stays inside it."""

    def __init__(self, data: mmap.mmap):
        self.data, self.size, self.pos = data, len(data), 4
        self.parameters = 0  # elements in all tensors, summed by read()
        (version,) = struct.unpack_from("<I", data, 4)
        order = "<" if version & 0xFFFF else ">"  # a big-endian file reads 0 in the low half
        self.formats = {fmt: struct.Struct(order + fmt) for fmt in set(SCALARS.values())}

    def read(self) -> dict[str, object]:
        version = self.scalar("I")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not one this reader knows (2 or 3)")
        tensor_count = self.count("tensor", 8 + 4 + 4 + 8)
        kv_count = self.count("key", 8 + 4 + 1)
        values: dict[str, object] = {}
        keys: set[str] = set()
        for _key in range(kv_count):
            key = self.string().decode("utf-8")
            if key in keys:
                raise KeyError(f"the key {key} appears twice")
            keys.add(key)
            kind = self.scalar("I")
            if key == "general.alignment" and kind != UINT32:
                raise ValueError("general.alignment is not a uint32")
            value = self.value(kind)
            if value is not None:
                values[key] = value
        tensors = [self.tensor_info() for _tensor in range(tensor_count)]
        if len({name for name, *_ in tensors}) < len(tensors):
            raise ValueError("two tensors have the same name")
        alignment = values.get("general.alignment", DEFAULT_ALIGNMENT)
        if not alignment or alignment & (alignment - 1):
            raise ValueError(f"the alignment {alignment} is not a power of two")
        start = -(-self.pos // alignment) * alignment
        self.parameters = sum(elements for _, elements, _, _ in tensors)
        for name, elements, kind, offset in tensors:
            block, block_bytes = BLOCKS.get(kind, (1, 0))
            if start + offset + elements * block_bytes // block > self.size:
                raise ValueError(f"the data of tensor {name} runs past the end of the file")
        return values

    def scalar(self, fmt: str):
        reader = self.formats[fmt]
        (value,) = reader.unpack_from(self.data, self.pos)
        self.pos += reader.size
        return value

    def count(self, what: str, least_bytes: int) -> int:
        """A uint64 count of items of at least `least_bytes` each, which must fit in the rest of
        the file (an absurd count fails here, before any loop or allocation)."""
        count = self.scalar("Q")
        if count * least_bytes > self.size - self.pos:
            raise ValueError(f"the {what} count {count} is more than the file can hold")
        return count

    def string(self) -> bytes:
        length = self.count("byte", 1)
        self.pos += length
        return self.data[self.pos - length : self.pos]

    def value(self, kind: int, depth: int = 0) -> object:
        """A scalar or a string; an array is skipped and gives None."""
        if kind in SCALARS:
            return self.scalar(SCALARS[kind])
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            if depth == MAX_ARRAY_NESTING:
                raise ValueError(f"arrays nest deeper than {MAX_ARRAY_NESTING} levels")
            self.skip_array(depth)
            return None
        raise ValueError(f"unknown value type {kind} at byte {self.pos - 4}")

    def skip_array(self, depth: int) -> None:
        kind = self.scalar("I")
        if kind in SCALARS:
            size = self.formats[SCALARS[kind]].size
            count = self.count("array item", size)
            self.pos += count * size
        elif kind == STRING:  # each string's length must be read to find the next
            count = self.count("array string", 8)
            length, data, pos = self.formats["Q"].unpack_from, self.data, self.pos
            for _string in range(count):
                pos += 8 + length(data, pos)[0]
            self.pos = pos
            if pos > self.size:
                raise ValueError("a string array runs past the end of the file")
        else:
            for _item in range(self.count("array item", 4 + 8)):
                self.value(kind, depth + 1)

    def tensor_info(self) -> tuple[str, int, int, int]:
        """(name, element count, ggml type, offset in the data section)."""
        name = self.string().decode("utf-8")
        n_dims = self.scalar("I")
        if n_dims > MAX_DIMS:
            raise ValueError(f"tensor {name} has {n_dims} dimensions (at most {MAX_DIMS})")
        elements = 1
        for _dim in range(n_dims):
            elements *= self.scalar("Q")
        return name, elements, self.scalar("I"), self.scalar("Q")


def open_gguf(path: Path, damaged: Callable[[Exception], CosplayError]):
    """A GGUFReader of `path` and a getter of its metadata values (None when absent); a file
    the reader refuses raises `damaged(exc)` (MemoryError is not damage: it passes)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path, "r")
    except GGUF_READ_ERRORS as exc:
        raise damaged(exc) from None

    def value(key: str):
        field = reader.get_field(key)
        return field.contents() if field is not None else None

    return reader, value
