"""Memory of dropped turns: a rolling summary, written by the chat's own model while it idles.

When the history outgrows the context window the planner leaves the oldest messages out
(`PromptPlan.dropped_messages`: the branch depth of the first message kept). With memory on
(`settings["memory"]`, sessions/notes.py), the messages that fell out since the last summary
are summarized together with that summary into a new one (rolling: each folds the one before
in), and the planner puts its text right after the persona. Nothing here blocks a reply: the
chat screen runs `update_memory` in a worker after a reply and cancels it the moment the user
sends; a cancelled summary saves nothing.

The summary prompt is bounded (the previous summary, then as many of the new messages as fit
in half the context; the rest wait for the next pass) and written in the chat's language. On
an engine that keeps its KV cache across turns (a local one) the summary prompt evicts the
chat's, and the new memory text changes the prompt from where it sits: `warm` then evaluates
the next turn's prompt in the background (the chat's saved state restored first, so the
persona's text is not read again) and saves it as the session's state, so the reply that
follows evaluates only its new tokens.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from dataclasses import dataclass

from engines import registry
from engines.base import ChatMessage, CosplayError, Engine, GenerationParams
from sessions.context import PromptPlan
from sessions.kvstates import SessionStates
from sessions.models import Message, Role
from sessions.notes import Memory
from sessions.store import Store
from sessions.turns import prompt_message

SUMMARY_SHARE = 8  # a summary is at most this share of the context…
MIN_SUMMARY_TOKENS, MAX_SUMMARY_TOKENS = 48, 384  # …within these bounds
PROMPT_SHARE = 2  # a summary prompt takes at most 1/PROMPT_SHARE of the context
MAX_PASSES = 8  # summaries in a row while catching up (a chat that turned memory on late)

INSTRUCTIONS = {
    "en": (
        "You keep the memory of a roleplay: a short summary of the story so far, for a "
        "storyteller who can no longer see the older messages.",
        "Summary so far:",
        "(nothing yet)",
        "What happened next:",
        "Write the updated summary: who is who, what happened, what was promised or learned, "
        "and where things stand now. Plain prose, past tense, at most {limit} words, no "
        "heading or preamble.",
    ),
    "zh": (
        "你负责记住一场角色扮演的前情：为看不到早先对话的讲述者写一段简短的前情提要。",
        "此前的前情提要：",
        "（暂无）",
        "之后发生的对话：",
        "请写出更新后的前情提要：人物是谁、发生了什么、许下的承诺或得知的事、眼下的处境。"
        "用简洁的叙述，不超过{limit}字，不要标题或开场白。",
    ),
}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_LABEL = re.compile(r"^\s*(?:summary|updated summary|前情提要|更新后的前情提要)\s*[:：]\s*", re.I)


def language(text: str) -> str:
    """ "zh" when the text is mostly Chinese (a character says about what three letters do)."""
    cjk = len(_CJK.findall(text))
    return "zh" if cjk and cjk * 3 >= len(_LATIN.findall(text)) else "en"


def summary_tokens(context_length: int) -> int:
    return max(MIN_SUMMARY_TOKENS, min(MAX_SUMMARY_TOKENS, context_length // SUMMARY_SHARE))


def is_due(settings: dict, plan: PromptPlan | None) -> bool:
    """Memory is on and the plan left out messages the summary does not cover yet."""
    memory = Memory.from_settings(settings)
    return memory.enabled and plan is not None and plan.dropped_messages - 1 > memory.through


@dataclass
class SummaryJob:
    """One pass: the summary so far, the messages it folds in, and the prompt that does it."""

    session_id: int
    base: Memory  # the memory when the pass was planned (saved over only if still current)
    previous: str  # the summary folded in ("" when starting over on another branch)
    messages: list[Message]  # the newly covered messages, in order
    prompt: list[ChatMessage]
    max_new_tokens: int
    language: str

    @property
    def through(self) -> Message:
        return self.messages[-1]


def speaker_of(message: Message, user: str, char: str) -> str:
    if message.name:
        return message.name
    return user if message.role == Role.USER else char if message.role == Role.ASSISTANT else ""


def summary_prompt(previous: str, lines: list[str], lang: str, limit: int) -> list[ChatMessage]:
    system, before, nothing, after, ask = INSTRUCTIONS[lang]
    body = "\n".join(lines)
    content = (
        f"{before}\n{previous.strip() or nothing}\n\n{after}\n{body}\n\n{ask.format(limit=limit)}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def plan_summary(
    store: Store,
    engine: Engine,
    session_id: int,
    plan: PromptPlan | None,
    *,
    user: str = "User",
    char: str = "Assistant",
) -> SummaryJob | None:
    """The next summary pass for the session, or None when none is due. Reads the branch back
    from its leaf only as far as the summary's last message (the whole branch only when the
    summary was of another branch and starts over)."""
    session = store.get_session(session_id)
    memory = Memory.from_settings(session.settings)
    if not is_due(session.settings, plan) or session.leaf_id is None:
        return None
    first_kept = plan.dropped_messages
    leaf = store.get_message(session.leaf_id)
    previous, start = memory.text, memory.through + 1
    branch = store.branch_tail(session_id, limit=leaf.depth - memory.through + 1)
    if memory.through >= 0 and memory.through_id is not None:
        anchor = next((m for m in branch if m.depth == memory.through), None)
        if anchor is None or anchor.id != memory.through_id:  # the summary is another branch's
            previous, start = "", 0
            branch = store.branch(session_id)
    pending = [m for m in branch if start <= m.depth < first_kept]
    if not pending:
        return None
    max_new = summary_tokens(engine.context_length)
    budget = min(engine.context_length // PROMPT_SHARE, engine.context_length - max_new - 16)
    lang = language(previous + "".join(m.content[:200] for m in pending[:20]))
    limit = max(30, max_new * 2 // 3)

    def cost(lines: list[str], text: str = previous) -> int:
        return engine.count_tokens(summary_prompt(text, lines, lang, limit))

    if cost([]) > budget // 2:  # an oversized summary (edited by hand): keep its end
        keep = max(1, len(previous) * (budget // 2) // max(1, cost([])))
        previous = previous[-keep:]
    base_cost = cost([])
    one_line = engine.count_tokens([{"role": "user", "content": ""}])
    chosen: list[tuple[Message, str | None]] = []  # each message, and its line if it has one
    used = base_cost
    for message in pending:
        shown = prompt_message(message)
        if shown is None:  # hidden, empty or failed: covered, nothing to say
            chosen.append((message, None))
            continue
        name = speaker_of(message, user, char)
        line = f"{name}: {shown['content']}" if name else shown["content"]
        size = max(1, engine.count_tokens([{"role": "user", "content": line}]) - one_line)
        if used + size > budget:
            if any(text for _, text in chosen):
                break
            share = max(1, (budget - used) * len(line) // size)  # one huge message: its start
            line = line[:share] + "…"
            size = budget - used
        chosen.append((message, line))
        used += size

    def lines() -> list[str]:
        return [text for _, text in chosen if text is not None]

    while len(lines()) > 1 and cost(lines()) > budget:  # the estimate was short: fewer
        while chosen[-1][1] is None:
            chosen.pop()
        chosen.pop()
    if not chosen:
        return None
    return SummaryJob(
        session_id=session_id,
        base=memory,
        previous=previous,
        messages=[message for message, _ in chosen],
        prompt=summary_prompt(previous, lines(), lang, limit),
        max_new_tokens=max_new,
        language=lang,
    )


def summarize(engine: Engine, job: SummaryJob, cancel: threading.Event) -> str | None:
    """The new summary text; None when cancelled or nothing usable was written."""
    if not any(prompt_message(m) for m in job.messages):
        return job.previous  # only hidden messages fell out: the summary stands
    params = GenerationParams(max_new_tokens=job.max_new_tokens, do_sample=False, seed=0)
    text = ""
    stream = engine.stream_chat(job.prompt, params, cancel)
    try:
        for piece in stream:
            text += piece
            if cancel.is_set():
                break
    finally:
        stream.close()
    if cancel.is_set():
        return None
    return clean_summary(text) or None


def clean_summary(text: str) -> str:
    """The model's summary without a heading; one cut at max tokens ends at its last whole
    sentence (when that keeps most of it)."""
    text = _LABEL.sub("", text.strip()).strip()
    ends = [text.rfind(mark) for mark in "。！？.!?…"]
    end = max(ends)
    if end >= 0 and end + 1 < len(text) and end > len(text) // 2:
        text = text[: end + 1]
    return text


def save_summary(store: Store, job: SummaryJob, text: str) -> Memory | None:
    """Save the pass's summary, unless the memory changed meanwhile (edited by hand, turned
    off, another pass): then nothing is overwritten and None is returned."""
    session = store.get_session(job.session_id)
    current = Memory.from_settings(session.settings)
    if current != job.base or not current.enabled:
        return None
    memory = Memory(True, text, job.through.depth, job.through.id)
    settings = {**session.settings, "memory": memory.to_value()}
    store.update_session(job.session_id, settings=settings)
    return memory


def keeps_kv(engine: Engine) -> bool:
    """Whether the engine keeps a KV cache across turns that a summary prompt would evict."""
    kind = registry.find(getattr(engine, "kind", None))
    return kind is not None and "local" in kind.capabilities


def warm(conversation, cancel: threading.Event) -> bool:
    """Evaluate the next reply's prompt (as far as it is known: up to the last message) so the
    reply after a summary evaluates only its new tokens; the state is then saved as the
    session's. False when there was nothing to do or it was cancelled."""
    engine = conversation.engine
    if engine is None or not keeps_kv(engine):
        return False
    params = conversation.params()
    try:
        plan = conversation.preview("", params)
    except CosplayError:  # an empty chat, a prompt that does not fit: the reply will say so
        return False
    if plan is None or cancel.is_set():
        return False
    states = SessionStates(conversation.store.path.parent)
    states.bind(engine, conversation.session_id)  # the chat's own prefix, not re-read
    quick = dataclasses.replace(params, max_new_tokens=1, do_sample=False, num_beams=1)
    try:
        stream = engine.stream_chat(plan.messages, quick, cancel)
        try:
            for _ in stream:
                if cancel.is_set():
                    break
        finally:
            stream.close()
    except CosplayError:
        return False
    if cancel.is_set():
        return False
    states.save(engine, conversation.session_id)
    return True


