"""engines/checked.py through GenerationParams: every value is converted and checked when it
is set, at construction, on assignment and in dataclasses.replace; a bad one is one sentence
naming the field, worded as engines/validation.py words pydantic's errors."""

from __future__ import annotations

import dataclasses

import pytest

from engines.base import CosplayError, GenerationParams, GenerationStats
from engines.checked import InvalidValue
from engines.i18n import set_language


def test_defaults_and_lenient_conversions_a_settings_form_needs():
    params = GenerationParams(
        temperature="0.5", top_k="40", max_new_tokens=3.0, seed="", do_sample="false", stop=("x",)
    )
    assert (params.temperature, params.top_k, params.max_new_tokens) == (0.5, 40, 3)
    assert (params.seed, params.do_sample, params.stop) == (None, False, ["x"])
    assert isinstance(params.temperature, float) and isinstance(params.top_k, int)
    assert GenerationParams(seed="7").seed == 7
    assert GenerationParams().dry_sequence_breakers == ["\n", ":", '"', "*"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"temperature": 7}, "invalid temperature: must be ≤ 5 (got 7)."),
        ({"top_p": 0}, "invalid top_p: must be > 0 (got 0)."),
        ({"seed": -1}, "invalid seed: must be ≥ 0 (got -1)."),
        ({"seed": 2**32}, "invalid seed: must be < 4294967296 (got 4294967296)."),
        ({"top_k": "many"}, "invalid top_k: must be a whole number (got 'many')."),
        ({"max_new_tokens": 2.5}, "invalid max_new_tokens: must be a whole number (got 2.5)."),
        ({"temperature": float("inf")}, "invalid temperature: must be a finite number (got inf)."),
        ({"temperature": True}, "invalid temperature: must be a number (got True)."),
        ({"do_sample": "maybe"}, "invalid do_sample: must be true or false (got 'maybe')."),
        ({"stop": "END"}, "invalid stop: must be a list (got 'END')."),
        ({"stop": ["ok", 3]}, "invalid stop: must be a list."),
        ({"dry_sequence_breakers": [""]}, "a DRY sequence breaker cannot be empty"),
        ({"dry_sequence_breakers": ["x" * 41]}, "at most 40 characters"),
        ({"dry_sequence_breakers": ["x"] * 65}, "must have at most 64 items"),
    ],
)
def test_a_bad_value_is_one_sentence_naming_the_field(values, message):
    with pytest.raises(InvalidValue) as caught:
        GenerationParams(**values)
    assert message in str(caught.value)
    assert caught.value.field == next(iter(values))
    assert isinstance(caught.value, CosplayError) and isinstance(caught.value, ValueError)


def test_an_unknown_field_is_refused_and_the_known_ones_are_named():
    with pytest.raises(InvalidValue, match="invalid temprature: is not a known field") as caught:
        GenerationParams(temprature=0.5)
    assert "temperature" in caught.value.problem


def test_assignment_is_checked_and_leaves_the_old_value():
    params = GenerationParams()
    with pytest.raises(InvalidValue):
        params.temperature = 9
    assert params.temperature == 0.8
    with pytest.raises(InvalidValue):
        params.temprature = 0.5
    params.max_new_tokens = "16"
    assert params.max_new_tokens == 16


def test_replace_checks_and_to_dict_round_trips():
    params = GenerationParams(temperature=0.3, stop=["\nUser:"])
    assert dataclasses.replace(params, max_new_tokens=8).max_new_tokens == 8
    with pytest.raises(InvalidValue):
        dataclasses.replace(params, top_p=2)
    values = params.to_dict()
    assert GenerationParams(**values) == params
    values["stop"].append("x")  # a copy: the params keep their own list
    assert params.stop == ["\nUser:"]
    assert params.to_dict(exclude_defaults=True) == {"temperature": 0.3, "stop": ["\nUser:"]}


def test_the_problem_is_in_chinese_when_the_ui_is():
    set_language("zh")
    try:
        with pytest.raises(InvalidValue) as caught:
            GenerationParams(temperature=7)
        text = str(caught.value)
        assert "temperature" in text and "无效" in text and "7" in text
    finally:
        set_language("en")


def test_stats_are_plain_data():
    stats = GenerationStats(completion_tokens=11, ttft_s=0.5, total_s=1.5, seed=3)
    assert stats.tokens_per_s == 10.0
    assert stats.to_dict()["seed"] == 3
    assert GenerationStats(**stats.to_dict()) == stats
