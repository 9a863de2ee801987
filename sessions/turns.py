"""Run one reply, or continue one: stream it from the engine into the store, flushing as it grows.

The same code path serves `cosplay ask` and the TUI's generation worker, so a
reply saved from the CLI and one saved from the TUI carry the same metadata.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from engines.base import ChatMessage, Engine, GenerationParams
from sessions.kvstates import SessionStates
from sessions.models import HIDDEN, Message, Role, Status
from sessions.store import Store

FLUSH_SECONDS = 0.5  # a kill -9 loses at most this much of a streaming reply


def history_messages(branch: list[Message]) -> list[ChatMessage]:
    """The transcript as prompt messages (errored replies are not shown to the model)."""
    return [entry for message in branch if (entry := prompt_message(message)) is not None]


def prompt_message(message: Message) -> ChatMessage | None:
    """One message as the prompt shows it; None for one it leaves out (an errored or empty
    reply, a hidden one)."""
    if message.status == Status.ERROR or not message.content or message.meta.get(HIDDEN):
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
    run = _Stream(store, engine, reply, prompt, params, cancel, on_piece)
    meta = {**reply_facts(engine, params), **(extra_meta or {}), **run.outcome()}
    store.update_message(reply.id, content=run.text, status=run.status, meta=meta)
    return run.finish()


def continue_reply(
    store: Store,
    engine: Engine,
    *,
    message: Message,
    prompt: list[ChatMessage],
    params: GenerationParams,
    cancel: threading.Event,
    on_piece: Callable[[str], None] | None = None,
    extra_meta: dict | None = None,
) -> Message:
    """Stream more of the reply `message` into it (SillyTavern's "continue"): `prompt` is what it
    answered, the engine's prompt ends inside the reply right after its text, and the new text
    is appended to the same message. Flushed, cancelled and failed as in run_reply; what was
    written stays; one that wrote nothing before it was stopped or failed (a server that cannot
    continue) leaves the message as it was. The meta keeps the first generation's record and
    lists each continuation in "continued" (its facts, where its text starts and the status it
    found); the status and "finish_reason" are the last part's."""
    before: dict = {"status": message.status.value}
    for key in ("finish_reason", "error"):
        if key in message.meta:
            before[key] = message.meta[key]
    store.update_message(message.id, status=Status.PARTIAL)  # being written: a crash says so
    run = _Stream(store, engine, message, prompt, params, cancel, on_piece)
    if run.text == message.content and run.status != Status.COMPLETE:
        store.update_message(message.id, status=message.status)
        return run.finish()
    segment = {**reply_facts(engine, params), **(extra_meta or {}), **run.outcome()}
    segment |= {"start": len(message.content), "before": before}
    meta = {key: value for key, value in message.meta.items() if key != "error"}
    meta["continued"] = [*meta.get("continued", []), segment]
    for key in ("finish_reason", "error"):
        if key in segment:
            meta[key] = segment[key]
    store.update_message(message.id, content=run.text, status=run.status, meta=meta)
    return run.finish()


def reply_facts(engine: Engine, params: GenerationParams) -> dict:
    """What a reply is saved with before its stats: the model, template, engine, parameters."""
    return {
        "model": engine.model_name,
        "template": engine.template_name,
        "engine": engine.describe(),
        "params": params.to_dict(),
    }


class _Stream:
    """One engine stream into a saved message: its text so far (a continued reply's first)
    grows and is flushed every FLUSH_SECONDS; cancel, an engine error (any exception: an
    engine bug must not lose the text) and Ctrl+C end it with the text kept."""

    def __init__(self, store, engine, message, prompt, params, cancel, on_piece) -> None:
        self.store, self.engine, self.message = store, engine, message
        self.text, self.status = message.content, Status.COMPLETE
        self.error: BaseException | None = None
        self.interrupted = False
        self.states = SessionStates(store.path.parent)
        self.states.bind(engine, message.session_id)  # a saved KV cache (CPU engine)
        prefill = {"prefill": message.content} if message.content else {}
        stream = engine.stream_chat(prompt, params, cancel, **prefill)
        last_flush = time.monotonic()
        try:
            for piece in stream:
                self.text += piece
                if on_piece is not None:
                    on_piece(piece)
                if time.monotonic() - last_flush >= FLUSH_SECONDS:
                    store.update_message(message.id, content=self.text)
                    last_flush = time.monotonic()
                if cancel.is_set():
                    break
            if cancel.is_set():
                self.status = Status.CANCELLED
        except Exception as exc:  # CosplayError, or an engine bug
            self.status, self.error = Status.ERROR, exc
        except KeyboardInterrupt:  # Ctrl+C in `cosplay ask`: finish the record as Esc does
            self.status, self.interrupted = Status.CANCELLED, True
        finally:
            stream.close()

    def outcome(self) -> dict:
        """The stream's stats (and error) for the message's meta."""
        meta: dict = {}
        stats = self.engine.last_stats
        if stats is not None:
            meta |= stats.to_dict()
            meta["seed"] = stats.seed
            meta["tokens_per_s"] = round(stats.tokens_per_s, 2)
        if self.interrupted:
            meta["finish_reason"] = "cancelled"
        if self.error is not None:
            meta["error"] = str(self.error)
        return meta

    def finish(self) -> Message:
        """After the message was saved: re-raise an error or Ctrl+C, else save the KV cache and
        return the message as stored."""
        if self.error is not None:
            raise self.error
        if self.interrupted:
            raise KeyboardInterrupt
        self.states.save(self.engine, self.message.session_id)
        return self.store.get_message(self.message.id)
