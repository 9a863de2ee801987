"""GGUF files already checked, remembered by file identity, so that loading a model again does
not walk its header again (engines/ggufinfo.py: ~10 ms for SmolLM2's 49k-token vocabulary,
more for a 150k one; every `cosplay ask` paid it).

One JSON file in the user cache dir (platformdirs: $XDG_CACHE_HOME/cosplay on Linux) maps a
file's resolved path to its size, mtime, ctime and inode and what the walk read. A file that
changed in any of these is walked again. A file written in the last few seconds is not
remembered: a rewrite of the same size within the filesystem's timestamp granularity would
keep its identity (git's "racily clean" problem), and a model a user loads was written long
before. The cache only saves time: one that cannot be read or written is ignored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

MAX_ENTRIES = 64  # the models a user loads; the oldest entry goes first
SETTLED_S = 5.0  # a file changed more recently than this is not remembered


def cache_file() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("cosplay", appauthor=False)) / "gguf-checked.json"


def _identity(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def _entries(file: Path) -> dict:
    try:
        entries = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def recall(path: Path) -> dict | None:
    """What the walk read from `path` when it was checked, if the file is unchanged since."""
    try:
        key, stat = str(path.resolve()), path.stat()
    except OSError:
        return None
    entry = _entries(cache_file()).get(key)
    if isinstance(entry, dict) and entry.get("identity") == _identity(stat):
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
        file = cache_file()
        entries = _entries(file)
        entries.pop(key, None)
        entries[key] = {"identity": _identity(stat), "info": info}
        kept = dict(list(entries.items())[-MAX_ENTRIES:])
        with written_atomically(file) as temporary:
            temporary.write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")
    except OSError:
        pass
