"""A chat file read into a new session: SillyTavern JSONL (sillytavern.py), text-generation-webui
JSON and its legacy `{data, data_visible}` form (textgen_webui.py) or our own JSON export
(cosplay_json.py), told apart by their content here.

Reading is defensive: a missing, huge, non-UTF-8 or broken file, a line that is not JSON, a
field of the wrong type each give one ChatImportError sentence naming the file and the
problem. The whole file is checked before anything is written, and the session is then
written in one store transaction (`Store.insert_tree`), so a failure leaves nothing behind.
Text from the file is kept as data: nothing in it is interpreted.

Versions: a SillyTavern message's `swipes`, and a text-generation-webui message's
`metadata[...]["versions"]`, become siblings in the tree; the current one (`swipe_id`,
`current_version_index`) carries the rest of the chat below it. What the file said beyond our
model (unknown keys, `extra`, `chat_metadata`, visible texts) is kept under the keys of
sessions/chat_export/, which writes it back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engines.base import CosplayError
from engines.i18n import N_, _
from sessions.chat_import.cosplay_json import looks_like_cosplay_json, parse_cosplay_json
from sessions.chat_import.dates import parse_time
from sessions.chat_import.parsed import ChatImportError, ChatProblem, ParsedChat
from sessions.chat_import.sillytavern import looks_like_sillytavern, parse_sillytavern
from sessions.chat_import.textgen_webui import looks_like_textgen_webui, parse_textgen_webui
from sessions.models import Session
from sessions.store import Store

__all__ = [
    "MAX_IMPORT_BYTES",
    "ChatImportError",
    "ParsedChat",
    "import_chat",
    "import_into",
    "parse_time",
    "read_chat",
]

MAX_IMPORT_BYTES = 100 * 2**20  # a long roleplay with every swipe is a few MiB
# Levels of lists and objects. Real chats nest under ten; what a file says beyond our model is
# stored a few levels deeper, and must read back whole far from Python's recursion limit (the
# store reads JSON it cannot parse as nothing).
MAX_NESTING = 100


def read_chat(path: str | Path) -> ParsedChat:
    """The file parsed and checked; nothing is written."""
    path = Path(path)
    try:
        return _parse(_read_text(path), path)
    except ChatProblem as exc:
        raise _cannot_import(path, exc) from None
    except RecursionError:
        raise _cannot_import(path, _("its JSON nests too deeply")) from None


def import_chat(
    store: Store,
    path: str | Path,
    *,
    persona_exists: Callable[[str], bool] | None = None,
    settings: dict | None = None,
) -> tuple[Session, ParsedChat]:
    """A new session holding the file's chat. A character the file names becomes the session's
    persona when `persona_exists(name)`; `settings` are a new session's defaults (another app's
    chat starts from them; our own export brings its own)."""
    chat = read_chat(path)
    persona = chat.persona
    if not persona and chat.character and persona_exists and persona_exists(chat.character):
        persona = chat.character
    merged = chat.settings if chat.kind == "json" else {**(settings or {}), **chat.settings}
    try:
        session = store.insert_tree(
            title=chat.title,
            persona=persona,
            settings=merged,
            created_at=chat.created_at,
            messages=chat.messages,
            leaf=chat.leaf,
        )
    except (ValueError, TypeError, KeyError) as exc:  # checked above; never half-written
        raise _cannot_import(path, exc) from None
    return session, chat


def import_into(workspace, path: str | Path) -> tuple[Session, ParsedChat]:
    """`import_chat` into a workspace (a sessions.workspace.Workspace): a character the file
    names becomes the persona when the workspace has it, and another app's chat starts from the
    workspace's default parameters. What the CLI and the TUI both call."""

    def persona_exists(name: str) -> bool:
        try:
            return workspace.personas.exists(name)
        except CosplayError:  # a damaged persona file: the chat is imported without it
            return False

    return import_chat(
        workspace.store,
        path,
        persona_exists=persona_exists,
        settings={"params": workspace.default_params()},
    )


# --- the file ------------------------------------------------------------------------------------


def _cannot_import(path: str | Path, problem: object) -> ChatImportError:
    return ChatImportError(_("Cannot import {path}: {problem}.", path=path, problem=problem))


def _read_text(path: Path) -> str:
    try:
        if path.is_dir():
            raise ChatProblem(_("it is a folder, not a chat file"))
        size = path.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise _too_big(size)
        with path.open("rb") as file:  # at most the limit: a device like /dev/zero has no size
            data = file.read(MAX_IMPORT_BYTES + 1)
        if len(data) > MAX_IMPORT_BYTES:
            raise _too_big(len(data))
    except FileNotFoundError:
        raise ChatProblem(_("there is no such file")) from None
    except OSError as exc:
        raise ChatProblem(_("it cannot be read ({problem})", problem=exc.strerror or exc)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChatProblem(_("it is not UTF-8 text (byte {byte} is not)", byte=exc.start)) from None


def _too_big(size: int) -> ChatProblem:
    return ChatProblem(
        _(
            "it is {size} MiB, more than the {limit} MiB a chat import reads",
            size=f"{size / 2**20:.0f}",
            limit=MAX_IMPORT_BYTES // 2**20,
        )
    )


_KNOWN = N_(
    "expected a SillyTavern .jsonl chat, a text-generation-webui .json chat or a Cosplay "
    "JSON export"
)


def _parse(text: str, path: Path) -> ParsedChat:
    """The format told from the content, and its reader's result."""
    if not text.strip():
        raise ChatProblem(_("it is empty"))
    try:
        doc = _check_nesting(json.loads(text))
    except json.JSONDecodeError as exc:
        lines = _json_lines(text)
        if lines is None:
            if text.lstrip()[:1] in ("{", "["):
                raise ChatProblem(
                    _(
                        "it is not valid JSON ({problem} at line {line}, column {column})",
                        problem=exc.msg,
                        line=exc.lineno,
                        column=exc.colno,
                    )
                ) from None
            raise ChatProblem(_("it is not a chat file ({expected})", expected=_(_KNOWN))) from None
        return parse_sillytavern(lines, path)
    if isinstance(doc, dict):
        if looks_like_textgen_webui(doc):
            return parse_textgen_webui(doc, path)
        if looks_like_cosplay_json(doc):
            return parse_cosplay_json(doc)
        if looks_like_sillytavern(doc):
            return parse_sillytavern([(1, doc)], path)
    raise ChatProblem(_("it is JSON but not a chat ({expected})", expected=_(_KNOWN)))


def _json_lines(text: str) -> list[tuple[int, Any]] | None:
    """JSON Lines whose first line looks like SillyTavern's (None: not JSON Lines at all)."""
    numbered = [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    try:
        first = json.loads(numbered[0][1])
    except json.JSONDecodeError:
        return None
    if not looks_like_sillytavern(first):
        return None
    lines = []
    for n, line in numbered:
        try:
            lines.append((n, _check_nesting(json.loads(line))))
        except json.JSONDecodeError as exc:
            raise ChatProblem(
                _(
                    "line {n} is not valid JSON ({problem} at column {column})",
                    n=n,
                    problem=exc.msg,
                    column=exc.colno,
                )
            ) from None
    return lines


def _check_nesting(value: Any) -> Any:
    """`value`, refused if it nests more than MAX_NESTING levels (walked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_NESTING:
                raise ChatProblem(_("its JSON nests too deeply"))
            stack.extend(
                (child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)
            )
    return value
