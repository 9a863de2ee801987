"""A chat whose persona cannot be used replies without it and says so in the plan's notes (the
prompt inspector and `ask --dry-run` show them), in the user's language."""

from __future__ import annotations

import pytest

from engines.base import GenerationParams
from engines.fake import FakeEngine
from engines.i18n import set_language
from sessions.inspector import inspect, report
from sessions.personas import PersonaStore
from sessions.prompt import DEFAULT_SYSTEM, plan_prompt
from sessions.store import Store


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "sessions.db")
    yield store
    store.close()


@pytest.fixture
def chinese():
    set_language("zh")
    yield
    set_language("en")


def missing_persona_notes(store, personas) -> tuple[str, list[str]]:
    session = store.create_session(persona="无名氏")
    plan = plan_prompt(session, [], FakeEngine(), GenerationParams(), personas=personas)
    return plan.messages[0]["content"], plan.notes


def test_a_persona_not_in_the_store_is_named_in_the_notes(store, tmp_path):
    system, notes = missing_persona_notes(store, PersonaStore(tmp_path / "personas"))
    assert system == DEFAULT_SYSTEM
    assert notes == ["persona '无名氏' not found; replying without it"]


def test_without_a_persona_store_the_note_says_none_was_given(store):
    system, notes = missing_persona_notes(store, None)
    assert system == DEFAULT_SYSTEM
    assert notes == ["persona '无名氏' not given; replying without it"]


def test_the_notes_are_in_chinese_in_the_inspector(store, tmp_path, chinese):
    engine = FakeEngine()
    session = store.create_session(persona="无名氏")
    personas = PersonaStore(tmp_path / "personas")
    plan = plan_prompt(session, [], engine, GenerationParams(), personas=personas)
    assert plan.notes == ["找不到角色 '无名氏'；不带角色回复"]
    shown = report(inspect(plan, engine, 200), engine)
    assert "找不到角色 '无名氏'" in shown and "not found" not in shown
    _system, notes = missing_persona_notes(store, None)
    assert notes == ["未提供角色 '无名氏'；不带角色回复"]
