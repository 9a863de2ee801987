"""A chat file read into a new session: SillyTavern JSONL, text-generation-webui JSON (and its
legacy `{data, data_visible}` form) or our own JSON export, told apart by their content.

Reading is defensive: a missing, huge, non-UTF-8 or broken file, a line that is not JSON, a
field of the wrong type each give one ChatImportError sentence naming the file and the
problem. The whole file is checked before anything is written, and the session is then
written in one store transaction (`Store.insert_tree`), so a failure leaves nothing behind.
Text from the file is kept as data: nothing in it is interpreted.

Versions: a SillyTavern message's `swipes`, and a text-generation-webui message's
`metadata[...]["versions"]`, become siblings in the tree; the current one (`swipe_id`,
`current_version_index`) carries the rest of the chat below it. What the file said beyond our
model (unknown keys, `extra`, `chat_metadata`, visible texts) is kept under the keys of
sessions/chat_export.py, which writes it back.
"""

from __future__ import annotations

import copy
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engines.base import CosplayError
from engines.i18n import N_, _
from sessions.chat_export import (
    COSPLAY_FORMAT,
    MONTHS,
    ST_KEY,
    TGW_GREETING,
    TGW_KEY,
    fingerprint,
)
from sessions.models import HIDDEN, Role, Session, Status
from sessions.notes import AuthorNote
from sessions.store import Store

MAX_IMPORT_BYTES = 100 * 2**20  # a long roleplay with every swipe is a few MiB
TITLE_CHARS = 60

# SillyTavern's system_message_types (public/script.js): lines of these kinds are not the
# character speaking (a narrator, a comment, the app's own help).
ST_SYSTEM_TYPES = {
    "help", "welcome", "group", "empty", "generic", "narrator", "comment",
    "slash_commands", "formatting", "hotkeys", "macros", "welcome_prompt", "assistant_note",
}  # fmt: skip
ST_HEADER_KEYS = {"user_name", "character_name", "create_date", "chat_metadata"}


class ChatImportError(CosplayError):
    """A chat file that cannot be imported; one sentence naming the file and the problem."""


class _Bad(Exception):
    """The problem, without the file's name (added once, by read_chat)."""


@dataclass
class ParsedChat:
    kind: str  # "st", "tgw", "tgw-legacy" or "json"
    label: str  # for people: "SillyTavern chat"
    title: str
    messages: list[dict[str, Any]]  # Store.insert_tree's form: `parent` is an index
    leaf: int | None = None
    persona: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None
    character: str = ""  # the character the file names (a persona of that name is linked)


def read_chat(path: str | Path) -> ParsedChat:
    """The file parsed and checked; nothing is written."""
    path = Path(path)
    try:
        return _parse(_read_text(path), path)
    except _Bad as exc:
        raise ChatImportError(
            _("Cannot import {path}: {problem}.", path=path, problem=exc)
        ) from None
    except RecursionError:
        raise ChatImportError(
            _("Cannot import {path}: {problem}.", path=path, problem=_("its JSON nests too deeply"))
        ) from None


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
        raise ChatImportError(
            _("Cannot import {path}: {problem}.", path=path, problem=exc)
        ) from None
    return session, chat


# --- the file ------------------------------------------------------------------------------------


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


