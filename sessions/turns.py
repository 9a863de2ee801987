"""Run one reply: stream it from the engine into the store, flushing as it grows.

The same code path serves `cosplay ask` and the TUI's generation worker, so a
reply saved from the CLI and one saved from the TUI carry the same metadata.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from engines.base import ChatMessage, CosplayError, Engine, GenerationParams
from sessions.kvstates import SessionStates
from sessions.models import Message, Role, Status
from sessions.store import Store

FLUSH_SECONDS = 0.5  # a kill -9 loses at most this much of a streaming reply


def history_messages(branch: list[Message]) -> list[ChatMessage]:
    """The transcript as prompt messages (errored replies are not shown to the model)."""
    return [entry for message in branch if (entry := prompt_message(message)) is not None]


def prompt_message(message: Message) -> ChatMessage | None:
    """One message as the prompt shows it; None for one it leaves out (an errored or empty
    reply)."""
    if message.status == Status.ERROR or not message.content:
        return None
    entry: ChatMessage = {"role": message.role.value, "content": message.content}
    if message.name:
        entry["name"] = message.name
    return entry


def run_reply(
    store: Store,
    engine: Engine,
    *,
    session_id: int,
    parent_id: int | None,  # or store.LEAF: after the current leaf
    prompt: list[ChatMessage],
    params: GenerationParams,
    cancel: threading.Event,
    on_piece: Callable[[str], None] | None = None,
    name: str = "",
    extra_meta: dict | None = None,
) -> Message:
    """Stream a reply to `prompt` as a new child of `parent_id`; return the saved message.

    The message is created before the first token (status partial) and flushed
    every FLUSH_SECONDS; it ends complete, cancelled or error. Engine errors are
    saved on the message and re-raised for the caller to show.
    """
    reply = store.add_message(
        session_id, Role.ASSISTANT, "", parent_id=parent_id, status=Status.PARTIAL, name=name
    )
    meta = {
        "model": engine.model_name,
        "template": engine.template_name,
        "engine": engine.describe(),
        "params": params.model_dump(),
        **(extra_meta or {}),
    }
    text, last_flush, status, error = "", time.monotonic(), Status.COMPLETE, None
    interrupted = False
    states = SessionStates(store.path.parent)
    states.bind(engine, session_id)  # a saved KV cache, restored if it helps (CPU engine)
    stream = engine.stream_chat(prompt, params, cancel)
    try:
        for piece in stream:
            text += piece
            if on_piece is not None:
                on_piece(piece)
            if time.monotonic() - last_flush >= FLUSH_SECONDS:
                store.update_message(reply.id, content=text)
                last_flush = time.monotonic()
            if cancel.is_set():
                break
        if cancel.is_set():
            status = Status.CANCELLED
    except CosplayError as exc:
        status, error = Status.ERROR, exc
    except Exception as exc:  # an engine bug must not lose the partial reply
        status, error = Status.ERROR, exc
    except KeyboardInterrupt:  # Ctrl+C in `cosplay ask`: finish the record as Esc does
        status, interrupted = Status.CANCELLED, True
    finally:
        stream.close()
    stats = engine.last_stats
    if stats is not None:
        meta |= stats.model_dump()
        meta["seed"] = stats.seed
        meta["tokens_per_s"] = round(stats.tokens_per_s, 2)
    if interrupted:
        meta["finish_reason"] = "cancelled"
    if error is not None:
        meta["error"] = str(error)
    store.update_message(reply.id, content=text, status=status, meta=meta)
    if error is not None:
        raise error
    if interrupted:
        raise KeyboardInterrupt
    states.save(engine, session_id)
    return store.get_message(reply.id)
