"""Training records from extracted lines: one line, or a line with the exchange before it.

`--dialogue-turns` makes each of the speaker's lines the reply to the lines before it in the
same exchange (quotes no further apart than `max_gap` characters): the other speakers' lines
are the user turns, the speaker's own earlier lines assistant turns. Three formats:

* `cosplay` — the seed's `{"context": narration + 周瑜曰：“……”诸葛亮曰：, "chat": "“……”"}`;
* `sharegpt` — `{"system": narration, "conversations": [{"from": "human", "value": "周瑜：……"},
  {"from": "gpt", "value": "……"}]}`;
* `messages` — `{"messages": [{"role": "system", …}, {"role": "user", "name": "周瑜",
  "content": "周瑜：……"}, {"role": "assistant", "name": "诸葛亮", "content": "……"}]}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.train.extract import Utterance

FORMATS = ("cosplay", "sharegpt", "messages")
MAX_GAP = 300  # characters of narration between two lines of one exchange
MAX_TURNS = 8  # lines in one record, the reply included


def exchange_before(
    utterances: list[Utterance], index: int, *, max_gap: int = MAX_GAP, max_turns: int = MAX_TURNS
) -> list[Utterance]:
    """The lines of the exchange before `utterances[index]` (at most `max_turns - 1`), starting
    with another speaker's line; empty when nobody else spoke just before."""
    reply = utterances[index]
    history: list[Utterance] = []
    later = reply
    for earlier in reversed(utterances[max(0, index - max_turns + 1) : index]):
        if later.start - earlier.end > max_gap:
            break
        history.insert(0, earlier)
        later = earlier
    while history and history[0].speaker == reply.speaker:
        history.pop(0)
    return history


def record(reply: Utterance, history: list[Utterance], fmt: str) -> dict:
    """One training record in `fmt`: `history` then `reply`."""
    narration = (history[0] if history else reply).narration
    if fmt == "cosplay":
        said = "".join(f"{u.speaker}{u.verb or '曰'}：“{u.speech}”" for u in history)
        single = reply.record()
        if not history:
            return single
        single["context"] = f"{narration}{said}{reply.speaker}{reply.verb or '曰'}："
        return single
    turns: list[list] = []  # [role, name or None, content]; a role's adjacent lines join
    for u in (*history, reply):
        role = "assistant" if u.speaker == reply.speaker else "user"
        content = u.speech if role == "assistant" else f"{u.speaker}：{u.speech}"
        if turns and turns[-1][0] == role:
            turns[-1][2] += "\n" + content
            if turns[-1][1] != u.speaker:
                turns[-1][1] = None
        else:
            turns.append([role, u.speaker, content])
    if fmt == "sharegpt":
        value = [{"from": "gpt" if r == "assistant" else "human", "value": c} for r, _, c in turns]
        return (
            {"system": narration, "conversations": value} if narration else {"conversations": value}
        )
    messages = [{"role": "system", "content": narration}] if narration else []
    messages += [
        {"role": r, "name": name, "content": c} if name else {"role": r, "content": c}
        for r, name, c in turns
    ]
    return {"messages": messages}