def _read_text(path: Path) -> str:
    try:
        if path.is_dir():
            raise _Bad(_("it is a folder, not a chat file"))
        size = path.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise _Bad(
                _(
                    "it is {size} MiB, more than the {limit} MiB a chat import reads",
                    size=f"{size / 2**20:.0f}",
                    limit=MAX_IMPORT_BYTES // 2**20,
                )
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise _Bad(_("there is no such file")) from None
    except OSError as exc:
        raise _Bad(_("it cannot be read ({problem})", problem=exc.strerror or exc)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Bad(_("it is not UTF-8 text (byte {byte} is not)", byte=exc.start)) from None


def _parse(text: str, path: Path) -> ParsedChat:
    if not text.strip():
        raise _Bad(_("it is empty"))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        lines = _json_lines(text)
        if lines is None:
            if text.lstrip()[:1] in ("{", "["):
                raise _Bad(
                    _(
                        "it is not valid JSON ({problem} at line {line}, column {column})",
                        problem=exc.msg,
                        line=exc.lineno,
                        column=exc.colno,
                    )
                ) from None
            raise _Bad(_("it is not a chat file ({expected})", expected=_(_KNOWN))) from None
        return _sillytavern(lines, path)
    if isinstance(doc, dict):
        if "internal" in doc and "visible" in doc:
            return _tgw(doc, path, legacy=False)
        if "data" in doc and "data_visible" in doc:
            return _tgw(doc, path, legacy=True)
        if doc.get("format") == COSPLAY_FORMAT or {"id", "title", "messages"} <= doc.keys():
            return _cosplay(doc)
        if ST_HEADER_KEYS & doc.keys() or "mes" in doc:
            return _sillytavern([(1, doc)], path)
    raise _Bad(_("it is JSON but not a chat ({expected})", expected=_(_KNOWN)))


_KNOWN = N_(
    "expected a SillyTavern .jsonl chat, a text-generation-webui .json chat or a Cosplay "
    "JSON export"
)


def _json_lines(text: str) -> list[tuple[int, Any]] | None:
    """JSON Lines whose first line looks like SillyTavern's (None: not JSON Lines at all)."""
    numbered = [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    try:
        first = json.loads(numbered[0][1])
    except json.JSONDecodeError:
        return None
    if not (isinstance(first, dict) and (ST_HEADER_KEYS & first.keys() or "mes" in first)):
        return None
    lines = []
    for n, line in numbered:
        try:
            lines.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise _Bad(
                _(
                    "line {n} is not valid JSON ({problem} at column {column})",
                    n=n,
                    problem=exc.msg,
                    column=exc.colno,
                )
            ) from None
    return lines


# --- times ---------------------------------------------------------------------------------------

_MONTH = {name.lower(): i for i, name in enumerate(MONTHS, 1)} | {
    name[:3].lower(): i for i, name in enumerate(MONTHS, 1)
}
_MERIDIEM = re.compile(r"(\w+)\s(\d{1,2}),\s(\d{4})\s(\d{1,2}):(\d{1,2})(am|pm)", re.I)
_HUMANIZED = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2}) ?@(\d{1,2})h ?(\d{1,2})m ?(\d{1,2})s")
_TGW_TIME = re.compile(r"([A-Za-z]{3}) (\d{1,2}), (\d{4}) (\d{1,2}):(\d{2})$")


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch from the dates these apps write: SillyTavern's send_date
    ('June 19, 2023 2:20pm', ISO 8601, '2024-7-12@01h31m37s', '2024-6-5 @14h 56m 50s 682ms',
    Unix milliseconds: what its `timestampToMoment` reads) and text-generation-webui's
    'Sep 27, 2024 14:05'. None when it is none of them."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) / 1000 if 0 <= value < 1e15 else None
        if not isinstance(value, str) or not value.strip():
            return None
        value = value.strip()
        if value.isdigit():
            return parse_time(int(value))
        if match := _MERIDIEM.search(value):
            month, day, year, hour, minute, half = match.groups()
            hour24 = int(hour) % 12 + (12 if half.lower() == "pm" else 0)
            number = _MONTH.get(month.lower())
            return _when(int(year), number, int(day), hour24, int(minute)) if number else None
        if match := _HUMANIZED.search(value):
            return _when(*(int(part) for part in match.groups()))
        if match := _TGW_TIME.match(value):
            month, day, year, hour, minute = match.groups()
            number = _MONTH.get(month.lower())
            return _when(int(year), number, int(day), int(hour), int(minute)) if number else None
        moment = datetime.fromisoformat(value)
        return (moment if moment.tzinfo else moment.astimezone()).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _when(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second).timestamp()  # local, as written


def _times(messages: list[dict[str, Any]]) -> None:
    """Messages without a date of their own take the one before them (else now)."""
    last = next((m["created_at"] for m in messages if m.get("created_at") is not None), None)
    for message in messages:
        if message.get("created_at") is None:
            message["created_at"] = last if last is not None else time.time()
        last = message["created_at"]


def _chain(positions: list[tuple[list[dict[str, Any]], int]]) -> tuple[list[dict], int | None]:
    """A linear chat with versions as a tree: each position's versions are siblings under the
    previous position's current version, which alone carries the chat on."""
    messages: list[dict[str, Any]] = []
    parent: int | None = None
    for versions, current in positions:
        first = len(messages)
        for version in versions:
            messages.append({**version, "parent": parent})
        parent = first + current
    _times(messages)
    return messages, parent


def _type(value: Any) -> str:
    names = {
        dict: N_("an object"),
        list: N_("a list"),
        str: N_("text"),
        bool: N_("true/false"),
        type(None): N_("null"),
    }
    return _(names.get(type(value), N_("a number")))


# --- SillyTavern ---------------------------------------------------------------------------------


def _sillytavern(lines: list[tuple[int, Any]], path: Path) -> ParsedChat:
    """public/script.js `saveChat`: a header line, then the chat's messages (group chats have
    no header)."""
    header: dict | None = None
    if isinstance(lines[0][1], dict) and "mes" not in lines[0][1]:
        header = lines[0][1]
        lines = lines[1:]
    user, char = "", ""
    if header is not None:
        for key in ("user_name", "character_name"):
            if header.get(key) is not None and not isinstance(header[key], str):
                raise _Bad(
                    _("the header's {key} is {kind}, not text", key=key, kind=_type(header[key]))
                )
        user, char = header.get("user_name") or "", header.get("character_name") or ""
    positions = [_st_message(n, line, user, char) for n, line in lines]
    messages, leaf = _chain(positions)
    settings: dict[str, Any] = {ST_KEY: {"header": header}}
    note = AuthorNote.from_st(header.get("chat_metadata")) if header else None
    if note is not None:  # SillyTavern's Author's Note (note_prompt, note_interval, …)
        settings["author_note"] = note.to_value()
    if user.strip():
        settings["user"] = {"name": user.strip(), "description": ""}
    created = parse_time(header.get("create_date")) if header else None
    return ParsedChat(
        kind="st",
        label="SillyTavern chat",
        title=" ".join(path.stem.split()) or char or "SillyTavern chat",
        messages=messages,
        leaf=leaf,
        settings=settings,
        created_at=created
        if created is not None
        else (messages[0]["created_at"] if messages else None),
        character=char,
    )


def _st_message(n: int, line: Any, user: str, char: str) -> tuple[list[dict[str, Any]], int]:
    if not isinstance(line, dict):
        raise _Bad(_("line {n} is {kind}, not a message", n=n, kind=_type(line)))
    mes = line.get("mes")
    if not isinstance(mes, str):
        if mes is None:
            raise _Bad(_("line {n} has no 'mes' text", n=n))
        raise _Bad(_("line {n} has {kind} as its 'mes', not text", n=n, kind=_type(mes)))
    for key in ("is_user", "is_system"):
        if line.get(key) is not None and not isinstance(line[key], bool):
            raise _Bad(
                _("line {n}'s {key} is {kind}, not true/false", n=n, key=key, kind=_type(line[key]))
            )
    if line.get("name") is not None and not isinstance(line["name"], str):
        raise _Bad(_("line {n}'s name is {kind}, not text", n=n, kind=_type(line["name"])))
    extra = line.get("extra") if isinstance(line.get("extra"), dict) else {}
    if line.get("is_user"):
        role, name = Role.USER, line.get("name") or user
    elif line.get("is_system") or extra.get("type") in ST_SYSTEM_TYPES:
        role, name = Role.SYSTEM, line.get("name") or ""
    else:
        role, name = Role.ASSISTANT, line.get("name") or char
    swipes = line.get("swipes")
    if swipes is None or swipes == []:
        swipes, current = [mes], 0
    elif not isinstance(swipes, list):
        raise _Bad(_("line {n}'s swipes is {kind}, not a list of texts", n=n, kind=_type(swipes)))
    else:
        for swipe in swipes:
            if swipe is not None and not isinstance(swipe, str):
                raise _Bad(_("line {n}'s swipes hold {kind}, not text", n=n, kind=_type(swipe)))
        swipes = [swipe or "" for swipe in swipes]
        current = line.get("swipe_id")
        if current is None:
            current = swipes.index(mes) if mes in swipes else 0
        elif not isinstance(current, int) or isinstance(current, bool):
            raise _Bad(_("line {n}'s swipe_id is {kind}, not a number", n=n, kind=_type(current)))
        elif not 0 <= current < len(swipes):
            raise _Bad(
                _(
                    "line {n}'s swipe_id {current} is outside its {count} swipes",
                    n=n,
                    current=current,
                    count=len(swipes),
                )
            )
    kept_line = dict(line)
    kept_line["mes"] = None  # the text lives in the message; the rest of the line as it was
    if "swipes" in kept_line:
        kept_line["swipes"] = None
    info = line.get("swipe_info") if isinstance(line.get("swipe_info"), list) else []
    versions = []
    for j, swipe in enumerate(swipes):
        meta: dict[str, Any] = {"swipe": j}
        if j == current:
            meta |= {"line": kept_line, "swipes": len(swipes)}
            when = parse_time(line.get("send_date"))
        else:
            own = info[j] if j < len(info) and isinstance(info[j], dict) else {}
            when = parse_time(own.get("send_date"))
        versions.append(
            {
                "role": role,
                "name": name,
                "content": mes if j == current else swipe,
                "created_at": when,
                # SillyTavern leaves its is_system lines (hidden ones, comments) out of the prompt
                "meta": {ST_KEY: meta} | ({HIDDEN: True} if line.get("is_system") else {}),
            }
        )
    return versions, current


# --- text-generation-webui -----------------------------------------------------------------------


def _tgw(doc: dict, path: Path, *, legacy: bool) -> ParsedChat:
    """modules/chat.py `save_history` / `load_history`: `internal` (raw) and `visible`
    (HTML-escaped) rows of [user, assistant], `metadata` per message; the legacy form names
    them `data` and `data_visible` and has no metadata."""
    rows_key, visible_key = ("data", "data_visible") if legacy else ("internal", "visible")
    rows, shown = doc[rows_key], doc[visible_key]
    if not isinstance(rows, list):
        raise _Bad(
            _(
                "its '{key}' is {kind}, not a list of [user, assistant] rows",
                key=rows_key,
                kind=_type(rows),
            )
        )
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 2 and all(isinstance(t, str) for t in row)):
            raise _Bad(
                _("'{key}' row {i} is not a [user, assistant] pair of texts", key=rows_key, i=i)
            )
    # TGW's first versions kept the card's example dialogue as rows above the greeting, with
    # no visible rows for them: they are not the chat (kept in the settings, not exported).
    start = next((i for i, row in enumerate(rows) if row[0] == TGW_GREETING), 0)
    hidden, rows = rows[:start], rows[start:]
    if start and isinstance(shown, list) and len(shown) == len(rows) + start:
        shown = shown[start:]
    metadata = doc.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _Bad(_("its 'metadata' is {kind}, not an object", kind=_type(metadata)))
    positions = []
    for i, (user_text, reply) in enumerate(rows):
        row_shown = shown[i] if isinstance(shown, list) and i < len(shown) else None
        if not (isinstance(row_shown, list) and len(row_shown) == 2):
            row_shown = [None, None]
        greeting = user_text == TGW_GREETING
        if user_text and not greeting:
            positions.append(
                _tgw_versions(metadata, f"user_{i}", Role.USER, user_text, row_shown[0])
            )
        entry = metadata.get(f"assistant_{i}")
        if reply or (isinstance(entry, dict) and entry.get("versions")):
            versions, current = _tgw_versions(
                metadata, f"assistant_{i}", Role.ASSISTANT, reply, row_shown[1]
            )
            if greeting:
                for version in versions:
                    version["meta"][TGW_KEY]["greeting"] = True
            positions.append((versions, current))
    messages, leaf = _chain(positions)
    extra = {
        k: v
        for k, v in doc.items()
        if k not in ("internal", "visible", "metadata", "data", "data_visible")
    }
    first_user = next((m["content"] for m in messages if m["role"] == Role.USER), "")
    title = (
        first_user.strip().split("\n")[0][:TITLE_CHARS] or path.stem or "text-generation-webui chat"
    )
    return ParsedChat(
        kind="tgw-legacy" if legacy else "tgw",
        label="text-generation-webui chat" + (" (legacy data/data_visible)" if legacy else ""),
        title=title,
        messages=messages,
        leaf=leaf,
        settings={TGW_KEY: kept} if (kept := _present(extra=extra, hidden_rows=hidden)) else {},
        created_at=messages[0]["created_at"] if messages else None,
    )


