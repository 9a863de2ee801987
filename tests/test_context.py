import pytest

from engines.base import ContextOverflowError, TemplateError
from sessions.context import BLOCK_MESSAGES, DROP_BLOCK, build_prompt, plan_window, split_rounds
from sessions.history_window import Entry, TokenEstimate, Window


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


# --- planning from a window -------------------------------------------------------------


class Counter:
    """count(), recording how many messages each call was given."""

    def __init__(self, cost=count):
        self.cost, self.calls = cost, []

    def __call__(self, messages):
        self.calls.append(len(messages))
        return self.cost(messages)


def test_a_long_history_is_counted_only_as_far_as_the_budget_reaches():
    seen = {}
    for rounds in (50, 5_000):
        counter = Counter()
        long = [{**m, "content": m["content"][:1] + m["content"][-2:]} for m in history(rounds)]
        plan = build_prompt(system="sys", history=long, count_tokens=counter, budget=200)
        seen[rounds] = sum(counter.calls)
        assert plan.prompt_tokens == count(plan.messages) <= 200
        assert plan.messages[-1]["content"] == "now"
    # Not 10,000 messages, nor a binary search over them: about the window, whatever the length.
    assert abs(seen[5_000] - seen[50]) <= BLOCK_MESSAGES and seen[5_000] < 4 * len(plan.messages)
    assert plan.dropped_rounds > 4_950  # a history in memory still reports its rounds


def window_at(depth: int, messages: list) -> Window:
    """A window over `messages` as the end of a branch whose first one is at `depth`."""
    estimate = TokenEstimate(count)

    def read(limit):
        page = [Entry(m, depth + i) for i, m in enumerate(messages)]
        return page, False  # more above, never read

    return Window(read, estimate)


def test_the_cut_is_anchored_on_the_branch_depth_not_on_what_was_read():
    cuts = set()
    for extra in range(DROP_BLOCK):  # four turns of a chat deep in a long branch
        messages = history(30 + extra)[1:]  # starts with an assistant line
        plan = plan_window(window_at(10_001, messages), system="s", count_tokens=count, budget=90)
        assert plan.dropped_rounds is None and plan.prompt_tokens <= 90
        first = plan.messages[1]["content"]
        depth = 10_001 + next(i for i, m in enumerate(messages) if m["content"] == first)
        assert depth % BLOCK_MESSAGES == 0 and plan.dropped_messages == depth
        cuts.add(first)
    assert len(cuts) <= 2


def test_an_estimate_that_falls_short_is_corrected_by_the_exact_count():
    def framed(messages):  # 5 tokens of framing per message, which the estimate never sees…
        return count(messages) + 5 * len(messages) * (len(messages) > 3)

    counter = Counter(framed)
    plan = build_prompt(system="sys", history=history(40), count_tokens=counter, budget=150)
    assert plan.prompt_tokens == framed(plan.messages) <= 150
    assert sum(1 for n in counter.calls if n > 3) <= 4  # a few exact counts, not a search


def test_a_template_that_cannot_count_one_message_falls_back_to_a_rough_size():
    def strict(messages):  # an assistant line right after a user one is "not alternating"
        if len(messages) == 2 and messages[-1]["role"] == "assistant":
            raise TemplateError("Conversation roles must alternate")
        return count(messages)

    plan = build_prompt(system="sys", history=history(40), count_tokens=strict, budget=150)
    assert plan.prompt_tokens == count(plan.messages) <= 150
    assert plan.dropped_rounds > 0 and plan.messages[-1]["content"] == "now"
