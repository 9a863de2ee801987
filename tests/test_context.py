import pytest

from engines.base import ContextOverflowError
from sessions.context import DROP_BLOCK, build_prompt, split_rounds


def count(messages):
    """One token per character: easy to reason about."""
    return sum(len(m["content"]) for m in messages)


def history(rounds):
    messages = []
    for i in range(rounds):
        messages += [
            {"role": "user", "content": f"u{i:02d}"},
            {"role": "assistant", "content": f"a{i:02d}"},
        ]
    messages.append({"role": "user", "content": "now"})
    return messages


def test_everything_fits():
    plan = build_prompt(system="sys", history=history(3), count_tokens=count, budget=1000)
    assert plan.dropped_rounds == 0
    assert plan.messages[0] == {"role": "system", "content": "sys"}
    assert plan.prompt_tokens == count(plan.messages)


def test_oldest_rounds_are_dropped_in_blocks_and_the_persona_is_kept():
    # each round costs 6 tokens; system 3; the current round 3
    plan = build_prompt(
        system="sys", history=history(20), count_tokens=count, budget=3 + 3 + 6 * 10
    )
    assert plan.dropped_rounds % DROP_BLOCK == 0
    assert plan.dropped_rounds >= 10
    assert plan.messages[0]["content"] == "sys"
    assert plan.messages[-1]["content"] == "now"
    assert plan.prompt_tokens <= 66
    assert "left out" in plan.summary


def test_block_dropping_keeps_the_prefix_stable_over_several_turns():
    firsts = set()
    for extra in range(DROP_BLOCK - 1):
        plan = build_prompt(system="s", history=history(20 + extra), count_tokens=count, budget=120)
        firsts.add(plan.messages[1]["content"])
    assert len(firsts) <= 2  # the first kept message changes at most once in a block of turns


def test_max_history_rounds_is_honoured():
    plan = build_prompt(
        system="s", history=history(5), count_tokens=count, budget=1000, max_rounds=2
    )
    assert [m["content"] for m in plan.messages[1:]] == ["u03", "a03", "u04", "a04", "now"]
    assert plan.dropped_rounds == 3


def test_examples_are_dropped_before_history_last_block_first():
    examples = [[{"role": "user", "content": "e1" * 5}], [{"role": "user", "content": "e2" * 5}]]
    plan = build_prompt(
        system="s", history=history(2), count_tokens=count, budget=1 + 15 + 10, examples=examples
    )
    contents = [m["content"] for m in plan.messages]
    assert "e1" * 5 in contents and "e2" * 5 not in contents
    assert plan.dropped_examples == 1 and plan.dropped_rounds == 0


def test_overflow_of_persona_and_message_is_a_clear_error():
    with pytest.raises(ContextOverflowError, match="more than the 5 this context allows"):
        build_prompt(system="a long persona", history=history(0), count_tokens=count, budget=5)


def test_split_rounds_groups_from_each_user_message():
    rounds = split_rounds(history(2))
    assert [len(r) for r in rounds] == [2, 2, 1]
