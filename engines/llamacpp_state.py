"""The CPU engine's KV cache across restarts: a session's state file, written after a reply
and restored before the next one when it matches and helps.

A file is a header (JSON: the fingerprint of what the cache depends on, the text and token
ids it holds) and llama.cpp's sequence state (`llama_state_seq_get_data`). It is written
atomically, restored only when its fingerprint matches the loaded model, adapter, template
and context size and it shares more of the prompt than the live cache, and deleted when it
turns out damaged (never a reason to fail a reply).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import struct
from pathlib import Path

from engines.atomic import written_atomically

STATE_FORMAT = 1  # bump when what a state file holds changes
STATE_MAGIC = b"COSPLAYKV1\n"

log = logging.getLogger("cosplay.llama_cpp")


class KVStateFiles:
    """Mixed into LlamaCppEngine; uses its _lock, _llm, _cache, _adapter_sources,
    active_adapter, model_path, template, template_name and context_length."""

    _state_file: Path | None = None  # a saved KV cache to restore when it helps

    def state_fingerprint(self) -> str:
        """What a saved KV cache depends on: the model file, adapter, template, context size."""
        import llama_cpp

        adapter = self._adapter_sources.get(self.active_adapter or "")
        return fingerprint(
            format=STATE_FORMAT,
            llama_cpp=llama_cpp.__version__,
            model=file_identity(self.model_path),
            adapter=file_identity(adapter) if adapter else None,
            adapter_scale=1.0,
            template=[self.template_name, self.template.source],
            n_ctx=self.context_length,
            kv_types="f16",
        )

    def bind_state(self, path: Path | None) -> None:
        """The state file of the session the next replies belong to: restored before a reply
        when it shares more with the prompt than the live cache does."""
        self._state_file = Path(path) if path else None

    def save_state(self, path: Path) -> int:
        """Write the live KV cache to `path` (atomically); return its size in bytes, 0 if empty."""
        import llama_cpp

        with self._lock:
            if self._llm is None:  # closed (the app quit while the reply was being saved)
                return 0
            # The KV cache may hold a few more tokens than the cache keeps (a reply cut at a
            # character, an aborted prompt): the file holds what both agree on.
            live, kept = self._llm.input_ids[: self._llm.n_tokens], self._cache.tokens
            evaluated = 0
            for a, b in zip(live.tolist(), kept, strict=False):
                if a != b:
                    break
                evaluated += 1
            if evaluated == 0:
                return 0
            size = llama_cpp.llama_state_seq_get_size(self._llm.ctx, 0)
            buffer = (ctypes.c_uint8 * size)()
            written = llama_cpp.llama_state_seq_get_data(self._llm.ctx, buffer, size, 0)
            header = {
                "fingerprint": self.state_fingerprint(),
                "text": self._cache.text,
                "tokens": self._cache.tokens,
                "evaluated": evaluated,
            }
            write_state(path, header, memoryview(buffer)[:written])
            return path.stat().st_size

    def _restore_if_better(self, prompt: str) -> None:
        """Load the bound state file when it covers more of `prompt` than the live cache."""
        path, self._state_file = self._state_file, None  # considered once per binding
        if path is None or not path.is_file():
            return
        try:
            header, offset = read_state_header(path)
            if header.get("fingerprint") != self.state_fingerprint():
                log.debug("KV state %s is for another model or settings; ignored", path)
                return
            text, tokens = str(header["text"]), [int(t) for t in header["tokens"]]
            evaluated = int(header["evaluated"])
            if not 0 < evaluated <= len(tokens) <= self.context_length:
                raise ValueError("token counts out of range")
            if _shared(prompt, text) <= _shared(prompt, self._cache.text):
                return
            blob = read_state_blob(path, offset)
            self._load_kv(blob, tokens[:evaluated])
            self._cache.set(text, tokens)
            os.utime(path)  # recently used: the last to be evicted
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.debug("KV state %s discarded: %s", path, exc)
            self._llm.reset()
            self._cache.clear()
            path.unlink(missing_ok=True)

    def _load_kv(self, blob: bytes, evaluated: list[int]) -> None:
        import llama_cpp

        llm = self._llm
        llm.reset()
        memory = llama_cpp.llama_get_memory(llm.ctx)
        llama_cpp.llama_memory_clear(memory, True)
        data = (ctypes.c_uint8 * len(blob)).from_buffer_copy(blob)
        if llama_cpp.llama_state_seq_set_data(llm.ctx, data, len(blob), 0) == 0:
            raise ValueError("llama.cpp refused the saved state")
        llm.input_ids[: len(evaluated)] = evaluated
        llm.n_tokens = len(evaluated)
        llm._requires_eval = True


def _shared(a: str, b: str) -> int:
    """Length of the common prefix of two strings."""
    return len(os.path.commonprefix([a, b])) if a and b else 0


def fingerprint(**facts: object) -> str:
    """A short digest of everything a saved KV cache depends on."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def file_identity(path: str | Path) -> dict[str, object]:
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def write_state(path: Path, header: dict, blob: bytes) -> None:
    encoded = json.dumps(header, ensure_ascii=False).encode("utf-8")
    with written_atomically(path) as partial, partial.open("wb") as handle:
        handle.write(STATE_MAGIC + struct.pack("<Q", len(encoded)) + encoded)
        handle.write(blob)


def read_state_header(path: Path) -> tuple[dict, int]:
    """The header of a state file and the offset where its blob starts; ValueError if damaged."""
    with path.open("rb") as handle:
        if handle.read(len(STATE_MAGIC)) != STATE_MAGIC:
            raise ValueError("not a Cosplay KV state file")
        (size,) = struct.unpack("<Q", handle.read(8))
        if size > 64 * 1024 * 1024:
            raise ValueError("header too large")
        header = json.loads(handle.read(size).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    return header, len(STATE_MAGIC) + 8 + size


def read_state_blob(path: Path, offset: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read()
