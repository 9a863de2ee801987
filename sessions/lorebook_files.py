"""Standalone lorebooks: SillyTavern World Info JSON ↔ a card's `character_book`, and the
`lorebooks/` folder of the data directory that keeps them.

A book is kept as World Info JSON (`{"entries": {"0": {uid, key, keysecondary, content, …}}}`,
SillyTavern's own file), exactly as imported plus a top-level "name", so an export gives back
what was imported, unknown fields included. A card's character_book (or a card file) imports
converted to World Info as SillyTavern's convertCharacterBook does; World Info reads back into
the character_book model as SillyTavern's convertWorldInfoToCharacterBook writes it (its fields
in `extensions`), and fields neither side knows are carried across both ways.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.atomic import written_atomically
from engines.errors import CosplayError
from engines.i18n import _
from engines.validation import describe, field_path

if TYPE_CHECKING:
    from sessions.cards import CharacterBook

MAX_BOOK_BYTES = 32 * 2**20
MAX_NAME_CHARS = 120

# World Info entry field → (character_book field, or "ext:" + its extensions key).
_TOP = {
    "uid": "id",
    "key": "keys",
    "keysecondary": "secondary_keys",
    "comment": "comment",
    "content": "content",
    "constant": "constant",
    "selective": "selective",
    "order": "insertion_order",
}
_EXT = {
    "position": "position",
    "excludeRecursion": "exclude_recursion",
    "displayIndex": "display_index",
    "probability": "probability",
    "useProbability": "useProbability",
    "depth": "depth",
    "selectiveLogic": "selectiveLogic",
    "group": "group",
    "groupOverride": "group_override",
    "groupWeight": "group_weight",
    "preventRecursion": "prevent_recursion",
    "delayUntilRecursion": "delay_until_recursion",
    "scanDepth": "scan_depth",
    "matchWholeWords": "match_whole_words",
    "useGroupScoring": "use_group_scoring",
    "caseSensitive": "case_sensitive",
    "automationId": "automation_id",
    "role": "role",
    "vectorized": "vectorized",
    "sticky": "sticky",
    "cooldown": "cooldown",
    "delay": "delay",
}
_BOOK_FIELDS = {"keys", "secondary_keys", "comment", "content", "constant", "selective", "id"}
_BOOK_FIELDS |= {"insertion_order", "enabled", "position", "extensions"}


class LorebookError(CosplayError):
    pass


def book_from_world_info(obj: Any, source: str = "lorebook") -> CharacterBook:
    """A World Info object as a character_book (SillyTavern's convertWorldInfoToCharacterBook);
    WI fields it does not map are kept as extra fields of each entry."""
    from pydantic import ValidationError

    from sessions.cards import CharacterBook

    entries = _wi_entries(obj, source)
    book: list[dict[str, Any]] = []
    for entry in entries:
        out: dict[str, Any] = {}
        extensions: dict[str, Any] = {}
        for key, value in entry.items():
            if key == "order" and not _is_number(value):
                out["order"] = value  # kept as it was; the entry sorts with the default order
            elif key in _TOP:
                out[_TOP[key]] = value
            elif key in _EXT:
                extensions[_EXT[key]] = value
            elif key == "disable":
                out["enabled"] = not value
            elif key == "extensions" and isinstance(value, dict):
                extensions = {**value, **extensions}
            elif key not in _BOOK_FIELDS:
                out[key] = value
        position = extensions.get("position")
        if isinstance(position, int) and not isinstance(position, bool):
            out["position"] = "before_char" if position == 0 else "after_char"
        out.setdefault("keys", [])
        out.setdefault("content", "")
        out.setdefault("enabled", True)
        out["extensions"] = extensions
        book.append(out)
    payload = {k: v for k, v in obj.items() if k not in ("entries", "name")}
    payload["entries"] = book
    if isinstance(obj.get("name"), str):
        payload["name"] = obj["name"]
    try:
        return CharacterBook.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = field_path(error)
        raise LorebookError(
            _(
                "{source}: field '{field}': {problem}.",
                source=source,
                field=where,
                problem=describe(error),
            )
        ) from None


def _first_problem(exc: ValueError) -> str:
    """Pydantic's first error as `field 'entries.0.keys': must be a list`; another ValueError
    as its own words."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    error = errors()[0]
    where = field_path(error)
    return _("field '{field}': {problem}", field=where, problem=describe(error))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def world_info_from_book(book: CharacterBook) -> dict[str, Any]:
    """A character_book as World Info (SillyTavern's convertCharacterBook), keeping the
    entries' fields and extension keys it does not map."""
    ext_back = {v: k for k, v in _EXT.items()}
    top_back = {v: k for k, v in _TOP.items()}
    entries: dict[str, Any] = {}
    for index, entry in enumerate(book.entries):
        data = entry.model_dump(mode="json", exclude_unset=True)
        uid = data.get("id", index)
        out: dict[str, Any] = {"uid": uid}
        extensions = dict(data.pop("extensions", {}) or {})
        for key, value in data.items():
            if key in top_back:
                out[top_back[key]] = value
            elif key == "enabled":
                out["disable"] = not value
            elif key not in ("position", "case_sensitive", "name", "priority"):
                out[key] = value
        out.setdefault("key", entry.keys)
        out.setdefault("content", entry.content)
        out.setdefault("order", entry.insertion_order)
        if "position" not in extensions and entry.position in ("before_char", "after_char"):
            out["position"] = 0 if entry.position == "before_char" else 1
        for key, value in extensions.items():
            out[ext_back.get(key, key)] = value
        if "caseSensitive" not in out and entry.case_sensitive is not None:
            out["caseSensitive"] = entry.case_sensitive
        entries[str(uid) if str(uid) not in entries else str(index)] = out
    rest = book.model_dump(mode="json", exclude_unset=True, exclude={"entries"})
    return {**rest, "entries": entries}


def _wi_entries(obj: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(obj, dict) or not isinstance(obj.get("entries"), dict | list):
        raise LorebookError(
            _(
                '{source} is not a lorebook: expected a JSON object with "entries" (SillyTavern '
                "World Info or a card's character_book).",
                source=source,
            )
        )
    entries = obj["entries"]
    values = list(entries.values()) if isinstance(entries, dict) else entries
    for index, entry in enumerate(values):
        if not isinstance(entry, dict):
            raise LorebookError(
                _(
                    "{source}: entry {index} is not an object; fix the file.",
                    source=source,
                    index=index,
                )
            )
    return values


def read_json(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_BOOK_BYTES:
            raise LorebookError(
                _("{path} is {size} MiB, too big for a lorebook.", path=path, size=size // 2**20)
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise LorebookError(
            _("Cannot read {path} ({problem}).", path=path, problem=exc.strerror or exc)
        ) from exc
    if raw.startswith(b"\x89PNG"):
        from sessions.cards import CardError, load_card

        try:
            book = load_card(path).data.character_book
        except CardError as exc:
            raise LorebookError(str(exc)) from None
        if book is None:
            raise LorebookError(
                _("{source} is a card without a lorebook (character_book).", source=path)
            )
        return world_info_from_book(book)
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise LorebookError(
            _("{path} is not UTF-8 text (byte {byte}).", path=path, byte=exc.start)
        ) from None
    except json.JSONDecodeError as exc:
        raise LorebookError(
            _(
                "{path} is malformed JSON ({problem} at line {line}, column {column}).",
                path=path,
                problem=exc.msg,
                line=exc.lineno,
                column=exc.colno,
            )
        ) from None
    except (RecursionError, ValueError) as exc:
        raise LorebookError(
            _("{path} is not readable JSON ({problem}).", path=path, problem=type(exc).__name__)
        ) from None


def as_world_info(obj: Any, source: str) -> dict[str, Any]:
    """Whatever was imported, as World Info: WI as it is; a character_book or a card (V2/V3
    JSON with data.character_book) converted."""
    if isinstance(obj, dict) and isinstance(obj.get("data"), dict) and "spec" in obj:
        book = obj["data"].get("character_book")
        if not isinstance(book, dict):
            raise LorebookError(
                _("{source} is a card without a lorebook (character_book).", source=source)
            )
        obj = book
    if isinstance(obj, dict) and isinstance(obj.get("entries"), list):
        from sessions.cards import CharacterBook

        _wi_entries(obj, source)
        try:
            return world_info_from_book(CharacterBook.model_validate(obj))
        except ValueError as exc:  # pydantic's ValidationError
            raise LorebookError(
                _(
                    "{source}: not a valid character_book ({problem}).",
                    source=source,
                    problem=_first_problem(exc),
                )
            ) from None
    book_from_world_info(obj, source)  # validates
    return obj


class LorebookFolder:
    """The `lorebooks/` folder of a data directory: one World Info JSON per book."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path_for(self, name: str) -> Path:
        """The file of the book `name`: the one that names itself so (a file copied in by hand
        under another file name included), else where a new book of that name goes."""
        from sessions.personas import safe_stem

        check_book_name(name)
        return self._files().get(name) or self.directory / f"{safe_stem(name)}.json"

    def names(self) -> list[str]:
        return sorted(self._files())

    def _files(self) -> dict[str, Path]:
        """Each book's name and file: the `name` inside it, else (a World Info file copied in
        as it was) the file's stem. A file that is not JSON is left out."""
        files: dict[str, Path] = {}
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            try:
                obj = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            name = obj.get("name") if isinstance(obj, dict) else None
            files.setdefault(name if isinstance(name, str) and name.strip() else path.stem, path)
        return files

    def exists(self, name: str) -> bool:
        return self.path_for(name).is_file()

    def world_info(self, name: str) -> dict[str, Any]:
        path = self.path_for(name)
        if not path.is_file():
            known = ", ".join(self.names()) or "none yet"
            raise LorebookError(
                _(
                    "No lorebook named {name} (known: {known}); import one with "
                    "`cosplay lore import FILE`.",
                    name=repr(name),
                    known=known,
                )
            )
        obj = read_json(path)
        if not isinstance(obj, dict):
            raise LorebookError(_("{path} is not a lorebook; delete or re-import it.", path=path))
        return {k: v for k, v in obj.items() if k != "name"}

    def book(self, name: str) -> CharacterBook:
        return book_from_world_info(self.world_info(name), _("lorebook {name}", name=repr(name)))

    def import_file(
        self, file: str | Path, name: str | None = None, *, replace: bool = False
    ) -> str:
        """Keep `file` (World Info, a character_book, or a card with one) as the book `name`
        (default: the file's stem); the name it got."""
        path = Path(file)
        obj = as_world_info(read_json(path), str(path))
        name = (name or path.stem).strip()
        target = self.path_for(name)
        if target.exists() and not replace:
            raise LorebookError(
                _(
                    "A lorebook named {name} exists; pass --name for another or --replace.",
                    name=repr(name),
                )
            )
        self._write(target, {**obj, "name": name})
        return name

    def export(self, name: str, out: str | Path) -> Path:
        out = Path(out)
        self._write(out, self.world_info(name))
        return out

    def set_entry_enabled(self, name: str, index: int, enabled: bool) -> None:
        """Switch the book's entry `index` (in the order `book(name).entries` has them) on or
        off: World Info's `disable`, the rest of the file as it was."""
        obj = self.world_info(name)
        entries = _wi_entries(obj, f"lorebook {name!r}")
        if not 0 <= index < len(entries):
            raise LorebookError(
                _(
                    "The lorebook {name} has no entry {number}; reopen it.",
                    name=repr(name),
                    number=index + 1,
                )
            )
        entries[index]["disable"] = not enabled
        self._write(self.path_for(name), {**obj, "name": name})

    def delete(self, name: str) -> None:
        path = self.path_for(name)
        if not path.is_file():
            raise LorebookError(_("No lorebook named {name}.", name=repr(name)))
        path.unlink()

    def _write(self, target: Path, obj: dict[str, Any]) -> None:
        try:
            with written_atomically(target) as temporary:
                temporary.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", "utf-8")
        except OSError as exc:
            raise LorebookError(
                _(
                    "Cannot write {path} ({problem}); free some space or make the folder writable.",
                    path=target,
                    problem=exc.strerror or exc,
                )
            ) from None


def check_book_name(name: str) -> None:
    if not name or not name.strip():
        raise LorebookError(_("A lorebook needs a name; the name is empty."))
    if len(name) > MAX_NAME_CHARS or any(not c.isprintable() for c in name):
        raise LorebookError(
            _(
                "The lorebook name {name} is too long or has control characters; rename it.",
                name=repr(name[:40]),
            )
        )


def lorebook_folder(home: str | Path) -> LorebookFolder:
    """The lorebooks of the data directory `home` (where cosplay.db lives)."""
    return LorebookFolder(Path(home) / "lorebooks")
