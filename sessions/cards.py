"""Character cards: V1/V2/V3 in, Character Card V2 as our native model, V2 JSON and PNG out.

A card read from a file and written back is the same card: unknown keys (at the
top level, in `data`, in the lorebook and in `extensions`) are kept as they are.
Our own settings live in `data.extensions.cosplay`. Every problem is a CardError
that names the file and the field.

The bytes of a card file (JSON safely parsed, PNG chunks read and written) are
sessions/card_files.py's.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engines.base import GenerationParams
from engines.checked import InvalidValue
from engines.i18n import _
from engines.validation import describe, field_path
from sessions.card_files import (  # noqa: F401  CardError, png_chunks… re-exported: cards' API
    MAX_CARD_BYTES,
    MAX_PNG_BYTES,
    PNG_SIGNATURE,
    ZIP_SIGNATURE,
    CardError,
    json_object,
    payload_from_png,
    plain_png,
    png_chunks,
    png_with_card,
    strip_card_chunks,
)

MAX_FIELD_CHARS = 200_000  # one string; the longest real cards' lorebook entries are far shorter
MAX_DEPTH = 100  # nesting of objects and lists; real cards nest under ten levels
_SURROGATE = re.compile("[\ud800-\udfff]")
V2_SPEC, V3_SPEC = "chara_card_v2", "chara_card_v3"
# V1 fields that SillyTavern mirrors at the top level of a V2 card; redundant with `data`.
V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")


class CosplayExtension(BaseModel):
    """Our fields in `data.extensions.cosplay`: what runs this persona."""

    model_config = ConfigDict(extra="allow")

    adapter: str = ""  # a LoRA adapter: PEFT directory or Hub repo id (or a GGUF LoRA file)
    adapter_gguf: str = ""  # the same adapter as a GGUF LoRA, for the CPU engine
    engine: str = ""  # "", "cpu" or "gpu": the engine to load when no model is given
    template: str = ""  # a chat template name ("cosplay" for classics-dialogue adapters)
    speaker: str = ""  # the name the template writes before a reply (default: the card's name)
    base: str = ""  # the base model the adapter was trained on (HF directory or repo id)
    base_gguf: str = ""  # that base model as a GGUF file, for the CPU engine
    sampling: dict[str, Any] = Field(default_factory=dict)  # GenerationParams overrides
    aliases: list[str] = Field(default_factory=list)  # other names it answers to in a scene (@玄德)


class BookEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    keys: list[str] = Field(default_factory=list)
    content: str = ""
    extensions: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    insertion_order: int | float = 0
    case_sensitive: bool | None = None
    name: str | None = None
    priority: int | float | None = None
    id: int | str | None = None
    comment: str | None = None
    selective: bool | None = None
    secondary_keys: list[str] | None = None
    constant: bool | None = None
    position: str | None = None


class CharacterBook(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    description: str | None = None
    scan_depth: int | None = None
    token_budget: int | None = None
    recursive_scanning: bool | None = None
    extensions: dict[str, Any] = Field(default_factory=dict)
    entries: list[BookEntry] = Field(default_factory=list)


class CardData(BaseModel):
    """All Character Card V2 fields; V3-only fields are kept as extra keys."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = Field(min_length=1)
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    creator_notes: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: list[str] = Field(default_factory=list)
    character_book: CharacterBook | None = None
    tags: list[str] = Field(default_factory=list)
    creator: str = ""
    character_version: str = ""
    extensions: dict[str, Any] = Field(default_factory=dict)


class CharacterCard(BaseModel):
    """A Character Card V2. Extra top-level keys (SillyTavern's V1 leftovers) are kept."""

    model_config = ConfigDict(extra="allow")

    spec: Literal["chara_card_v2"] = V2_SPEC
    spec_version: str = "2.0"
    data: CardData

    @classmethod
    def new(cls, name: str, **fields: Any) -> CharacterCard:
        return cls(data=CardData(name=name, **fields))

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def cosplay(self) -> CosplayExtension:
        return CosplayExtension.model_validate(self.data.extensions.get("cosplay") or {})

    def with_cosplay(self, extension: CosplayExtension) -> CharacterCard:
        """A copy whose `extensions.cosplay` is `extension` (other extension keys untouched)."""
        card = self.model_copy(deep=True)
        payload = extension.model_dump(exclude_defaults=True)
        extensions = dict(card.data.extensions)
        if payload:
            extensions["cosplay"] = payload
        else:
            extensions.pop("cosplay", None)
        card.data.extensions = extensions
        return card

    def to_dict(self, *, v1_mirror: bool = True) -> dict[str, Any]:
        """The V2 JSON object; with the V1 fields mirrored at the top level, as SillyTavern writes."""
        data = self.data.model_dump(mode="json", exclude={"character_book"})
        if self.data.character_book is not None:
            # Only the lorebook fields the card had: no nulls appear that were not there.
            data["character_book"] = self.data.character_book.model_dump(
                mode="json", exclude_unset=True
            )
        out: dict[str, Any] = {}
        if v1_mirror:
            out |= {key: data[key] for key in V1_FIELDS}
        out |= dict(self.model_extra or {})
        out |= {"spec": V2_SPEC, "spec_version": "2.0", "data": data}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"

    def to_v3_dict(self) -> dict[str, Any]:
        return {**self.to_dict(v1_mirror=False), "spec": V3_SPEC, "spec_version": "3.0"}


# --- reading -------------------------------------------------------------------


