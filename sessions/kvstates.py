"""Saved KV caches of sessions, so a chat reopened after a restart does not re-read its history.

An engine that can (the CPU engine: `bind_state`, `save_state`) gets the session's state file
before each reply and writes it after; the engine restores it only when it matches the model,
adapter, template and context size and covers more of the prompt than what it holds. Files
live in `<data dir>/kv/`, one per session, deleted with the session; their total is capped
(COSPLAY_KV_CACHE_MB, default 2048; 0 turns saving off), least recently used evicted first.
A state that cannot be written or read is never a reason to fail a reply.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.base import Engine

log = logging.getLogger("cosplay.kvstates")

DEFAULT_CAP_MB = 2048
CAP_VARIABLE = "COSPLAY_KV_CACHE_MB"
SUFFIX = ".kvstate"


def state_path(root: Path, session_id: int) -> Path:
    """Where a session's KV state lives under the data dir `root`."""
    return root / "kv" / f"session-{session_id}{SUFFIX}"


def cap_bytes() -> int:
    value = os.environ.get(CAP_VARIABLE, "")
    try:
        megabytes = float(value) if value.strip() else DEFAULT_CAP_MB
    except ValueError:
        log.warning(
            "%s=%r is not a number of megabytes; using %d", CAP_VARIABLE, value, DEFAULT_CAP_MB
        )
        megabytes = DEFAULT_CAP_MB
    return max(0, int(megabytes * 1024 * 1024))


class SessionStates:
    def __init__(self, root: Path, cap: int | None = None):
        self.root = Path(root)
        self.cap = cap_bytes() if cap is None else cap

    def bind(self, engine: Engine, session_id: int) -> None:
        """Offer the session's saved state to the engine for its next reply."""
        bind = getattr(engine, "bind_state", None)
        if bind is not None and self.cap > 0:
            bind(state_path(self.root, session_id))

    def save(self, engine: Engine, session_id: int) -> None:
        """Write the engine's KV cache as the session's state, then keep the total under the cap."""
        save = getattr(engine, "save_state", None)
        if save is None or self.cap <= 0:
            return
        path = state_path(self.root, session_id)
        try:
            save(path)
            self.evict()
        except Exception as exc:  # a full disk, a read-only dir…: the reply is saved already
            log.debug("KV state for session %s not saved: %s", session_id, exc)

    def evict(self) -> None:
        """Delete the least recently used states until the total fits the cap."""
        directory = self.root / "kv"
        files = []
        for path in directory.glob(f"*{SUFFIX}"):
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.cap:
                break
            path.unlink(missing_ok=True)
            total -= size

    def forget(self, session_id: int) -> None:
        state_path(self.root, session_id).unlink(missing_ok=True)