@dataclass
class MemoryUpdate:
    memory: Memory | None  # the memory saved last (None: none was)
    passes: int = 0
    warmed: bool = False
    cancelled: bool = False


def update_memory(conversation, plan: PromptPlan | None, cancel: threading.Event) -> MemoryUpdate:
    """Summarize what fell out of the window (a few passes while catching up), then warm the
    engine's cache for the next reply. Stops, saving nothing more, once `cancel` is set."""
    from sessions.prompt import UserPersona

    store, engine, session_id = conversation.store, conversation.engine, conversation.session_id
    result = MemoryUpdate(None)
    if engine is None:
        return result
    for _ in range(MAX_PASSES):
        session = store.get_session(session_id)
        user = UserPersona.from_value(session.settings.get("user")).name
        char = session.persona or "Assistant"
        job = plan_summary(store, engine, session_id, plan, user=user, char=char)
        if job is None or cancel.is_set():
            break
        text = summarize(engine, job, cancel)
        if cancel.is_set() or text is None:
            break
        saved = save_summary(store, job, text)
        if saved is None:
            break
        result.memory, result.passes = saved, result.passes + 1
    result.cancelled = cancel.is_set()
    if result.passes and not result.cancelled:
        result.warmed = warm(conversation, cancel)
        result.cancelled = cancel.is_set()
    return result