def _present(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value}


def _tgw_versions(
    metadata: dict, key: str, role: Role, text: str, shown: Any
) -> tuple[list[dict[str, Any]], int]:
    entry = metadata.get(key)
    if entry is not None and not isinstance(entry, dict):
        raise _Bad(_("metadata '{key}' is {kind}, not an object", key=key, kind=_type(entry)))
    entry = entry or {}
    old = entry.get("versions")
    if old is not None and not isinstance(old, list):
        raise _Bad(
            _("metadata '{key}' has {kind} as its versions, not a list", key=key, kind=_type(old))
        )
    if old:
        for j, version in enumerate(old):
            if not (isinstance(version, dict) and isinstance(version.get("content"), str)):
                raise _Bad(_("metadata '{key}' version {j} has no text content", key=key, j=j))
        current = entry.get("current_version_index")
        if not isinstance(current, int) or isinstance(current, bool):
            current = len(old) - 1  # what handle_navigate_version_click assumes
        if not 0 <= current < len(old):
            raise _Bad(
                _(
                    "metadata '{key}' current_version_index {current} is outside its versions",
                    key=key,
                    current=current,
                )
            )
        texts = [v["content"] for v in old]
        texts[current] = text  # the row holds the current text
        visibles = [v.get("visible_content") for v in old]
        visibles[current] = shown
        stamps = [v.get("timestamp") for v in old]
    else:
        current, texts, visibles, stamps = 0, [text], [shown], [entry.get("timestamp")]
    kept_entry = copy.deepcopy(entry)
    if old:  # the texts live in the messages; each version's other keys as they were
        kept_entry["versions"] = [
            {k: v for k, v in version.items() if k not in ("content", "visible_content")}
            for version in old
        ]
    versions = []
    for j, content in enumerate(texts):
        kept: dict[str, Any] = {"version": j} if old else {}
        if isinstance(visibles[j], str) and visibles[j] != html.escape(content):
            kept["visible"] = {"text": visibles[j], "of": fingerprint(content)}
        if j == current and entry:
            kept["entry"] = kept_entry
        versions.append(
            {
                "role": role,
                "name": "",
                "content": content,
                "created_at": parse_time(stamps[j]),
                "meta": {TGW_KEY: kept},
            }
        )
    return versions, current


