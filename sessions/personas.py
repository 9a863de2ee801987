"""The persona store: one V2 card JSON per persona, plus the built-ins shipped with Cosplay.

User personas live in one directory (`data_paths(home).personas`) as
`<safe name>.json`, with an optional `<safe name>.png` avatar kept from an
imported PNG card. Built-ins are package data and read-only: saving a card with
a built-in's name writes a user copy that shadows it; deleting that copy brings
the built-in back.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from engines.base import CosplayError
from engines.i18n import _
from sessions.cards import (
    CardError,
    CharacterCard,
    card_png,
    load_card,
    parse_card,
    strip_card_chunks,
)

MAX_NAME_CHARS = 100
_MAX_STEM_BYTES = 180  # file systems allow 255 bytes; leave room for suffixes


class PersonaError(CosplayError):
    """A persona is missing, read-only, or its name cannot be used."""


@dataclass(frozen=True)
class Persona:
    card: CharacterCard
    builtin: bool  # shipped with Cosplay (read-only)
    path: Path | None = None  # the file it was read from; None for built-ins

    @property
    def name(self) -> str:
        return self.card.name


def safe_stem(name: str) -> str:
    """A file name stem for a persona name: injective, no path tricks, case-safe.

    Lower-case letters, digits (any script, so 曹操 stays 曹操) and '-' are kept;
    every other character, '_' and upper-case letters included, becomes `_<hex>_`.
    Since '_' only ever starts an escape, two names never share a stem, and
    names differing only in case differ on case-insensitive file systems too.
    """
    check_name(name)
    stem = "".join(
        c if (c.isalnum() and not c.isupper() and c.isprintable()) or c == "-" else f"_{ord(c):x}_"
        for c in name
    )
    if len(stem.encode("utf-8")) > _MAX_STEM_BYTES:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
        stem = stem.encode("utf-8")[:_MAX_STEM_BYTES].decode("utf-8", "ignore") + "_" + digest
    return stem


def check_name(name: str) -> None:
    if not name or not name.strip():
        raise PersonaError(_("A persona needs a name; the name is empty."))
    if len(name) > MAX_NAME_CHARS:
        raise PersonaError(
            _(
                "The persona name is {count} characters; use at most {limit}.",
                count=len(name),
                limit=MAX_NAME_CHARS,
            )
        )
    if any(not c.isprintable() for c in name):
        raise PersonaError(
            _("The persona name {name} contains control characters; remove them.", name=repr(name))
        )


def builtin_cards() -> list[CharacterCard]:
    """The built-in personas, in their shipped order (files are named `NN_name.json`)."""
    folder = resources.files("sessions").joinpath("builtin_personas")
    cards = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".json"):
            cards.append(parse_card(entry.read_bytes(), source=f"built-in {entry.name}"))
    return cards


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a card."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextmanager
def _writing(what: str, folder: Path) -> Iterator[None]:
    """A full disk or a read-only personas folder: one sentence, nothing half written."""
    try:
        yield
    except OSError as exc:
        raise PersonaError(
            _(
                "Cannot {what} in {folder} ({problem}); free some space or make the folder "
                "writable.",
                what=what,
                folder=folder,
                problem=exc.strerror or exc,
            )
        ) from exc


class PersonaStore:
    def __init__(self, directory: str | Path, *, builtins: bool = True):
        self.directory = Path(directory)
        self._builtins = builtins
        self.problems: list[str] = []  # unreadable user persona files seen by the last list()

    # --- reading ---------------------------------------------------------------

    def _user_personas(self) -> list[Persona]:
        """Readable user personas; unreadable files are skipped and described in `problems`."""
        self.problems = []
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob("*.json")):
            if path.name.startswith(".tmp-"):
                continue
            try:
                found.append(Persona(load_card(path), builtin=False, path=path))
            except CardError as exc:
                self.problems.append(str(exc))
        return found

    def _builtin_personas(self) -> list[Persona]:
        return [Persona(card, builtin=True) for card in builtin_cards()] if self._builtins else []

    def list(self, query: str = "") -> list[Persona]:
        """Built-ins in shipped order (a user copy takes its built-in's place), then user personas
        by name. `query` filters case-insensitively on name, tags, notes and description."""
        user = {persona.name: persona for persona in self._user_personas()}
        everyone = [user.pop(builtin.name, builtin) for builtin in self._builtin_personas()]
        everyone += sorted(user.values(), key=lambda persona: persona.name)
        needle = query.strip().casefold()
        if not needle:
            return everyone
        return [p for p in everyone if needle in _search_text(p.card)]

    def names(self) -> list[str]:
        return [persona.name for persona in self.list()]

    def get(self, name: str) -> Persona:
        path = self.path_for(name)
        if path.is_file():
            return Persona(load_card(path), builtin=False, path=path)
        for persona in self._builtin_personas():
            if persona.name == name:
                return persona
        raise PersonaError(
            _(
                "There is no persona named {name}; `cosplay personas list` shows them.",
                name=repr(name),
            )
        )

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except PersonaError:
            return False
        return True

    def is_builtin(self, name: str) -> bool:
        return any(persona.name == name for persona in self._builtin_personas())

    def path_for(self, name: str) -> Path:
        return self.directory / f"{safe_stem(name)}.json"

    def avatar(self, name: str) -> bytes | None:
        path = self.path_for(name).with_suffix(".png")
        return path.read_bytes() if path.is_file() else None

    # --- writing ---------------------------------------------------------------

    def save(self, card: CharacterCard, *, previous_name: str | None = None) -> Persona:
        """Write a user persona (a built-in's name makes a user copy that shadows it).

        With `previous_name` (an edit that renamed the persona) the old file and avatar
        are moved to the new name; renaming onto another existing user persona is refused.
        """
        path = self.path_for(card.name)
        renamed = previous_name is not None and previous_name != card.name
        if renamed and self.exists(card.name):
            raise PersonaError(
                _(
                    "A persona named {name} already exists; choose another name.",
                    name=repr(card.name),
                )
            )
        with _writing(_("save the persona {name}", name=repr(card.name)), self.directory):
            _write_atomic(path, card.to_json().encode("utf-8"))
            if renamed:
                old = self.path_for(previous_name)  # type: ignore[arg-type]
                if old.with_suffix(".png").is_file():
                    os.replace(old.with_suffix(".png"), path.with_suffix(".png"))
                old.unlink(missing_ok=True)
        return Persona(card, builtin=False, path=path)

    def create(self, card: CharacterCard) -> Persona:
        """Save a new persona; refused when the name is taken (built-in or user)."""
        if self.exists(card.name):
            raise PersonaError(
                _(
                    "A persona named {name} already exists; choose another name.",
                    name=repr(card.name),
                )
            )
        return self.save(card)

    def delete(self, name: str) -> None:
        path = self.path_for(name)
        if not path.is_file():
            if self.is_builtin(name):
                raise PersonaError(
                    _("{name} is a built-in persona and cannot be deleted.", name=repr(name))
                )
            raise PersonaError(
                _(
                    "There is no persona named {name}; `cosplay personas list` shows them.",
                    name=repr(name),
                )
            )
        with _writing(_("delete the persona {name}", name=repr(name)), self.directory):
            path.unlink()
            path.with_suffix(".png").unlink(missing_ok=True)

    def duplicate(self, name: str, new_name: str | None = None) -> Persona:
        source = self.get(name)
        if new_name is None:
            new_name, number = f"{name} (copy)", 2
            while self.exists(new_name):
                new_name, number = f"{name} (copy {number})", number + 1
        card = source.card.model_copy(deep=True)
        card.data.name = new_name
        persona = self.create(card)
        image = self.avatar(name)
        if image is not None:
            with _writing(_("save the picture of {name}", name=repr(new_name)), self.directory):
                _write_atomic(persona.path.with_suffix(".png"), image)  # type: ignore[union-attr]
        return persona

    def import_file(self, file: str | Path, *, replace: bool = False) -> Persona:
        """Import a V1/V2/V3 card (JSON or PNG); a PNG's picture is kept as the avatar."""
        file = Path(file)
        card = load_card(file)
        path = self.path_for(card.name)
        if not replace and (path.is_file() or self.is_builtin(card.name)):
            raise PersonaError(
                _(
                    "A persona named {name} already exists; delete it first or import with "
                    "--replace.",
                    name=repr(card.name),
                )
            )
        raw = file.read_bytes()
        persona = self.save(card)
        with _writing(_("save the picture of {name}", name=repr(card.name)), self.directory):
            if raw.startswith(b"\x89PNG"):
                _write_atomic(path.with_suffix(".png"), strip_card_chunks(raw, str(file)))
            else:
                path.with_suffix(".png").unlink(missing_ok=True)
        return persona

    def export(self, name: str, out: str | Path) -> Path:
        """Write `name` as V2 JSON (.json) or a PNG card with `chara` and `ccv3` chunks (.png)."""
        out = Path(out)
        card = self.get(name).card
        if out.is_dir():
            raise PersonaError(
                _("Cannot export to {out}: it is a folder; give a .json or .png file.", out=out)
            )
        for parent in out.parents:
            if parent.exists() and not parent.is_dir():
                raise PersonaError(
                    _(
                        "Cannot export to {out}: {parent} is a file, not a folder; choose "
                        "another path.",
                        out=out,
                        parent=parent,
                    )
                )
        suffix = out.suffix.lower()
        if suffix == ".json":
            data = card.to_json().encode("utf-8")
        elif suffix == ".png":
            data = card_png(card, self.avatar(name))
        else:
            raise PersonaError(
                _("Cannot export to {out}: the file name must end in .json or .png.", out=out)
            )
        try:
            _write_atomic(out, data)
        except OSError as exc:
            raise PersonaError(
                _("Cannot write {path} ({problem}).", path=out, problem=exc.strerror or exc)
            ) from exc
        return out


def _search_text(card: CharacterCard) -> str:
    data = card.data
    return " ".join([data.name, *data.tags, data.creator_notes, data.description]).casefold()


__all__ = [
    "CardError",
    "Persona",
    "PersonaError",
    "PersonaStore",
    "builtin_cards",
    "check_name",
    "safe_stem",
]
