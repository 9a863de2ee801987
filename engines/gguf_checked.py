"""GGUF files already checked, remembered by file identity, so that loading a model again does
not walk its header again (engines/ggufinfo.py: ~10 ms for SmolLM2's 49k-token vocabulary,
more for a 150k one; every `cosplay ask` paid it).

One small JSON file per model in the user cache dir (platformdirs: $XDG_CACHE_HOME/cosplay/
gguf-checked/ on Linux), named by a hash of the model's resolved path, holds the model's size,
mtime, ctime and inode and what the walk read: a load reads only its own file, and two
processes never rewrite each other's. A model that changed in any of these is walked again.
A file written in the last few seconds is not remembered: a rewrite of the same size within
the filesystem's timestamp granularity would keep its identity (git's "racily clean"
problem), and a model a user loads was written long before. The cache only saves time: an
entry that cannot be read or written is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

SETTLED_S = 5.0  # a file changed more recently than this is not remembered


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("cosplay", appauthor=False)) / "gguf-checked"


def _entry_file(key: str) -> Path:
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    return cache_dir() / f"{digest[:32]}.json"


def _identity(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def _entry(key: str) -> dict:
    try:
        entry = json.loads(_entry_file(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entry if isinstance(entry, dict) and entry.get("path") == key else {}


def recall(path: Path) -> dict | None:
    """What the walk read from `path` when it was checked, if the file is unchanged since."""
    try:
        key, stat = str(path.resolve()), path.stat()
    except OSError:
        return None
    entry = _entry(key)
    if entry.get("identity") == _identity(stat):
        info = entry.get("info")
        return info if isinstance(info, dict) else None
    return None


def remember(path: Path, info: dict) -> None:
    """Remember that `path` passed the walk with `info` (a settled file only)."""
    from engines.atomic import written_atomically

    try:
        key, stat = str(path.resolve()), path.stat()
        if time.time() - max(stat.st_mtime, stat.st_ctime) < SETTLED_S:
            return
        entry = {"path": key, "identity": _identity(stat), "info": info}
        with written_atomically(_entry_file(key)) as temporary:
            temporary.write_text(json.dumps(entry), encoding="utf-8")
    except OSError:
        pass