# --- our own export ------------------------------------------------------------------------------


def _cosplay(doc: dict) -> ParsedChat:
    """sessions/chat_export.py `to_cosplay_json` (and the branch-only JSON of earlier
    versions): the whole tree, ids remapped on import."""
    records = doc.get("messages")
    if not isinstance(records, list):
        raise _Bad(_("its 'messages' is {kind}, not a list", kind=_type(records)))
    for key, kind in (("title", str), ("persona", str), ("settings", dict)):
        if doc.get(key) is not None and not isinstance(doc[key], kind):
            raise _Bad(
                _(
                    "its '{key}' is {kind}, not {wanted}",
                    key=key,
                    kind=_type(doc[key]),
                    wanted=_type(kind()),
                )
            )
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise _Bad(_("message {i} is {kind}, not an object", i=i, kind=_type(record)))
        if not isinstance(record.get("id"), int) or isinstance(record.get("id"), bool):
            raise _Bad(_("message {i} has no number id", i=i))
    records = sorted(records, key=lambda r: r["id"])  # a parent is older than its replies
    index: dict[int, int] = {}
    messages = []
    for record in records:
        mid = record["id"]
        if mid in index:
            raise _Bad(_("message id {mid} appears twice", mid=mid))
        parent = record.get("parent_id")
        if parent is not None and parent not in index:
            raise _Bad(
                _(
                    "message {mid}'s parent {parent} is not in the file",
                    mid=mid,
                    parent=repr(parent),
                )
            )
        try:
            role, status = Role(record.get("role")), Status(record.get("status", "complete"))
        except ValueError:
            raise _Bad(
                _(
                    "message {mid} has role {role} / status {status}, which Cosplay does not know",
                    mid=mid,
                    role=repr(record.get("role")),
                    status=repr(record.get("status")),
                )
            ) from None
        for key, kind in (("content", str), ("name", str), ("meta", dict)):
            if record.get(key) is not None and not isinstance(record[key], kind):
                raise _Bad(
                    _(
                        "message {mid}'s {key} is {kind}, not {wanted}",
                        mid=mid,
                        key=key,
                        kind=_type(record[key]),
                        wanted=_type(kind()),
                    )
                )
        if not isinstance(record.get("content"), str):
            raise _Bad(_("message {mid} has no text content", mid=mid))
        created = record.get("created_at")
        index[mid] = len(messages)
        messages.append(
            {
                "parent": None if parent is None else index[parent],
                "role": role,
                "status": status,
                "name": record.get("name") or "",
                "content": record["content"],
                "meta": record.get("meta") or {},
                "created_at": float(created) if _number(created) else None,
            }
        )
    _times(messages)
    leaf = doc.get("leaf_id")
    if leaf is not None and leaf not in index:
        raise _Bad(_("its leaf_id {leaf} is not one of its messages", leaf=repr(leaf)))
    created = doc.get("created_at")
    return ParsedChat(
        kind="json",
        label="Cosplay export",
        title=doc.get("title") or "Imported chat",
        messages=messages,
        leaf=None if leaf is None else index[leaf],
        persona=doc.get("persona") or "",
        settings=doc.get("settings") or {},
        created_at=float(created) if _number(created) else None,
    )


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) < 1e13
        and value == value  # not NaN
    )
