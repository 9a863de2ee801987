"""A GGUF header walked once is not walked again while the file is unchanged
(engines/gguf_checked.py); a changed, fresh or damaged file always is."""

from __future__ import annotations

import os
import shutil

import pytest

from engines import gguf_checked, ggufinfo
from engines.errors import ModelLoadError
from engines.ggufinfo import read_gguf_info
from tests.real_model import shipped_gguf


@pytest.fixture
def model(tmp_path, monkeypatch):
    """A copy of the real SmolLM2 GGUF, remembered at once (as if written long ago)."""
    monkeypatch.setattr(gguf_checked, "SETTLED_S", -1.0)
    path = tmp_path / "model.gguf"
    shutil.copyfile(shipped_gguf(), path)
    return path


def walks(monkeypatch) -> list:
    calls = []
    real = ggufinfo.read_header

    def counted(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(ggufinfo, "read_header", counted)
    return calls


def test_an_unchanged_file_is_walked_once(model, monkeypatch):
    calls = walks(monkeypatch)
    first = read_gguf_info(model)
    again = read_gguf_info(model)
    assert again == first and first.architecture == "llama" and "im_start" in first.chat_template
    assert len(calls) == 1
    assert str(model.resolve()) in gguf_checked.cache_file().read_text(encoding="utf-8")


def test_a_changed_file_is_walked_again_and_damage_is_still_found(model, monkeypatch):
    read_gguf_info(model)
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])  # truncated: another size, mtime and ctime
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        read_gguf_info(model)


def test_a_file_written_just_now_is_not_remembered(model, monkeypatch):
    monkeypatch.setattr(gguf_checked, "SETTLED_S", 60.0)
    calls = walks(monkeypatch)
    read_gguf_info(model)
    read_gguf_info(model)
    assert len(calls) == 2
    assert not gguf_checked.cache_file().exists()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        '{"PATH": {"identity": "IDENTITY", "info": {"architecture": 3}}}',
        '{"PATH": {"identity": "IDENTITY", "info": {"nope": 1}}}',
    ],
)
def test_a_damaged_cache_is_ignored_and_replaced(model, monkeypatch, content):
    stat = model.stat()
    identity = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    content = content.replace('"PATH"', f'"{model.resolve()}"').replace('"IDENTITY"', str(identity))
    cache = gguf_checked.cache_file()
    cache.parent.mkdir(parents=True)
    cache.write_text(content, encoding="utf-8")
    calls = walks(monkeypatch)
    assert read_gguf_info(model).architecture == "llama"
    assert len(calls) == 1
    assert read_gguf_info(model).architecture == "llama"
    assert len(calls) == 1  # the walk's result replaced the damaged entry


def test_an_unwritable_cache_only_costs_the_walk(model, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the cache dir cannot be made
    calls = walks(monkeypatch)
    assert read_gguf_info(model).architecture == "llama"
    assert read_gguf_info(model).architecture == "llama"
    assert len(calls) == 2


def test_at_most_max_entries_are_kept(model, monkeypatch, tmp_path):
    monkeypatch.setattr(gguf_checked, "MAX_ENTRIES", 2)
    links = []
    for n in range(3):
        link = tmp_path / f"link-{n}.gguf"
        os.link(model, link)
        links.append(link)
    for link in links:
        gguf_checked.remember(link, {"architecture": "llama"})
    kept = gguf_checked.cache_file().read_text(encoding="utf-8")
    assert "link-0" not in kept and "link-1" in kept and "link-2" in kept
