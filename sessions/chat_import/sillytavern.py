"""A SillyTavern chat (.jsonl): a header line, then one line per message. A message's `swipes`
become sibling versions, the one at `swipe_id` carrying the chat on; the rest of each line and
the header are kept under ST_KEY for sessions/chat_export/ to write back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.i18n import _
from sessions.chat_export import ST_KEY
from sessions.chat_import.dates import parse_time
from sessions.chat_import.parsed import ChatProblem, ParsedChat, chain_versions, kind_of
from sessions.models import HIDDEN, Role
from sessions.notes import AuthorNote

# SillyTavern's system_message_types (public/script.js): lines of these kinds are not the
# character speaking (a narrator, a comment, the app's own help).
ST_SYSTEM_TYPES = {
    "help", "welcome", "group", "empty", "generic", "narrator", "comment",
    "slash_commands", "formatting", "hotkeys", "macros", "welcome_prompt", "assistant_note",
}  # fmt: skip
ST_HEADER_KEYS = {"user_name", "character_name", "create_date", "chat_metadata"}


def looks_like_sillytavern(value: Any) -> bool:
    """A JSON line that starts a SillyTavern chat: its header, or (a group chat) a message."""
    return isinstance(value, dict) and bool(ST_HEADER_KEYS & value.keys() or "mes" in value)


def parse_sillytavern(lines: list[tuple[int, Any]], path: Path) -> ParsedChat:
    """public/script.js `saveChat`: a header line, then the chat's messages (group chats have
    no header). `lines` are (line number, JSON value) pairs."""
    header: dict | None = None
    if isinstance(lines[0][1], dict) and "mes" not in lines[0][1]:
        header = lines[0][1]
        lines = lines[1:]
    user, char = "", ""
    if header is not None:
        for key in ("user_name", "character_name"):
            if header.get(key) is not None and not isinstance(header[key], str):
                raise ChatProblem(
                    _("the header's {key} is {kind}, not text", key=key, kind=kind_of(header[key]))
                )
        user, char = header.get("user_name") or "", header.get("character_name") or ""
    positions = [_message_versions(n, line, user, char) for n, line in lines]
    messages, leaf = chain_versions(positions)
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


def _message_versions(n: int, line: Any, user: str, char: str) -> tuple[list[dict[str, Any]], int]:
    """Line `n`'s swipes as versions, and the index of the current one."""
    if not isinstance(line, dict):
        raise ChatProblem(_("line {n} is {kind}, not a message", n=n, kind=kind_of(line)))
    mes = line.get("mes")
    if not isinstance(mes, str):
        if mes is None:
            raise ChatProblem(_("line {n} has no 'mes' text", n=n))
        raise ChatProblem(_("line {n} has {kind} as its 'mes', not text", n=n, kind=kind_of(mes)))
    for key in ("is_user", "is_system"):
        if line.get(key) is not None and not isinstance(line[key], bool):
            raise ChatProblem(
                _(
                    "line {n}'s {key} is {kind}, not true/false",
                    n=n,
                    key=key,
                    kind=kind_of(line[key]),
                )
            )
    if line.get("name") is not None and not isinstance(line["name"], str):
        raise ChatProblem(_("line {n}'s name is {kind}, not text", n=n, kind=kind_of(line["name"])))
    extra = line.get("extra") if isinstance(line.get("extra"), dict) else {}
    if line.get("is_user"):
        role, name = Role.USER, line.get("name") or user
    elif line.get("is_system") or _text(extra.get("type")) in ST_SYSTEM_TYPES:
        role, name = Role.SYSTEM, line.get("name") or ""
    else:
        role, name = Role.ASSISTANT, line.get("name") or char
    swipes, current = _swipes(n, line, mes)
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


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None  # a list or an object is no type name


def _swipes(n: int, line: dict, mes: str) -> tuple[list[str], int]:
    """Line `n`'s swipe texts and the index of the current one (its `mes` alone: one swipe)."""
    swipes = line.get("swipes")
    if swipes is None or swipes == []:
        return [mes], 0
    if not isinstance(swipes, list):
        raise ChatProblem(
            _("line {n}'s swipes is {kind}, not a list of texts", n=n, kind=kind_of(swipes))
        )
    for swipe in swipes:
        if swipe is not None and not isinstance(swipe, str):
            raise ChatProblem(
                _("line {n}'s swipes hold {kind}, not text", n=n, kind=kind_of(swipe))
            )
    swipes = [swipe or "" for swipe in swipes]
    current = line.get("swipe_id")
    if current is None:
        return swipes, swipes.index(mes) if mes in swipes else 0
    if not isinstance(current, int) or isinstance(current, bool):
        raise ChatProblem(
            _("line {n}'s swipe_id is {kind}, not a number", n=n, kind=kind_of(current))
        )
    if not 0 <= current < len(swipes):
        raise ChatProblem(
            _(
                "line {n}'s swipe_id {current} is outside its {count} swipes",
                n=n,
                current=current,
                count=len(swipes),
            )
        )
    return swipes, current
