"""Dataclasses whose fields are checked on every assignment: the type (with the lenient
conversions a settings form needs: "0.8" is a number), the bounds, and no unknown names.

`GenerationParams` is one: it is built on every turn and on every start of `cosplay ask`,
so this is a few plain functions rather than pydantic (whose import alone costs more than a
tenth of a second at start-up). A bad value raises InvalidValue: one sentence naming the
field and what it must be.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NoReturn

from engines.errors import CosplayError
from engines.i18n import _
from engines.validation import describe


class InvalidValue(CosplayError, ValueError):
    """A field given a value of the wrong kind or out of its bounds."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(_("invalid {field}: {problem}.", field=field, problem=problem))


def bounded(default: Any, **bounds: Any) -> Any:
    """A field with a default (a callable: a factory) and bounds: ge, gt, le, lt (as
    pydantic's Field names them), max_length for a list; `check`: a function of the value
    that raises ValueError with the problem."""
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=bounds)
    return dataclasses.field(default=default, metadata=bounds)


class Checked:
    """Base of a checked dataclass (decorate the subclass with @dataclass(init=False)).

    Fields are keyword-only; an unknown one is refused, not ignored. A field's type is one of
    float, int, int | None, bool, list[str].
    """

    def __init__(self, **values: Any) -> None:
        fields = {field.name: field for field in dataclasses.fields(self)}
        unknown = [name for name in values if name not in fields]
        if unknown:
            problem = _(
                "{problem} (known: {names})",
                problem=describe({"type": "extra_forbidden"}),
                names=", ".join(fields),
            )
            raise InvalidValue(unknown[0], problem)
        for name, field in fields.items():
            if name in values:
                setattr(self, name, values[name])
            elif field.default_factory is not dataclasses.MISSING:
                setattr(self, name, field.default_factory())
            else:
                setattr(self, name, field.default)
        self.check()

    def __setattr__(self, name: str, value: Any) -> None:
        field = self.__dataclass_fields__.get(name)  # type: ignore[attr-defined]
        if field is None:
            raise InvalidValue(name, describe({"type": "extra_forbidden"}))
        object.__setattr__(self, name, _converted(field, value))

    def check(self) -> None:
        """Checks across fields, after all are set (none by default)."""

    def to_dict(self, *, exclude_defaults: bool = False) -> dict[str, Any]:
        """The fields as plain values (lists copied); only those differing from their
        defaults with exclude_defaults."""
        values = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if exclude_defaults and value == _default(field):
                continue
            values[field.name] = list(value) if isinstance(value, list) else value
        return values


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _converted(field: dataclasses.Field, value: Any) -> Any:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if kind == "int | None" and value in (None, ""):
        return None
    kind = kind.removesuffix(" | None")
    if isinstance(value, float) and not math.isfinite(value):
        _refuse(field, "finite_number", value)
    try:
        value = CONVERTERS[kind](value)
    except (TypeError, ValueError, OverflowError):
        _refuse(field, PARSING[kind], value)
    _check_bounds(field, value)
    if "check" in field.metadata:
        try:
            field.metadata["check"](value)
        except ValueError as exc:
            raise InvalidValue(field.name, str(exc)) from None
    return value


def _refuse(field: dataclasses.Field, kind: str, value: Any, **ctx: Any) -> NoReturn:
    """Raise InvalidValue worded as pydantic's error of that type would be (one wording for
    both: engines/validation.py)."""
    problem = describe({"type": kind, "ctx": ctx, "input": value})
    raise InvalidValue(field.name, problem) from None


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(value)
    if isinstance(value, str):
        value = value.strip()
        return int(value) if value.lstrip("+-").isdigit() else _to_int(float(value))
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ValueError(value)


def _to_texts(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise TypeError(value)
    return list(value)


TRUE_WORDS = {"true", "yes", "on", "1"}
FALSE_WORDS = {"false", "no", "off", "0"}
CONVERTERS = {"float": _to_float, "int": _to_int, "bool": _to_bool, "list[str]": _to_texts}
PARSING = {  # pydantic's error type for a value of the wrong kind
    "float": "float_parsing",
    "int": "int_parsing",
    "bool": "bool_parsing",
    "list[str]": "list_type",
}
BOUND_ERRORS = {
    "ge": ("greater_than_equal", lambda value, bound: value >= bound),
    "gt": ("greater_than", lambda value, bound: value > bound),
    "le": ("less_than_equal", lambda value, bound: value <= bound),
    "lt": ("less_than", lambda value, bound: value < bound),
}


def _check_bounds(field: dataclasses.Field, value: Any) -> None:
    bounds = field.metadata
    if isinstance(value, list):
        if "max_length" in bounds and len(value) > bounds["max_length"]:
            _refuse(field, "too_long", value, max_length=bounds["max_length"])
        return
    if isinstance(value, bool):
        return
    for name, (kind, holds) in BOUND_ERRORS.items():
        if name in bounds and not holds(value, bounds[name]):
            _refuse(field, kind, value, **{name: bounds[name]})
