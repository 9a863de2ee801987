"""A GGUF header walked once is not walked again while the file is unchanged
(engines/gguf_checked.py); a changed, fresh or damaged file always is."""

from __future__ import annotations

import json
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
    [entry] = gguf_checked.cache_dir().iterdir()
    assert str(model.resolve()) in entry.read_text(encoding="utf-8")


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
    assert not gguf_checked.cache_dir().exists()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        '{"path": "PATH", "identity": IDENTITY, "info": {"architecture": 3}}',
        '{"path": "PATH", "identity": IDENTITY, "info": {"nope": 1}}',
        '{"path": "another.gguf", "identity": IDENTITY, "info": INFO}',
    ],
)
def test_a_damaged_cache_entry_is_ignored_and_replaced(model, monkeypatch, content):
    read_gguf_info(model)
    [entry] = gguf_checked.cache_dir().iterdir()
    written = json.loads(entry.read_text(encoding="utf-8"))
    content = (
        content.replace("PATH", written["path"])
        .replace("IDENTITY", json.dumps(written["identity"]))
        .replace("INFO", json.dumps(written["info"]))
    )
    entry.write_text(content, encoding="utf-8")
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


def test_each_model_has_its_own_entry(model, monkeypatch, tmp_path):
    other = tmp_path / "other.gguf"
    shutil.copyfile(model, other)
    calls = walks(monkeypatch)
    for path in (model, other, model, other):
        assert read_gguf_info(path).architecture == "llama"
    assert len(calls) == 2
    assert len(list(gguf_checked.cache_dir().iterdir())) == 2
