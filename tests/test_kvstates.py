"""Saved KV caches of sessions: bound before a reply, written after, capped, deleted with the
session, never a reason to fail a reply — and, on the real model, a restart re-reads nothing."""

from __future__ import annotations

import os
import threading
import time

import pytest

from engines.base import GenerationParams
from engines.fake import FakeEngine
from sessions.kvstates import SessionStates, state_path
from sessions.models import Role
from sessions.store import Store
from sessions.turns import run_reply
from tests.test_real_model import ask


class StatefulFake(FakeEngine):
    """A scripted engine that writes `size` bytes as its state and records the bindings."""

    def __init__(self, size=100, fail=False):
        super().__init__(["ok"])
        self.size, self.fail, self.bound = size, fail, []

    def bind_state(self, path):
        self.bound.append(path)

    def save_state(self, path):
        if self.fail:
            raise OSError(28, "No space left on device")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * self.size)
        return self.size


def reply(store, engine, session_id):
    user = store.add_message(session_id, Role.USER, "hi")
    return run_reply(
        store, engine, session_id=session_id, parent_id=user.id,
        prompt=[{"role": "user", "content": "hi"}], params=GenerationParams(),
        cancel=threading.Event(),
    )  # fmt: skip


def test_state_is_bound_before_and_saved_after_a_reply_and_deleted_with_the_session(tmp_path):
    store = Store(tmp_path / "cosplay.db")
    session = store.create_session()
    engine = StatefulFake()
    reply(store, engine, session.id)
    path = state_path(tmp_path, session.id)
    assert engine.bound == [path] and path.stat().st_size == 100
    store.delete_session(session.id)
    assert not path.exists()


def test_least_recently_used_states_are_evicted_past_the_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("COSPLAY_KV_CACHE_MB", str(250 / 1024 / 1024))  # room for two
    store = Store(tmp_path / "cosplay.db")
    ids = [store.create_session().id for _ in range(3)]
    engine = StatefulFake(size=100)
    for session_id in ids:
        reply(store, engine, session_id)
        old = time.time() - 100 + session_id  # distinct, increasing use times
        os.utime(state_path(tmp_path, session_id), (old, old))
    assert not state_path(tmp_path, ids[0]).exists()
    assert state_path(tmp_path, ids[1]).exists() and state_path(tmp_path, ids[2]).exists()


def test_a_cap_of_zero_turns_it_off_and_a_failed_save_never_fails_the_reply(tmp_path, monkeypatch):
    store = Store(tmp_path / "cosplay.db")
    session = store.create_session()
    saved = reply(store, StatefulFake(fail=True), session.id)
    assert saved.content == "ok"
    monkeypatch.setenv("COSPLAY_KV_CACHE_MB", "0")
    engine = StatefulFake()
    reply(store, engine, session.id)
    assert engine.bound == [] and not state_path(tmp_path, session.id).exists()
    assert SessionStates(tmp_path).cap == 0


@pytest.mark.slow
def test_after_a_restart_a_turn_evaluates_only_its_new_tokens(smollm2, tmp_path):
    """Two `cosplay ask` processes on one session: the second restores the first's KV cache."""
    home = tmp_path / "home"
    first = ask(smollm2["q8_0"], home, "--new", text="What is the capital of France?")
    assert first.returncode == 0, first.stderr
    assert state_path(home, 1).is_file()
    second = ask(smollm2["q8_0"], home, "--session", "1", text="And Germany?")
    assert second.returncode == 0, second.stderr
    store = Store(home / "cosplay.db")
    replies = [m for m in store.branch(1) if m.role == Role.ASSISTANT]
    one, two = replies[0].meta, replies[1].meta
    new_tokens = two["prompt_tokens"] - (one["prompt_tokens"] + one["completion_tokens"])
    assert two["prompt_eval_tokens"] <= 1.1 * new_tokens + 1, (one, two)
    store.close()
