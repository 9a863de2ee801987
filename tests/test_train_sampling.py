"""Length-grouped batches: less padding than random order, and the same order after a resume."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("transformers")

from engines.train.sampling import SeededLengthGroupedSampler  # noqa: E402

BATCH = 4


def dataset(n: int = 400) -> list[dict]:
    rng = random.Random(0)
    return [{"input_ids": [1] * rng.randint(8, 256)} for _ in range(n)]


def padded_tokens(items: list[dict], order: list[int]) -> int:
    total = 0
    for start in range(0, len(order), BATCH):
        lengths = [len(items[i]["input_ids"]) for i in order[start : start + BATCH]]
        total += max(lengths) * len(lengths)
    return total


def test_grouped_batches_compute_far_less_padding_than_random_ones():
    items = dataset()
    grouped = list(SeededLengthGroupedSampler(BATCH, items, seed=1))
    shuffled = list(range(len(items)))
    random.Random(1).shuffle(shuffled)
    assert sorted(grouped) == list(range(len(items)))  # every sample once per epoch
    real = sum(len(item["input_ids"]) for item in items)
    assert padded_tokens(items, grouped) < 1.1 * real < padded_tokens(items, shuffled)


def test_the_order_depends_only_on_seed_and_epoch():
    items = dataset()
    first, again = SeededLengthGroupedSampler(BATCH, items, seed=3), None
    epoch0 = list(first)
    first.set_epoch(1)
    epoch1 = list(first)
    again = SeededLengthGroupedSampler(BATCH, items, seed=3)  # as a resumed run builds it
    again.set_epoch(1)
    assert list(again) == epoch1 != epoch0
    assert list(SeededLengthGroupedSampler(BATCH, items, seed=4)) != epoch0
