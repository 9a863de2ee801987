"""The prompt inspector: exactly what the engine will receive for the next reply, part by part
(system/persona, examples, memory, history, messages put in at depth, input, post-history
instructions) with their token counts, where the history was cut, which lorebook entries fired
and where each went (and the Author's Note, the memory).

The counts are differences of the engine's own counts of growing prefixes of the prompt, so
they add up to the engine's count of the whole prompt exactly (template overhead falls to the
part it comes with: the opening to the first, the reply's opening to the last).
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.base import ChatMessage, Engine
from sessions.context import PromptPlan

PART_NAMES = {
    "system": "system / persona",
    "examples": "example dialogues",
    "memory": "memory (summary)",
    "history": "history",
    "injection": "at depth (lore, note)",
    "input": "message answered",
    "post_history": "post-history instructions",
}


@dataclass(frozen=True)
class Part:
    name: str
    messages: list[ChatMessage]
    tokens: int


@dataclass(frozen=True)
class Inspection:
    plan: PromptPlan
    parts: list[Part]
    text: str  # the prompt as the engine renders it ("" when a server renders it)
    budget: int  # tokens the prompt may take (the context less the room kept for the reply)

    @property
    def total(self) -> int:
        return sum(part.tokens for part in self.parts)


def inspect(plan: PromptPlan, engine: Engine, max_new_tokens: int) -> Inspection:
    """Count each part of `plan` with the engine's tokenizer and render the prompt."""
    parts: list[Part] = []
    start, before = 0, 0
    for name, size in plan.parts or [("history", len(plan.messages))]:
        if size == 0:
            continue
        end = start + size
        upto = engine.count_tokens(plan.messages[:end])
        parts.append(Part(name, plan.messages[start:end], upto - before))
        start, before = end, upto
    render = getattr(engine, "render", None)  # a server renders the prompt itself
    text = render(plan.messages) if callable(render) else ""
    budget = engine.context_length - min(max_new_tokens, engine.context_length // 2)
    return Inspection(plan, parts, text, budget)


def report(inspection: Inspection, engine: Engine) -> str:
    """The inspection as plain text: the summary table, then the exact prompt."""
    plan = inspection.plan
    lines = [
        f"{engine.model_name} · template {engine.template_name} · "
        f"{inspection.total} of {inspection.budget} prompt tokens "
        f"(context {engine.context_length})",
        "",
    ]
    width = max(len(name) for name in PART_NAMES.values())
    for part in inspection.parts:
        label = PART_NAMES.get(part.name, part.name)
        count = f"{len(part.messages)} message(s)"
        lines.append(f"{label:<{width}}  {count:>14}  {part.tokens:>6} tokens")
        if part.name == "history" and plan.summary:
            lines.append(f"{'':<{width}}  ✂ cut above: {plan.summary}")
    lines.append(f"{'total':<{width}}  {'':>14}  {inspection.total:>6} tokens")
    if plan.lore:
        lines.append(f"lore fired: {'、'.join(plan.lore)}")
    lines += [f"  {what} → {where}" for what, where in plan.placed]
    lines += [f"note: {note}" for note in plan.notes]
    lines += ["", "── the exact prompt ──"]
    if inspection.text:
        lines.append(inspection.text)
    else:  # a server applies its own template: show the messages it is sent
        lines.append("(the server applies its own chat template to these messages)")
        lines += [
            f"[{m.get('role')}{' ' + m['name'] if m.get('name') else ''}] {m.get('content', '')}"
            for m in plan.messages
        ]
    return "\n".join(lines)
