"""Read what we need from a GGUF header (with the `gguf` package), validating the file on the way."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines.base import CosplayError, ModelLoadError

GGUF_MAGIC = b"GGUF"
# What `gguf.GGUFReader` raises on a truncated or damaged file (ValueError for a bad magic,
# version or type; IndexError when the file ends early). Not MemoryError: that is no damage.
GGUF_READ_ERRORS = (ValueError, LookupError, OSError, struct.error, OverflowError)


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    context_length: int
    chat_template: str | None
    file_type: str  # "model" or "adapter"


def read_gguf_info(path: Path) -> GGUFInfo:
    if not path.exists():
        raise ModelLoadError(f"The model file {path} does not exist; check the path.")
    if not path.is_file():
        raise ModelLoadError(f"{path} is a directory, not a .gguf file; pass the file itself.")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            f"{path} is not a GGUF file; the CPU engine needs a .gguf model "
            "(use --engine gpu for a Hugging Face model directory)."
        )
    _, value = open_gguf(
        path,
        lambda exc: ModelLoadError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); download it again."
        ),
    )
    architecture = value("general.architecture") or ""
    return GGUFInfo(
        architecture=architecture,
        context_length=int(value(f"{architecture}.context_length") or 0),
        chat_template=value("tokenizer.chat_template"),
        file_type=value("general.type") or "model",
    )


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
