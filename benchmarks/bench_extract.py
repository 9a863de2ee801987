"""Speaker attribution of `cosplay data extract` against the hand-labelled sample.

    python benchmarks/bench_extract.py            # per novel and per speaker
    python benchmarks/bench_extract.py --misses   # and every quote it got wrong or left out

The sample is tests/data/extract/*.txt with *.labels.jsonl (each top-level quote in order,
its speaker labelled by reading; null where the text names nobody); heldout/ was written and
labelled after the extractor and is not tuned on; heldout2/ was labelled by reading
before its writer had read the rules; heldout3/ after the rules for lines with no speech verb,
and not tuned on. Precision: of the quotes
given a speaker, the share given the right one; recall: of the quotes whose speaker the text
names, the share given the right one. Per speaker: the same over that speaker's quotes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.train.extract import extract_dialogue  # noqa: E402
from engines.train.speakers import quotes  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "extract"
CLASSICS = ("sanguo", "xiyou", "honglou", "shuihu")
MODERN = ("modern",)
# written and labelled after the extractor was built, and not tuned on
HELD_OUT = ("heldout/sanguo46", "heldout/modern2")
# written and labelled by someone who had not read the rules, before they were run on it
HELD_OUT_2 = ("heldout2/sanguo43", "heldout2/modern3")
# written and labelled after the rules for lines with no speech verb, and not tuned on
HELD_OUT_3 = ("heldout3/modern4",)


@dataclass
class Score:
    right: Counter = field(default_factory=Counter)  # speaker → quotes attributed rightly
    predicted: Counter = field(default_factory=Counter)  # speaker → quotes attributed to them
    labelled: Counter = field(default_factory=Counter)  # speaker → quotes labelled theirs
    misses: list[str] = field(default_factory=list)

    def add(self, other: Score) -> None:
        self.right += other.right
        self.predicted += other.predicted
        self.labelled += other.labelled
        self.misses += other.misses

    def precision(self, speaker: str | None = None) -> float:
        right = self.right[speaker] if speaker else sum(self.right.values())
        made = self.predicted[speaker] if speaker else sum(self.predicted.values())
        return right / made if made else 1.0

    def recall(self, speaker: str | None = None) -> float:
        right = self.right[speaker] if speaker else sum(self.right.values())
        wanted = self.labelled[speaker] if speaker else sum(self.labelled.values())
        return right / wanted if wanted else 1.0


def labels(name: str) -> list[dict]:
    lines = (SAMPLE / f"{name}.labels.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def score(name: str) -> Score:
    """Attribution of the sample `name` against its labels."""
    text = (SAMPLE / f"{name}.txt").read_text(encoding="utf-8")
    gold = labels(name)
    found = quotes(text)
    if len(found) != len(gold) or any(
        not q.speech.startswith(g["quote"]) for q, g in zip(found, gold, strict=False)
    ):
        raise ValueError(f"{name}.labels.jsonl does not list the quotes of {name}.txt in order")
    said = {u.start: u.speaker for u in extract_dialogue(text)}
    result = Score()
    for quote, label in zip(found, gold, strict=True):
        truth, guess = label["speaker"], said.get(quote.start)
        if truth:
            result.labelled[truth] += 1
        if guess:
            result.predicted[guess] += 1
        if truth and guess == truth:
            result.right[truth] += 1
        elif truth or guess:
            result.misses.append(f"{name}: “{quote.speech[:16]}” is {truth}, got {guess}")
    return result


def table(groups: dict[str, tuple[str, ...]], *, misses: bool = False) -> str:
    rows = ["| sample | quotes with a speaker | precision | recall |", "|---|---|---|---|"]
    per_speaker = Score()
    for group, names in groups.items():
        total = Score()
        for name in names:
            one = score(name)
            total.add(one)
            rows.append(
                f"| {name} | {sum(one.labelled.values())} | {one.precision():.3f} | "
                f"{one.recall():.3f} |"
            )
        rows.append(
            f"| **{group}** | {sum(total.labelled.values())} | **{total.precision():.3f}** | "
            f"**{total.recall():.3f}** |"
        )
        per_speaker.add(total)
    rows += [
        "",
        "| speaker | labelled | attributed | precision | recall |",
        "|---|---|---|---|---|",
    ]
    for speaker, count in per_speaker.labelled.most_common():
        rows.append(
            f"| {speaker} | {count} | {per_speaker.predicted[speaker]} | "
            f"{per_speaker.precision(speaker):.3f} | {per_speaker.recall(speaker):.3f} |"
        )
    for speaker in per_speaker.predicted.keys() - per_speaker.labelled.keys():
        rows.append(
            f"| {speaker} (never labelled) | 0 | {per_speaker.predicted[speaker]} | 0 | - |"
        )
    if misses:
        rows += ["", *per_speaker.misses]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", action="store_true", help="list the quotes it got wrong")
    args = parser.parse_args(argv)
    groups = {
        "classics": CLASSICS,
        "modern": MODERN,
        "held-out": HELD_OUT,
        "held-out 2": HELD_OUT_2,
        "held-out 3": HELD_OUT_3,
    }
    print(table(groups, misses=args.misses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
