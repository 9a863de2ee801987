"""The prompt inspector: exactly what the engine will receive for the next reply, part by part
(system/persona, examples, memory, history, messages put in at depth, input, post-history
instructions) with their token counts, where the history was cut, which lorebook entries fired
and where each went (and the Author's Note, the memory).

The counts are differences of the engine's own counts of growing prefixes of the prompt, so
they add up to the engine's count of the whole prompt exactly (template overhead falls to the
part it comes with: the opening to the first, the reply's opening to the last).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from engines.base import ChatMessage, Engine
from engines.i18n import N_, _
from sessions.context import PromptPlan

PART_NAMES = {
    "system": N_("system / persona"),
    "examples": N_("example dialogues"),
    "memory": N_("memory (summary)"),
    "history": N_("history"),
    "injection": N_("at depth (lore, note)"),
    "input": N_("message answered"),
    "post_history": N_("post-history instructions"),
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
        _(
            "{model} · template {template} · {total} of {budget} prompt tokens (context {context})",
            model=engine.model_name,
            template=engine.template_name,
            total=inspection.total,
            budget=inspection.budget,
            context=engine.context_length,
        ),
        "",
    ]
    labels = {name: _(label) for name, label in PART_NAMES.items()}
    width = max(cells(label) for label in labels.values())
    for part in inspection.parts:
        label = labels.get(part.name, part.name)
        count = _("{count} message(s)", count=len(part.messages))
        tokens = _("{count} tokens", count=f"{part.tokens:>6}")
        lines.append(f"{padded(label, width)}  {padded(count, 14, right=True)}  {tokens}")
        if part.name == "history" and plan.summary:
            lines.append(f"{'':<{width}}  " + _("✂ cut above: {summary}", summary=plan.summary))
    total = _("{count} tokens", count=f"{inspection.total:>6}")
    lines.append(f"{padded(_('total'), width)}  {'':>14}  {total}")
    if plan.lore:
        lines.append(_("lore fired: {entries}", entries="、".join(plan.lore)))
    lines += [f"  {what} → {where}" for what, where in plan.placed]
    lines += [_("note: {note}", note=note) for note in plan.notes]
    lines += ["", _("── the exact prompt ──")]
    if inspection.text:
        lines.append(inspection.text)
    else:  # a server applies its own template: show the messages it is sent
        lines.append(_("(the server applies its own chat template to these messages)"))
        lines += [
            f"[{m.get('role')}{' ' + m['name'] if m.get('name') else ''}] {m.get('content', '')}"
            for m in plan.messages
        ]
    return "\n".join(lines)


def cells(text: str) -> int:
    """Terminal cells `text` takes: a wide (CJK) character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def padded(text: str, width: int, right: bool = False) -> str:
    """`text` padded with spaces to `width` terminal cells (on its left when `right`)."""
    room = " " * max(0, width - cells(text))
    return room + text if right else text + room
