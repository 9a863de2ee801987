"""A branch as the context planner reads it (a `Window` of sessions/history_window.py): a
stored branch from its leaf up a page at a time, each message with the token count saved for
the engine's tokenizer and template (`tokenizer_key`), or a list of messages; the counts
planning made are saved for the next turn."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from engines.base import ChatMessage, Engine
from sessions.history_window import Entry, TokenEstimate, Window
from sessions.models import Message
from sessions.store import Store
from sessions.store_schema import StoreError
from sessions.turns import prompt_message


@dataclass(frozen=True)
class StoredBranch:
    """A session's branch as planning reads it: from `leaf_id` (None: the session's leaf) up,
    only as far as the window reaches, each message's token count kept in the store."""

    store: Store
    session_id: int
    leaf_id: int | None = None
    # A message not saved, as if sent below the leaf: what `ask --dry-run` and the prompt
    # inspector plan with (its id is not a stored one; nothing is counted or saved for it).
    pending: Message | None = None


def tokenizer_key(engine: Engine) -> str:
    """What a message's token count depends on: the engine's model (its tokenizer) and the chat
    template that frames each message. An adapter changes neither, so switching one keeps
    the counts; another model or template counts again."""
    template = getattr(engine, "template", None)
    model = getattr(engine, "model_path", None) or engine.model_name
    identity = "\0".join(
        [
            str(getattr(engine, "kind", type(engine).__name__)),
            str(model),
            engine.template_name,
            str(getattr(template, "source", "")),
        ]
    )
    digest = hashlib.sha1(identity.encode("utf-8", "replace")).hexdigest()[:16]
    return f"{engine.template_name}:{digest}"


def history_window(branch: list[Message] | StoredBranch, engine: Engine) -> Window:
    """The branch read backwards as planning asks, each message with its estimated token
    cost: a stored branch's saved counts are reused, the rest counted when planning reaches
    them (`save_counts` keeps them)."""
    estimate = TokenEstimate(engine.count_tokens)
    if isinstance(branch, StoredBranch):
        return _stored_window(branch, tokenizer_key(engine), estimate)
    end = len(branch)

    def read(limit: int) -> tuple[list[Entry], bool]:
        nonlocal end
        start = max(0, end - limit)
        page = branch[start:end]
        end = start
        return [Entry(m, message.depth) for message, m in _shown(page)], start == 0

    return Window(read, estimate)


def _stored_window(branch: StoredBranch, key: str, estimate: TokenEstimate) -> Window:
    store = branch.store
    above: int | None = branch.leaf_id  # the message whose branch is read next
    if above is None:
        above = store.get_session(branch.session_id).leaf_id

    seen: set[int] = set()  # a damaged tree's parent_id cycle ends the branch at its repeat
    pending = _shown([branch.pending]) if branch.pending is not None else []

    def read(limit: int) -> tuple[list[Entry], bool]:
        nonlocal above, pending
        tail = [Entry(m, message.depth) for message, m in pending]
        pending = []
        if above is None:
            return tail, True
        page = store.branch_tail(branch.session_id, above, limit=limit)
        full = len(page) == limit
        start = len(page)  # walk up from the leaf side until a message read before
        while start and page[start - 1].id not in seen:
            start -= 1
        cycle = start > 0
        page = page[start:]
        seen.update(message.id for message in page)
        above = page[0].parent_id if page and not cycle else None
        shown = _shown(page)
        counts = store.token_counts([message.id for message, _ in shown], key)
        entries = [
            Entry(m, message.depth, counts.get(message.id), message.id) for message, m in shown
        ]
        return entries + tail, above is None or not full

    return Window(read, estimate)


def save_counts(window: Window, branch: list[Message] | StoredBranch, engine: Engine) -> None:
    """Keep the token counts planning made, for the next turn (best effort: a read-only
    database counts them again next time)."""
    if isinstance(branch, StoredBranch) and window.counted:
        try:
            branch.store.save_token_counts(tokenizer_key(engine), window.counted)
        except StoreError:
            pass


def _shown(page: list[Message]) -> list[tuple[Message, ChatMessage]]:
    return [(message, m) for message in page if (m := prompt_message(message)) is not None]