def load_card(path: str | Path) -> CharacterCard:
    """A card from a .json or .png file (the content decides, not the suffix)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PNG_BYTES:
            raise CardError(
                _(
                    "{path} is {size} MiB, too big for a character card.",
                    path=path,
                    size=size // 2**20,
                )
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise CardError(
            _("Cannot read {path} ({problem}).", path=path, problem=exc.strerror or exc)
        ) from exc
    return parse_card(raw, source=str(path))


def parse_card(raw: bytes, source: str = "card") -> CharacterCard:
    if raw.startswith(PNG_SIGNATURE):
        return card_from_dict(payload_from_png(raw, source), source)
    if raw.startswith(ZIP_SIGNATURE):
        raise CardError(
            _(
                "{source} is a ZIP archive (a .charx card?); Cosplay reads JSON and PNG cards: "
                "export the character as PNG or JSON and import that.",
                source=source,
            )
        )
    if len(raw) > MAX_CARD_BYTES:
        raise CardError(
            _(
                "{source} is larger than {size} MiB; it is not a card.",
                source=source,
                size=MAX_CARD_BYTES // 2**20,
            )
        )
    return card_from_dict(json_object(raw, source, _("the file")), source)


def card_from_dict(obj: Any, source: str = "card") -> CharacterCard:
    """Validate a V1, V2 or V3 card object into our V2 model."""
    if not isinstance(obj, dict):
        raise CardError(
            _(
                "{source}: a card must be a JSON object, not {kind}.",
                source=source,
                kind=type(obj).__name__,
            )
        )
    _check_sizes(obj, source, "")
    spec = obj.get("spec")
    if spec is None:  # V1: the fields sit at the top level
        if not isinstance(obj.get("name"), str):
            raise CardError(
                _("{source}: field 'name' is missing; this is not a character card.", source=source)
            )
        data = {key: obj[key] for key in V1_FIELDS if key in obj}
        extra = {key: value for key, value in obj.items() if key not in V1_FIELDS}
        return _validate({**extra, "spec": V2_SPEC, "spec_version": "2.0", "data": data}, source)
    if spec not in (V2_SPEC, V3_SPEC):
        raise CardError(
            _(
                "{source}: field 'spec' is {spec}; expected {v2} or {v3} (or a V1 card).",
                source=source,
                spec=repr(spec),
                v2=repr(V2_SPEC),
                v3=repr(V3_SPEC),
            )
        )
    if not isinstance(obj.get("data"), dict):
        raise CardError(_("{source}: field 'data' is missing or not an object.", source=source))
    extra = {
        key: value
        for key, value in obj.items()
        if key not in (*V1_FIELDS, "spec", "spec_version", "data")
    }
    return _validate({**extra, "spec": V2_SPEC, "spec_version": "2.0", "data": obj["data"]}, source)


def _validate(obj: dict[str, Any], source: str) -> CharacterCard:
    try:
        card = CharacterCard.model_validate(obj)
    except ValidationError as exc:
        raise _field_error(source, exc, []) from exc
    prefix = ["data", "extensions", "cosplay"]
    try:
        extension = card.cosplay
    except ValidationError as exc:
        raise _field_error(source, exc, prefix) from exc
    try:
        GenerationParams(**extension.sampling)
    except InvalidValue as exc:
        field = ".".join([*prefix, "sampling", exc.field])
        raise CardError(
            _(
                "{source}: field '{field}': {problem}.",
                source=source,
                field=field,
                problem=exc.problem,
            )
        ) from exc
    return card


def _field_error(source: str, exc: ValidationError, prefix: list[str]) -> CardError:
    error = exc.errors()[0]
    field = ".".join(part for part in [*prefix, field_path(error)] if part) or "card"
    return CardError(
        _(
            "{source}: field '{field}': {problem}.",
            source=source,
            field=field,
            problem=describe(error),
        )
    )


def _check_sizes(obj: Any, source: str, where: str) -> None:
    """Refuse what a card cannot hold, walking without recursion (a deep card must not
    overflow the stack): too deep a nesting, a too-long string, a lone surrogate (not text:
    it cannot be written back as UTF-8), a NaN or infinite number."""
    stack: list[tuple[Any, str, int]] = [(obj, where, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_string(value, source, path)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise CardError(
                    _(
                        "{source}: field '{field}' is {value}, which is not a number a card can "
                        "hold.",
                        source=source,
                        field=_shown(path),
                        value=value,
                    )
                )
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise CardError(
                    _(
                        "{source}: field '{field}' is nested more than {depth} levels deep; this "
                        "is not a character card.",
                        source=source,
                        field=_shown(path),
                        depth=MAX_DEPTH,
                    )
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    key = str(key)
                    child = f"{path}.{key}" if path else key
                    _check_string(key, source, child)
                    stack.append((item, child, depth + 1))
            else:
                for index, item in enumerate(value):
                    stack.append((item, f"{path}.{index}", depth + 1))


def _check_string(value: str, source: str, where: str) -> None:
    if len(value) > MAX_FIELD_CHARS:
        raise CardError(
            _(
                "{source}: field '{field}' has {count} characters, more than the {limit} a card "
                "field may hold.",
                source=source,
                field=_shown(where),
                count=len(value),
                limit=MAX_FIELD_CHARS,
            )
        )
    found = _SURROGATE.search(value)
    if found:
        raise CardError(
            _(
                "{source}: field '{field}' holds a lone surrogate ({code}), which is not text; "
                "fix the card's JSON.",
                source=source,
                field=_shown(where),
                code=f"\\u{ord(found.group()):04x}",
            )
        )


def _shown(where: str) -> str:
    """A field path fit to print: a surrogate in a key itself is escaped, not printed."""
    shown = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", where) or "card"
    return shown if len(shown) <= 60 else shown[:60] + "…"


def card_png(card: CharacterCard, image: bytes | None = None) -> bytes:
    """`image` (or a plain generated one) carrying the card as `chara` (V2) and `ccv3` chunks."""
    return png_with_card(image or plain_png(card.name), card.to_dict(), card.to_v3_dict())
